//! Provisioning a tenant: row in state `provisioning` (with the creator as admin) →
//! `CREATE DATABASE … TEMPLATE` → pending tenant migrations (none, normally) → state
//! `active` with `tenant.created` in the outbox, in one transaction. A failure at any
//! step leaves state `failed` with its reason and no orphan database; `retry` completes
//! a failed tenant. Nothing half-made is ever `active`.

use std::sync::Arc;

use crate::store::servers;
use crate::store::tenants::{self, TenantRow};
use diesel_async::AsyncConnection;
use domain::{Role, TenantDatabaseName, TenantId, TenantName, TenantStatus, UserId};
use events::EventEnvelope;
use main_db::DbPool;
use tenant_db::{TenantDatabaseManager, TenantDbError};

use crate::fleet::Fleet;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("tenant not found")]
    NotFound,
    #[error("tenant is {0}, only a failed provisioning can be retried")]
    NotRetryable(TenantStatus),
    #[error("provisioning tenant {tenant_id} failed: {reason}")]
    Failed { tenant_id: TenantId, reason: String },
    #[error("the creator has reached the limit of {0} tenants")]
    LimitReached(u32),
    #[error(transparent)]
    NoCapacity(#[from] crate::placement::NoCapacity),
    #[error(transparent)]
    Database(#[from] main_db::DbError),
}

impl From<diesel::result::Error> for ProvisionError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Database(main_db::DbError::Query(e))
    }
}

#[derive(Clone)]
pub struct Provisioner {
    db: DbPool,
    servers: Arc<Fleet>,
    relay: events::RelayHandle,
}

impl Provisioner {
    pub fn new(db: DbPool, servers: Arc<Fleet>) -> Self {
        Self {
            db,
            servers,
            relay: events::RelayHandle::disabled(),
        }
    }

    /// Nudges `relay` after each commit that wrote events (without one, the events
    /// wait for the service's outbox sweep).
    pub fn with_relay(mut self, relay: events::RelayHandle) -> Self {
        self.relay = relay;
        self
    }

    /// Creates a tenant and its database; returns it `active`, or `Failed` after
    /// recording the failure on the tenant.
    pub async fn provision(
        &self,
        name: TenantName,
        creator: Option<UserId>,
    ) -> Result<TenantRow, ProvisionError> {
        self.provision_limited(name, creator, None).await
    }

    /// [`Self::provision`], refusing when `creator` already has `limit` tenants. The
    /// count and the insert happen under a per-creator advisory lock, so concurrent
    /// requests cannot all slip under the limit.
    pub async fn provision_limited(
        &self,
        name: TenantName,
        creator: Option<UserId>,
        limit: Option<u32>,
    ) -> Result<TenantRow, ProvisionError> {
        let id = TenantId::new();
        let mut conn = self.db.get().await.map_err(main_db::DbError::from)?;
        // The 32-bit suffix makes equal slugs collide rarely; the unique constraint
        // catches it and a new name is drawn.
        let mut attempts = 0;
        let (tenant, database) = loop {
            attempts += 1;
            let database = TenantDatabaseName::generate(&name);
            let inserted = conn
                .transaction::<_, ProvisionError, _>(async |tx| {
                    if let (Some(creator), Some(limit)) = (creator, limit) {
                        use diesel_async::RunQueryDsl;
                        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
                            .bind::<diesel::sql_types::Text, _>(creator.to_string())
                            .execute(tx)
                            .await?;
                        if tenants::count_created_by(tx, creator).await? >= i64::from(limit) {
                            return Err(ProvisionError::LimitReached(limit));
                        }
                    }
                    let server = place(tx).await?;
                    let tenant =
                        tenants::insert_provisioning(tx, id, &name, &database, creator, server)
                            .await?;
                    if let Some(creator) = creator {
                        crate::store::memberships::insert(tx, creator, id, Role::Admin).await?;
                    }
                    Ok(tenant)
                })
                .await;
            match inserted {
                Ok(tenant) => break (tenant, database),
                Err(ProvisionError::Database(main_db::DbError::Query(
                    diesel::result::Error::DatabaseError(_, info),
                ))) if attempts < 3
                    && info.constraint_name() == Some("tenants_database_name_key") => {}
                Err(e) => return Err(e),
            }
        };
        drop(conn);
        tracing::info!(tenant.id = %id, database = %database, "provisioning tenant");
        self.complete(tenant).await
    }

    /// Completes a `failed` provisioning.
    pub async fn retry(&self, id: TenantId) -> Result<TenantRow, ProvisionError> {
        let mut conn = self.db.get().await.map_err(main_db::DbError::from)?;
        let tenant = tenants::find(&mut conn, id)
            .await?
            .ok_or(ProvisionError::NotFound)?;
        if tenant.status() != TenantStatus::Failed {
            return Err(ProvisionError::NotRetryable(tenant.status()));
        }
        // Claim it: a concurrent retry sees `provisioning` and stops.
        let claimed = tenants::transition(
            &mut conn,
            id,
            TenantStatus::Failed,
            TenantStatus::Provisioning,
        )
        .await?;
        drop(conn);
        match claimed {
            Some(tenant) => self.complete(tenant).await,
            None => Err(ProvisionError::NotRetryable(TenantStatus::Provisioning)),
        }
    }

    async fn complete(&self, tenant: TenantRow) -> Result<TenantRow, ProvisionError> {
        let id = tenant.tenant_id();
        let database = match tenant.database() {
            Ok(database) => database,
            Err(e) => return self.fail(id, None, e.to_string()).await,
        };
        // The server placement chose; one whose settings this service lacks fails
        // the tenant with the setting's name (retry once it is set).
        let manager = match self.servers.of_tenant(&tenant).await {
            Ok(manager) => manager,
            Err(e) => {
                let reason = format!("database server {}: {e}", tenant.server_id);
                return self.fail(id, None, reason).await;
            }
        };
        let mut created = false;
        let outcome = async {
            match manager.create_from_template(&database).await {
                Ok(()) => created = true,
                // A retry after a failure whose clean-up could not drop the database:
                // the name is this tenant's alone (unique constraint), so it is ours.
                Err(TenantDbError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
            if created {
                manager.migrate_new(&database).await
            } else {
                // Adopted, not copied just now: whatever template it came from is
                // unknown, so it is checked.
                tenant_db::migrations::migrate(
                    &manager.admin_database_url(&database),
                    manager.settings().timeout,
                )
                .await
            }
            .map_err(|e| e.to_string())?;
            self.activate(&tenant, &database)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match outcome {
            Ok(active) => {
                tracing::info!(tenant.id = %id, database = %database, "tenant active");
                Ok(active)
            }
            Err(reason) => {
                self.fail(id, created.then_some((&*manager, &database)), reason)
                    .await
            }
        }
    }

    async fn activate(
        &self,
        tenant: &TenantRow,
        database: &TenantDatabaseName,
    ) -> Result<TenantRow, ProvisionError> {
        let id = tenant.tenant_id();
        let created_by = tenant.created_by.map(UserId::from_uuid);
        let created = events::TenantCreated {
            tenant_id: id,
            name: tenant.name.clone(),
            database_name: database.to_string(),
            created_by,
        };
        let event = EventEnvelope::of(&created, Some(id), created_by).map_err(|e| {
            ProvisionError::Failed {
                tenant_id: id,
                reason: e.to_string(),
            }
        })?;
        let mut conn = self.db.get().await.map_err(main_db::DbError::from)?;
        let active = conn
            .transaction::<_, ProvisionError, _>(async |tx| {
                let active =
                    tenants::transition(tx, id, TenantStatus::Provisioning, TenantStatus::Active)
                        .await?
                        .ok_or(ProvisionError::NotRetryable(TenantStatus::Failed))?;
                events::enqueue(tx, &event)
                    .await
                    .map_err(|e| ProvisionError::Failed {
                        tenant_id: id,
                        reason: e.to_string(),
                    })?;
                Ok(active)
            })
            .await?;
        self.relay.nudge(events::OutboxDb::Main);
        Ok(active)
    }

    /// Records the failure; drops the database if this attempt created it.
    async fn fail(
        &self,
        id: TenantId,
        created: Option<(&TenantDatabaseManager, &TenantDatabaseName)>,
        reason: String,
    ) -> Result<TenantRow, ProvisionError> {
        tracing::error!(tenant.id = %id, %reason, "tenant provisioning failed");
        // Compare-and-set: only the attempt that still owns the `provisioning` state
        // records the failure and cleans up; a sweep or a retry may have taken over.
        let recorded = async {
            let mut conn = self.db.get().await.map_err(main_db::DbError::from)?;
            Ok::<_, ProvisionError>(tenants::fail_if_provisioning(&mut conn, id, &reason).await?)
        }
        .await;
        match recorded {
            Ok(true) => {
                if let Some((manager, database)) = created {
                    if let Err(e) = manager.drop_database(database).await {
                        // Left for `retry`, which adopts an existing database of this tenant.
                        tracing::error!(tenant.id = %id, error = %e, "could not drop the half-made tenant database");
                    }
                }
            }
            Ok(false) => {
                tracing::warn!(tenant.id = %id, "the tenant left `provisioning` meanwhile; not cleaning up")
            }
            // The sweep will mark it failed and drop its database once it can.
            Err(e) => {
                tracing::error!(tenant.id = %id, error = %e, "could not record the provisioning failure")
            }
        }
        Err(ProvisionError::Failed {
            tenant_id: id,
            reason,
        })
    }
}

/// Chooses the server of a tenant about to be inserted in `tx` (placement is
/// serialised until `tx` ends, `crate::placement`).
async fn place(tx: &mut diesel_async::AsyncPgConnection) -> Result<uuid::Uuid, ProvisionError> {
    servers::lock_placement(tx).await?;
    let candidates: Vec<_> = servers::list(tx)
        .await?
        .iter()
        .map(servers::ServerRow::candidate)
        .collect();
    Ok(crate::placement::choose(&candidates)?.id)
}
