//! A deleted tenant's objects (`tenant.deleted` with `hard_delete`): once the tenant
//! service confirms the purge, deletes every object under the tenant's prefix
//! (`tenants/{database_name}/`), then records the event as processed.

use domain::TenantDatabaseName;
use events::{EventEnvelope, Handler, HandlerError, TenantDeleted, Topic};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use storage::Storage;

use crate::audit::classify;
use crate::files::{storage_error, tenant_error};

pub const PURGE_CONSUMER: &str = "tenant-purge";

/// Deletes a hard-deleted tenant's objects.
pub struct TenantPurge {
    pub storage: Storage,
    pub tenants: clients::TenantClient,
    pub db: main_db::DbPool,
}

impl Handler for TenantPurge {
    fn name(&self) -> &str {
        PURGE_CONSUMER
    }

    fn handle<'a>(
        &'a self,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            for event in events {
                if event.event_type != Topic::TenantDeleted.as_str() {
                    continue;
                }
                let deleted: TenantDeleted = event
                    .decode()
                    .map_err(|e| HandlerError::Invalid(e.to_string()))?;
                if !deleted.hard_delete {
                    continue;
                }
                let tenant = event.tenant_id.ok_or_else(|| {
                    HandlerError::Invalid("tenant.deleted without a tenant".into())
                })?;
                // The tenant service must confirm the purge: the tenant deactivated and its
                // database gone. An event saying otherwise (a mistake, or forged by
                // whoever can write to the topic) deletes nothing and is dead-lettered.
                let Some(summary) = self.tenants.tenant(tenant).await.map_err(tenant_error)?
                else {
                    continue;
                };
                if summary.status != domain::TenantStatus::Deleted {
                    return Err(HandlerError::Invalid(format!(
                        "tenant.deleted for tenant {tenant}, which the tenant service reports {}: its objects are kept",
                        summary.status.as_str()
                    )));
                }
                let database = TenantDatabaseName::parse(&summary.database_name)
                    .map_err(|e| HandlerError::Invalid(format!("tenant database name: {e}")))?;
                // The tenant service answers for the database on whichever server holds it.
                if self
                    .tenants
                    .database(tenant)
                    .await
                    .map_err(tenant_error)?
                    .is_some()
                {
                    return Err(HandlerError::Invalid(format!(
                        "tenant.deleted for tenant {tenant}, whose database still exists: its objects are kept"
                    )));
                }
                // Deleting is idempotent: a redelivery deletes what is left, if anything.
                let deleted = self
                    .storage
                    .delete_prefix(&storage::tenant_prefix(&database))
                    .await
                    .map_err(storage_error)?;
                let mut conn = crate::audit::connection(&self.db).await?;
                events::claim(&mut conn, PURGE_CONSUMER, &[event.id])
                    .await
                    .map_err(classify)?;
                tracing::info!(tenant.id = %tenant, deleted, "objects of the purged tenant deleted");
            }
            Ok(())
        }
        .boxed()
    }
}
