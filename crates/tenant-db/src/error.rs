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
    /// A database server's setting is missing or not a PostgreSQL URL (never its value).
    #[error("database server setting {name} {reason}")]
    ServerSetting { name: String, reason: String },
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
                | Self::ServerSetting { .. }
        )
    }
}

/// Whether a write was refused because the tenant's database is read-only for a moment
/// (SQLSTATE 25006: the read-only trigger of a move): 503 `tenant_maintenance`.
pub fn read_only(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ReadOnlyTransaction,
            _
        )
    )
}

/// Whether a query failed because its connection went away (the server shut down or
/// restarted, or the database was dropped under it: `terminating connection due to
/// administrator command`, SQLSTATE 57P01–57P03), not because of the query: a 503.
pub fn connection_lost(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(_, info) => {
            let message = info.message();
            message.starts_with("terminating connection")
                || message.contains("connection closed")
                || message.starts_with("the database system is")
        }
        other => other.to_string().contains("connection closed"),
    }
}
