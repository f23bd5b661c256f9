//! Tenant migrations (`migrations/tenant`, embedded): applied to one database, to the
//! template, or to many with bounded parallelism. `pending` and `history` open a
//! read-only session and change nothing, not even the version table.
//!
//! Tenant migrations must be backward compatible (expand, then contract): a rollout over
//! many databases is not atomic, so old and new code meet both schemas.

use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel::sql_types::{Bool, Text, Timestamp};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::StreamExt;

use crate::TenantDbError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/tenant");

/// Serialises two migrators of the same database (a CLI run and a provisioning retry).
const MIGRATION_LOCK_KEY: i64 = 0x7465_6e61_6e74_6462;

/// Versions this binary knows, oldest first.
pub fn known_versions() -> Vec<String> {
    let mut versions: Vec<String> = MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map(|ms| ms.iter().map(|m| m.name().version().to_string()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run (empty: already up to date).
    pub applied: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: String,
    pub run_on: DateTime<Utc>,
}

async fn connect(url: &str, timeout: Duration) -> Result<AsyncPgConnection, TenantDbError> {
    tokio::time::timeout(timeout, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| TenantDbError::ConnectTimeout(redact(url)))?
        .map_err(TenantDbError::from)
}

/// Connects to `url` and runs `SELECT 1`: whether the server answers (the error names
/// the database, never the credentials).
pub async fn check_connection(url: &str, timeout: Duration) -> Result<(), TenantDbError> {
    let mut conn = connect(url, timeout).await?;
    tokio::time::timeout(timeout, conn.batch_execute("SELECT 1"))
        .await
        .map_err(|_| TenantDbError::ConnectTimeout(redact(url)))??;
    Ok(())
}

/// The database name of a URL, for messages (never the credentials).
fn redact(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.path().trim_start_matches('/').to_owned())
        .unwrap_or_else(|_| "tenant database".to_owned())
}

/// A read-only session: nothing it runs can change the database.
async fn connect_read_only(
    url: &str,
    timeout: Duration,
) -> Result<AsyncPgConnection, TenantDbError> {
    let mut conn = connect(url, timeout).await?;
    conn.batch_execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        .await?;
    Ok(conn)
}

#[derive(diesel::QueryableByName)]
struct HasTable {
    #[diesel(sql_type = Bool)]
    present: bool,
}

#[derive(diesel::QueryableByName)]
struct VersionRow {
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Timestamp)]
    run_on: NaiveDateTime,
}

async fn read_history(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<AppliedMigration>, TenantDbError> {
    let has: HasTable = diesel::sql_query(
        "SELECT to_regclass('public.__diesel_schema_migrations') IS NOT NULL AS present",
    )
    .get_result(conn)
    .await?;
    if !has.present {
        return Ok(Vec::new());
    }
    let rows: Vec<VersionRow> = diesel::sql_query(
        "SELECT version::text AS version, run_on FROM __diesel_schema_migrations ORDER BY version",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AppliedMigration {
            version: r.version,
            run_on: r.run_on.and_utc(),
        })
        .collect())
}

/// Migrations applied to the database at `url`, oldest first (read-only).
pub async fn history(url: &str, timeout: Duration) -> Result<Vec<AppliedMigration>, TenantDbError> {
    let mut conn = connect_read_only(url, timeout).await?;
    read_history(&mut conn).await
}

/// Migrations this binary would apply to the database at `url` (read-only).
pub async fn pending(url: &str, timeout: Duration) -> Result<Vec<String>, TenantDbError> {
    let applied: Vec<String> = history(url, timeout)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    Ok(known_versions()
        .into_iter()
        .filter(|v| !applied.contains(v))
        .collect())
}

/// Applies pending migrations to the database at `url`, each in its own transaction,
/// under an advisory lock.
pub async fn migrate(url: &str, timeout: Duration) -> Result<MigrationReport, TenantDbError> {
    let conn = connect(url, timeout).await?;
    // Diesel's harness is synchronous: run it on the blocking pool.
    tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        diesel::RunQueryDsl::execute(
            diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")),
            &mut wrapper,
        )?;
        let result = wrapper
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(|e| TenantDbError::Migration(e.to_string()));
        // The lock also ends with the session, which ends here.
        let _ = diesel::RunQueryDsl::execute(
            diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")),
            &mut wrapper,
        );
        Ok(MigrationReport { applied: result? })
    })
    .await
    .map_err(|e| TenantDbError::Migration(format!("migration task failed: {e}")))?
}

/// What to do with each database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Apply,
    /// List pending migrations; change nothing.
    DryRun,
    /// List applied migrations; change nothing.
    History,
}

/// A database to visit.
#[derive(Debug, Clone)]
pub struct Target {
    /// What the report calls it (a tenant id, `template`).
    pub label: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied(Vec<String>),
    UpToDate,
    Pending(Vec<String>),
    History(Vec<AppliedMigration>),
}

#[derive(Debug, Clone)]
pub struct TargetResult {
    pub target: Target,
    pub outcome: Result<Outcome, String>,
    pub duration: Duration,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub migrated: usize,
    pub up_to_date: usize,
    pub with_pending: usize,
    pub failed: usize,
    pub elapsed: Duration,
}

async fn visit(target: &Target, mode: Mode, timeout: Duration) -> Result<Outcome, TenantDbError> {
    match mode {
        Mode::Apply => {
            let report = migrate(&target.url, timeout).await?;
            Ok(if report.applied.is_empty() {
                Outcome::UpToDate
            } else {
                Outcome::Applied(report.applied)
            })
        }
        Mode::DryRun => {
            let pending = pending(&target.url, timeout).await?;
            Ok(if pending.is_empty() {
                Outcome::UpToDate
            } else {
                Outcome::Pending(pending)
            })
        }
        Mode::History => Ok(Outcome::History(history(&target.url, timeout).await?)),
    }
}

/// Visits every target with at most `concurrency` at once; a failure is reported and
/// the others still run. `on_result` sees each result as it completes.
pub async fn run_many(
    targets: Vec<Target>,
    mode: Mode,
    concurrency: usize,
    timeout: Duration,
    mut on_result: impl FnMut(&TargetResult),
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary {
        total: targets.len(),
        ..Summary::default()
    };
    let mut results = futures_util::stream::iter(targets)
        .map(|target| async move {
            let begun = Instant::now();
            let outcome = visit(&target, mode, timeout)
                .await
                .map_err(|e| e.to_string());
            TargetResult {
                target,
                outcome,
                duration: begun.elapsed(),
            }
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        match &result.outcome {
            Ok(Outcome::Applied(_)) => summary.migrated += 1,
            Ok(Outcome::UpToDate) | Ok(Outcome::History(_)) => summary.up_to_date += 1,
            Ok(Outcome::Pending(_)) => summary.with_pending += 1,
            Err(_) => summary.failed += 1,
        }
        on_result(&result);
    }
    summary.elapsed = started.elapsed();
    summary
}
