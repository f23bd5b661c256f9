use domain::TenantDatabaseName;

#[derive(Debug, thiserror::Error)]
pub enum TenantDbError {
    #[error("tenant database {0} does not exist")]
    Missing(TenantDatabaseName),
    #[error("tenant database {0} already exists")]
    AlreadyExists(TenantDatabaseName),
    #[error("timed out waiting for a tenant database connection ({0})")]
    PoolExhausted(String),
    #[error("tenant database pool error: {0}")]
    Pool(String),
    #[error("timed out connecting to {0}")]
    ConnectTimeout(String),
    #[error("template database {0:?} is busy (other sessions are connected to it)")]
    TemplateBusy(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Connection(#[from] diesel::ConnectionError),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl TenantDbError {
    /// Whether the database server (not the request) is the problem: maps to 503.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::PoolExhausted(_)
                | Self::Pool(_)
                | Self::ConnectTimeout(_)
                | Self::Connection(_)
                | Self::TemplateBusy(_)
        )
    }
}
