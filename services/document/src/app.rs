//! What the document routes share: object storage, the tenant databases' pool cache,
//! and the tenant service (which database a tenant has).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::{TenantDatabaseName, TenantId};
use http_kit::ApiError;
use storage::Storage;
use tenant_db::{TenantConnection, TenantPoolCache};

pub struct App {
    pub storage: Storage,
    pub pools: TenantPoolCache,
    pub tenants: clients::TenantClient,
    /// Upload settings and the instance's upload limits.
    pub uploads: crate::upload::Uploads,
    /// Publishes tenant outboxes after a commit.
    pub relay: events::RelayHandle,
    /// Tenant id → database name (a tenant's database never changes name).
    databases: Mutex<HashMap<TenantId, (TenantDatabaseName, Instant)>>,
}

const DATABASE_NAME_TTL: Duration = Duration::from_secs(300);

impl App {
    pub fn new(
        storage: Storage,
        pools: TenantPoolCache,
        tenants: clients::TenantClient,
        uploads: crate::upload::Uploads,
        relay: events::RelayHandle,
    ) -> Self {
        Self {
            storage,
            pools,
            tenants,
            uploads,
            relay,
            databases: Mutex::new(HashMap::new()),
        }
    }

    /// Tells the relay that `tenant`'s database has new outbox rows (call after the
    /// commit). The name comes from the cache `connection` filled; without it the
    /// relay's sweep publishes the rows.
    pub fn nudge(&self, tenant: TenantId) {
        let name = self
            .databases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
            .map(|(name, _)| name.as_str().to_owned());
        if let Some(name) = name {
            self.relay.nudge(events::OutboxDb::Tenant(name));
        }
    }

    /// The database of an active tenant the caller was found to be a member of.
    pub async fn database(&self, tenant: TenantId) -> Result<TenantDatabaseName, ApiError> {
        if let Some((name, at)) = self
            .databases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&tenant)
        {
            if at.elapsed() < DATABASE_NAME_TTL {
                return Ok(name.clone());
            }
        }
        let summary = self
            .tenants
            .tenant(tenant)
            .await
            .map_err(|e| ApiError::dependency("Tenant service", e))?
            .ok_or(ApiError::NotFound("Tenant"))?;
        let name = TenantDatabaseName::parse(&summary.database_name).map_err(ApiError::internal)?;
        self.databases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant, (name.clone(), Instant::now()));
        Ok(name)
    }

    pub async fn connection(&self, tenant: TenantId) -> Result<TenantConnection, ApiError> {
        let database = self.database(tenant).await?;
        self.pools
            .get(&database)
            .await
            .map_err(|e| ApiError::dependency("Tenant database", e))
    }
}

/// A query that failed: its connection lost (the server restarting, the tenant's
/// database dropped by a purge under it) is a 503; anything else is ours, a 500.
pub fn db(e: diesel::result::Error) -> ApiError {
    if tenant_db::connection_lost(&e) {
        ApiError::dependency("Tenant database", e)
    } else {
        ApiError::internal(e)
    }
}
