//! The main database's migrations, embedded in every binary.

use std::time::Duration;

use diesel::migration::MigrationVersion;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::pool::connect;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/main");

/// Serialises concurrent `migrate` runs (two pods starting the migration Job at once).
const MIGRATION_LOCK_KEY: i64 = 0x006d_6169_6e5f_6462;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn with_harness<T: Send + 'static>(
    url: &str,
    work: impl FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> Result<T, BoxError>
        + Send
        + 'static,
) -> Result<T, BoxError> {
    let conn = connect(url, Duration::from_secs(10)).await?;
    // Diesel's migration harness is synchronous: run it off the async executor.
    tokio::task::spawn_blocking(move || {
        use diesel::RunQueryDsl;
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .execute(&mut wrapper)?;
        let result = work(&mut wrapper);
        diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
            .execute(&mut wrapper)?;
        result
    })
    .await?
}

/// Applies pending migrations; returns the versions applied now.
pub async fn run_migrations(url: &str) -> Result<Vec<String>, BoxError> {
    with_harness(url, |conn| {
        let applied: Vec<MigrationVersion<'_>> = conn.run_pending_migrations(MIGRATIONS)?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Versions already applied, oldest first.
pub async fn applied_migrations(url: &str) -> Result<Vec<String>, BoxError> {
    with_harness(url, |conn| {
        let mut applied: Vec<String> = conn
            .applied_migrations()?
            .into_iter()
            .map(|v| v.to_string())
            .collect();
        applied.sort();
        Ok(applied)
    })
    .await
}

/// Reverts every migration (tests prove each `down.sql` undoes its `up.sql`).
pub async fn revert_all_migrations(url: &str) -> Result<Vec<String>, BoxError> {
    with_harness(url, |conn| {
        let reverted = conn.revert_all_migrations(MIGRATIONS)?;
        Ok(reverted.into_iter().map(|v| v.to_string()).collect())
    })
    .await
}

/// The `migrate` subcommand of every service binary: applies pending migrations and
/// says what it did (`http_kit::cli::run`'s `migrate`).
pub async fn migrate_command(url: String) -> anyhow::Result<()> {
    let applied = run_migrations(&url).await.map_err(|e| anyhow::anyhow!(e))?;
    if applied.is_empty() {
        println!("main database: up to date");
    } else {
        println!("main database: applied {}", applied.join(", "));
    }
    Ok(())
}
