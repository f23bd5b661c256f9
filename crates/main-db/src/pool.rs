//! The main-database pool: deadpool over diesel-async, with wait, create and recycle
//! timeouts so a database that hangs turns into a 503, not a stuck request.

use std::time::Duration;

use deadpool::Runtime;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConnection = Object<AsyncPgConnection>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool could not be built: {0}")]
    Build(String),
    #[error("no database connection available: {0}")]
    Pool(String),
    #[error("timed out connecting to the database")]
    ConnectTimeout,
    #[error(transparent)]
    Connection(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for DbError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: usize,
    /// Applies to waiting for a free connection, creating one and recycling one.
    pub timeout: Duration,
}

/// Builds the pool (connections are opened lazily, on first use).
pub fn build_pool(url: &str, settings: &PoolSettings) -> Result<DbPool, DbError> {
    let mut config = ManagerConfig::default();
    // Fast recycling: a connection whose last query failed at the connection level is
    // dropped; a verification query per checkout would double every round trip.
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(settings.max_size)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| DbError::Build(e.to_string()))
}

/// The main-database pool of `service`'s request traffic: `DATABASE_URL` with the
/// service's session settings (`CommonSettings::session_url`), `DATABASE_POOL_SIZE`
/// connections, `DATABASE_TIMEOUT_MS`.
pub fn service_pool(service: &str, common: &http_kit::CommonSettings) -> Result<DbPool, DbError> {
    build_pool(
        &common.session_url(common.database_url.expose(), service),
        &PoolSettings {
            max_size: common.database_pool_size,
            timeout: common.database_timeout,
        },
    )
}

/// One direct connection, with a timeout (for migrations and tools).
pub async fn connect(url: &str, timeout: Duration) -> Result<AsyncPgConnection, DbError> {
    tokio::time::timeout(timeout, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| DbError::ConnectTimeout)?
        .map_err(DbError::from)
}

/// For `/ready`: a connection from the pool answers `SELECT 1`.
pub async fn ping(pool: &DbPool) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    diesel::sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// A readiness probe over `pool` (for `/ready`).
pub fn probe(
    pool: DbPool,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
       + Send
       + Sync
       + 'static {
    move || {
        let pool = pool.clone();
        Box::pin(async move { ping(&pool).await.map_err(|e| e.to_string()) })
    }
}

/// What one instance of a service may hold of the server's connections.
#[derive(Debug, Clone)]
pub struct ConnectionBudget {
    pub service: &'static str,
    /// Each pool: the settings that size it and their product.
    pub parts: Vec<(&'static str, usize)>,
    /// `DB_CONNECTION_SHARE`, percent.
    pub share_percent: u8,
}

impl ConnectionBudget {
    pub fn total(&self) -> usize {
        self.parts.iter().map(|(_, n)| n).sum()
    }

    /// The warning to give when the instance may hold more than its share of
    /// `max_connections`, naming the settings to change.
    pub fn warning(&self, max_connections: usize) -> Option<String> {
        let allowed = max_connections * usize::from(self.share_percent) / 100;
        let total = self.total();
        (total > allowed).then(|| {
            let parts: Vec<String> = self
                .parts
                .iter()
                .map(|(settings, n)| format!("{settings} = {n}"))
                .collect();
            format!(
                "{} may open {total} PostgreSQL connections ({}), more than \
                 DB_CONNECTION_SHARE = {}% of the server's max_connections = {max_connections} \
                 ({allowed}): lower those settings, or put PgBouncer in front \
                 (docs/DESIGN-NOTES.md, \"Connection budget\")",
                self.service,
                parts.join(", "),
                self.share_percent
            )
        })
    }

    /// Reads the server's `max_connections` and logs the warning if there is one; a
    /// server that does not answer is left to `/ready`. Spawned at start.
    pub async fn check(self, pool: DbPool) {
        #[derive(diesel::QueryableByName)]
        struct Max {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            n: i32,
        }
        let max = async {
            let mut conn = pool.get().await.map_err(DbError::from)?;
            let row: Max = diesel::sql_query("SELECT current_setting('max_connections')::int AS n")
                .get_result(&mut conn)
                .await?;
            Ok::<_, DbError>(row.n)
        }
        .await;
        match max {
            Ok(max) => match self.warning(usize::try_from(max).unwrap_or(0)) {
                Some(warning) => tracing::warn!(
                    service = self.service,
                    connections = self.total(),
                    max_connections = max,
                    "{warning}"
                ),
                None => tracing::info!(
                    service = self.service,
                    connections = self.total(),
                    max_connections = max,
                    "connection budget within DB_CONNECTION_SHARE"
                ),
            },
            Err(e) => tracing::debug!(error = %e, "max_connections not read"),
        }
    }
}

/// What every service adds to its start for its main database and its broker: the
/// `postgres` readiness check, `kafka_topics` when a broker is configured
/// (`events::topics`: a missing topic is named instead of failing at runtime), and the
/// connection-budget warning, spawned (`other_pools`: the service's pools besides the
/// main one, by the settings that size them). Must run inside the Tokio runtime.
pub fn database_checks(
    service: &'static str,
    common: &http_kit::CommonSettings,
    db: &DbPool,
    other_pools: &[(&'static str, usize)],
) -> anyhow::Result<Vec<http_kit::ReadinessCheck>> {
    let mut parts = vec![("DATABASE_POOL_SIZE", common.database_pool_size)];
    parts.extend_from_slice(other_pools);
    tokio::spawn(
        ConnectionBudget {
            service,
            parts,
            share_percent: common.db_connection_share,
        }
        .check(db.clone()),
    );
    let mut checks = vec![http_kit::ReadinessCheck::new("postgres", probe(db.clone()))];
    if let Some(topics) = events::topics::probe(
        common.kafka().map(events::Connection::from),
        common.ready_timeout,
    )? {
        checks.push(http_kit::ReadinessCheck::new("kafka_topics", topics));
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_over_its_share_names_the_settings_that_size_it() {
        let budget = ConnectionBudget {
            service: "document",
            parts: vec![
                ("DATABASE_POOL_SIZE", 5),
                (
                    "TENANT_POOL_MAX_POOLS × TENANT_POOL_CONNECTIONS_PER_POOL",
                    16,
                ),
            ],
            share_percent: 25,
        };
        assert_eq!(budget.total(), 21);
        assert_eq!(budget.warning(100), None, "21 of 25 allowed");
        let warning = budget.warning(80).expect("21 of 20 allowed");
        assert!(
            warning.starts_with("document may open 21 PostgreSQL connections"),
            "{warning}"
        );
        assert!(warning.contains("DATABASE_POOL_SIZE = 5"), "{warning}");
        assert!(
            warning.contains("TENANT_POOL_MAX_POOLS × TENANT_POOL_CONNECTIONS_PER_POOL = 16"),
            "{warning}"
        );
        assert!(warning.contains("max_connections = 80 (20)"), "{warning}");
    }
}
