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
