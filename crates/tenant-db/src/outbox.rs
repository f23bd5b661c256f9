//! Tenant databases as outboxes the relay drains.

use std::sync::Arc;

use domain::TenantDatabaseName;
use events::{OutboxConnection, OutboxDatabases, OutboxDb};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::TenantPoolCache;

/// Lists the tenant databases a sweep visits (the tenant service knows them).
pub type TenantDatabaseList =
    Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<Vec<String>>> + Send + Sync>;

/// The outboxes of tenant databases, reached through the pool cache.
pub struct TenantOutboxes {
    pools: TenantPoolCache,
    list: TenantDatabaseList,
}

impl TenantOutboxes {
    pub fn new(pools: TenantPoolCache, list: TenantDatabaseList) -> Self {
        Self { pools, list }
    }
}

impl OutboxDatabases for TenantOutboxes {
    fn all(&self) -> BoxFuture<'_, anyhow::Result<Vec<OutboxDb>>> {
        let list = (self.list)();
        async move { Ok(list.await?.into_iter().map(OutboxDb::Tenant).collect()) }.boxed()
    }

    fn connect<'a>(
        &'a self,
        db: &'a OutboxDb,
    ) -> BoxFuture<'a, anyhow::Result<OutboxConnection<'a>>> {
        async move {
            let OutboxDb::Tenant(name) = db else {
                anyhow::bail!("no outbox database {db} here");
            };
            let name = TenantDatabaseName::parse(name)
                .map_err(|e| anyhow::anyhow!("tenant database {name:?}: {e}"))?;
            // A background job: it must not take connections from busy tenants.
            let conn = self.pools.get_background(&name).await?;
            Ok(Box::new(conn) as OutboxConnection<'a>)
        }
        .boxed()
    }
}
