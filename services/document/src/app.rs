//! What the document routes share: object storage, the tenant databases' pool cache,
//! and the tenant service (which database a tenant has).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use domain::{TenantDatabaseName, TenantId};
use http_kit::ApiError;
use std::sync::Arc;
use storage::Storage;
use tenant_db::{ServerUrls, TenantConnection, TenantPoolCache};

pub struct App {
    pub storage: Storage,
    pub pools: TenantPoolCache,
    /// The URLs of the database servers tenants are on.
    pub servers: Arc<ServerUrls>,
    pub tenants: clients::TenantClient,
    /// Upload settings and the instance's upload limits.
    pub uploads: crate::upload::Uploads,
    /// Publishes tenant outboxes after a commit.
    pub relay: events::RelayHandle,
    /// Tenant id → database name (a tenant's database never changes name; its server
    /// is recorded in the pool cache).
    databases: Mutex<HashMap<TenantId, (TenantDatabaseName, Instant)>>,
}

const DATABASE_NAME_TTL: Duration = Duration::from_secs(300);

impl App {
    pub fn new(
        storage: Storage,
        pools: TenantPoolCache,
        servers: Arc<ServerUrls>,
        tenants: clients::TenantClient,
        uploads: crate::upload::Uploads,
        relay: events::RelayHandle,
    ) -> Self {
        Self {
            storage,
            pools,
            servers,
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

    /// Forgets where `tenant`'s database is (it moved), or every tenant's.
    pub fn forget(&self, tenant: Option<TenantId>) {
        let mut databases = self.databases.lock().unwrap_or_else(|p| p.into_inner());
        match tenant {
            Some(tenant) => {
                databases.remove(&tenant);
            }
            None => databases.clear(),
        }
    }

    /// Follows the tenant service's move announcements: a moved tenant's next request
    /// asks where its database is now. Spawn it.
    pub async fn follow_moves(app: std::sync::Weak<Self>, broadcast: cache::Broadcast) {
        broadcast
            .listen(move |heard| {
                let Some(app) = app.upgrade() else { return };
                match heard {
                    // Messages may have been missed: forget everything.
                    cache::Heard::Subscribed => app.forget(None),
                    cache::Heard::Message(message) => match message.parse::<TenantId>() {
                        Ok(tenant) => app.forget(Some(tenant)),
                        Err(_) => app.forget(None),
                    },
                }
            })
            .await;
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
        let found = self
            .tenants
            .database_to_connect(tenant)
            .await
            .map_err(|e| ApiError::dependency("Tenant service", e))?
            .ok_or(ApiError::NotFound("Tenant"))?;
        let name = self
            .servers
            .place(
                &self.pools,
                &found.database_name,
                found.server.id,
                &found.server.url_ref,
            )
            .await
            .map_err(|e| ApiError::dependency("Tenant database", e))?;
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

/// Every tenant database, each recorded in `pools` on its server; one whose server's
/// setting this service lacks is logged and left out.
pub async fn placed_databases(
    tenants: &clients::TenantClient,
    pools: &TenantPoolCache,
    servers: &ServerUrls,
) -> Result<Vec<TenantDatabaseName>, clients::ClientError> {
    let mut placed = Vec::new();
    for d in tenants.databases().await? {
        match servers
            .place(pools, &d.database_name, d.server.id, &d.server.url_ref)
            .await
        {
            Ok(name) => placed.push(name),
            Err(e) => {
                tracing::warn!(database = %d.database_name, server = %d.server.name, error = %e, "skipping a tenant database");
            }
        }
    }
    Ok(placed)
}

/// A query that failed: a write refused while the tenant moves is 503
/// `tenant_maintenance`; its connection lost (the server restarting, the tenant's
/// database dropped by a purge under it) is a 503; anything else is ours, a 500.
pub fn db(e: diesel::result::Error) -> ApiError {
    if tenant_db::read_only(&e) {
        ApiError::TenantMaintenance {
            retry_after_secs: http_kit::error::TENANT_MAINTENANCE_RETRY_SECS,
        }
    } else if tenant_db::connection_lost(&e) {
        ApiError::dependency("Tenant database", e)
    } else {
        ApiError::internal(e)
    }
}
