//! The database servers this service administers: one [`TenantDatabaseManager`] per
//! server (its administration pool, its template, its tenant pools), made when a
//! server is first needed from the settings its row names (docs/OPERATIONS.md,
//! "Database servers").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use main_db::DbPool;
use tenant_db::{
    ServerUrls, TenantDatabaseManager, TenantDbError, TenantDbSettings, MAIN_SERVER_ID,
};
use uuid::Uuid;

use crate::store::servers::{self, ServerRow};
use crate::store::tenants::TenantRow;

pub struct Fleet {
    db: DbPool,
    base: TenantDbSettings,
    urls: ServerUrls,
    main: Arc<TenantDatabaseManager>,
    others: Mutex<HashMap<Uuid, Arc<TenantDatabaseManager>>>,
}

impl Fleet {
    /// Must be called inside a Tokio runtime (pool caches start their sweeps).
    pub fn new(db: DbPool, base: TenantDbSettings) -> Result<Self, TenantDbError> {
        Ok(Self {
            urls: ServerUrls::new(&base),
            main: Arc::new(TenantDatabaseManager::new(base.clone())?),
            base,
            db,
            others: Mutex::new(HashMap::new()),
        })
    }

    /// The main database's pool and the fleet, for a command.
    pub fn for_command(settings: &crate::Settings) -> anyhow::Result<(DbPool, Arc<Self>)> {
        let db = settings.command_pool()?;
        let fleet = Arc::new(Self::new(db.clone(), settings.tenant_db.clone())?);
        Ok((db, fleet))
    }

    /// The main database's own server.
    pub fn main(&self) -> &Arc<TenantDatabaseManager> {
        &self.main
    }

    pub fn urls(&self) -> &ServerUrls {
        &self.urls
    }

    /// The settings every server's manager shares (template name, pool limits).
    pub fn base(&self) -> &TenantDbSettings {
        &self.base
    }

    /// The manager of the server with id `server`, read from `database_servers` the
    /// first time.
    pub async fn manager(&self, server: Uuid) -> Result<Arc<TenantDatabaseManager>, TenantDbError> {
        if server == MAIN_SERVER_ID {
            return Ok(self.main.clone());
        }
        if let Some(manager) = self.cached(server) {
            return Ok(manager);
        }
        let row = {
            let mut conn = self
                .db
                .get()
                .await
                .map_err(|e| TenantDbError::Pool(e.to_string()))?;
            servers::find(&mut conn, server)
                .await?
                .ok_or_else(|| TenantDbError::Pool(format!("no database server {server}")))?
        };
        self.manager_of(&row).await
    }

    /// The manager of `row`'s server.
    pub async fn manager_of(
        &self,
        row: &ServerRow,
    ) -> Result<Arc<TenantDatabaseManager>, TenantDbError> {
        if row.id == MAIN_SERVER_ID {
            return Ok(self.main.clone());
        }
        if let Some(manager) = self.cached(row.id) {
            return Ok(manager);
        }
        let settings = self
            .urls
            .settings_for(&self.base, &row.url_ref, Some(&row.admin_url_ref))
            .await?;
        let manager = Arc::new(TenantDatabaseManager::new(settings)?);
        let mut others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        Ok(others.entry(row.id).or_insert(manager).clone())
    }

    /// The manager of the server holding `tenant`'s database.
    pub async fn of_tenant(
        &self,
        tenant: &TenantRow,
    ) -> Result<Arc<TenantDatabaseManager>, TenantDbError> {
        self.manager(tenant.server_id).await
    }

    /// The names of `tenants`' databases that exist, asking each server about its own.
    /// A server that cannot answer is logged and its databases left out (a sweep
    /// visits the others), unless `strict`.
    pub async fn existing(
        &self,
        tenants: &[TenantRow],
        strict: bool,
    ) -> Result<std::collections::HashSet<String>, TenantDbError> {
        let mut by_server: HashMap<Uuid, Vec<String>> = HashMap::new();
        for tenant in tenants {
            by_server
                .entry(tenant.server_id)
                .or_default()
                .push(tenant.database_name.clone());
        }
        let mut existing = std::collections::HashSet::new();
        for (server, names) in by_server {
            let found = match self.manager(server).await {
                Ok(manager) => manager.existing(&names).await,
                Err(e) => Err(e),
            };
            match found {
                Ok(found) => existing.extend(found),
                Err(e) if !strict => {
                    tracing::warn!(server = %server, error = %e, "a database server could not list its tenant databases");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(existing)
    }

    fn cached(&self, server: Uuid) -> Option<Arc<TenantDatabaseManager>> {
        self.others
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&server)
            .cloned()
    }
}
