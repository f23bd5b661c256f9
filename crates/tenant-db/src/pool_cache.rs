//! A bounded cache of per-tenant connection pools.
//!
//! Bound: never more than `max_pools × connections_per_pool` tenant connections (the
//! budget), however many tenants exist. The budget is shared, not split: every
//! connection holds one of its permits, and one busy tenant's pool may grow to `burst`
//! connections (half the budget by default) while the others' are idle, so a hot tenant
//! is not held to its average share. A pool that needs a connection when the budget is
//! spent closes an idle connection of the least recently used other pool, or waits for
//! one to be returned, up to the timeout. A pool is evicted (closed, its connections
//! dropped) only when nobody holds or is acquiring one of its connections (its lease
//! count is zero); when the cache has `max_pools` pools and every one is leased, `get`
//! waits for a lease to end, up to the timeout. Pools unused for `idle_timeout` are
//! closed by a background sweep. docs/DESIGN-NOTES.md ("Connection budget").

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{Manager, Metrics, Object, Pool, RecycleResult};
use deadpool::Runtime;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as ConnectError, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use domain::TenantDatabaseName;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::{TenantDbError, TenantDbSettings};

type TenantPool = Pool<Budgeted>;

/// A tenant connection and the budget permit it holds while it is open.
pub(crate) struct BudgetedConnection {
    connection: AsyncPgConnection,
    _permit: OwnedSemaphorePermit,
}

/// Creates a pool's connections within the cache's budget.
pub(crate) struct Budgeted {
    connect: AsyncDieselConnectionManager<AsyncPgConnection>,
    /// The pool's database, so shedding spares this pool.
    name: String,
    cache: Weak<Inner>,
}

impl Budgeted {
    async fn permit(&self) -> Result<OwnedSemaphorePermit, ConnectError> {
        let gone = || {
            ConnectError::ConnectionError(diesel::ConnectionError::BadConnection(
                "the tenant pool cache was closed".to_owned(),
            ))
        };
        // The pool's create timeout bounds this loop.
        loop {
            let cache = self.cache.upgrade().ok_or_else(gone)?;
            if let Ok(permit) = Arc::clone(&cache.budget).try_acquire_owned() {
                return Ok(permit);
            }
            // Register before shedding, so a connection returned in between is seen.
            let returned = cache.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if cache.shed_idle_connection(&self.name) {
                continue;
            }
            // Every connection is in use: wait for one to be closed (a permit comes
            // back) or returned to its pool (idle, so it can be shed).
            tokio::select! {
                permit = Arc::clone(&cache.budget).acquire_owned() => {
                    return permit.map_err(|_| gone());
                }
                () = returned => {}
            }
        }
    }
}

impl Manager for Budgeted {
    type Type = BudgetedConnection;
    type Error = ConnectError;

    async fn create(&self) -> Result<BudgetedConnection, ConnectError> {
        let permit = self.permit().await?;
        let connection = self.connect.create().await?;
        Ok(BudgetedConnection {
            connection,
            _permit: permit,
        })
    }

    async fn recycle(
        &self,
        obj: &mut BudgetedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<ConnectError> {
        self.connect.recycle(&mut obj.connection, metrics).await
    }
}

struct Entry {
    pool: TenantPool,
    /// Connections held plus acquisitions in progress.
    leases: usize,
    last_used: Instant,
}

struct Inner {
    settings: TenantDbSettings,
    pools: Mutex<HashMap<String, Entry>>,
    /// One permit per tenant connection the budget allows.
    budget: Arc<Semaphore>,
    /// Signalled whenever a connection goes back to its pool.
    returned: Notify,
    /// Signalled whenever a pool's lease count drops to zero.
    released: Notify,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock leaves counts that are still consistent
        // (every change is a single statement), so a poisoned lock is safe to reuse.
        self.pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn build_pool(self: &Arc<Self>, name: &str) -> Result<TenantPool, TenantDbError> {
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager = Budgeted {
            connect: AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                self.settings.url_for(name),
                config,
            ),
            name: name.to_owned(),
            cache: Arc::downgrade(self),
        };
        Pool::builder(manager)
            .max_size(self.settings.burst())
            .wait_timeout(Some(self.settings.timeout))
            .create_timeout(Some(self.settings.timeout))
            .recycle_timeout(Some(self.settings.timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| TenantDbError::Pool(e.to_string()))
    }

    /// Takes a lease on the pool of `name`, creating it (and evicting the least
    /// recently used idle pool if the cache is full). `None` when every pool is leased.
    fn lease(self: &Arc<Self>, name: &str) -> Result<Option<TenantPool>, TenantDbError> {
        let mut pools = self.lock();
        let now = Instant::now();
        if let Some(entry) = pools.get_mut(name) {
            entry.leases += 1;
            entry.last_used = now;
            return Ok(Some(entry.pool.clone()));
        }
        if pools.len() >= self.settings.max_pools {
            let victim = pools
                .iter()
                .filter(|(_, e)| e.leases == 0)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone());
            match victim {
                Some(victim) => {
                    if let Some(entry) = pools.remove(&victim) {
                        entry.pool.close();
                    }
                }
                None => return Ok(None),
            }
        }
        let pool = self.build_pool(name)?;
        pools.insert(
            name.to_owned(),
            Entry {
                pool: pool.clone(),
                leases: 1,
                last_used: now,
            },
        );
        Ok(Some(pool))
    }

    fn release(&self, name: &str) {
        let mut pools = self.lock();
        if let Some(entry) = pools.get_mut(name) {
            entry.leases = entry.leases.saturating_sub(1);
            entry.last_used = Instant::now();
            if entry.leases == 0 {
                self.released.notify_waiters();
            }
        }
        self.returned.notify_waiters();
    }

    /// Closes one idle connection of the least recently used pool other than `name`'s,
    /// which returns its permit to the budget. False when no other pool has one.
    fn shed_idle_connection(&self, name: &str) -> bool {
        let shed = {
            let pools = self.lock();
            let mut others: Vec<_> = pools.iter().filter(|(n, _)| n.as_str() != name).collect();
            others.sort_by_key(|(_, e)| e.last_used);
            others.into_iter().find_map(|(_, entry)| {
                let mut taken = false;
                let removed = entry
                    .pool
                    .retain(|_, _| std::mem::replace(&mut taken, true))
                    .removed;
                (!removed.is_empty()).then_some(removed)
            })
        };
        // Closed here, outside the lock.
        shed.is_some()
    }

    fn evict_idle(&self) -> usize {
        let mut pools = self.lock();
        let idle = self.settings.idle_timeout;
        let before = pools.len();
        pools.retain(|_, entry| {
            let keep = entry.leases > 0 || entry.last_used.elapsed() < idle;
            if !keep {
                entry.pool.close();
            }
            keep
        });
        let evicted = before - pools.len();
        if evicted > 0 {
            self.released.notify_waiters();
        }
        evicted
    }

    fn remove(&self, name: &str) -> bool {
        let mut pools = self.lock();
        match pools.get(name) {
            Some(entry) if entry.leases == 0 => {
                entry.pool.close();
                pools.remove(name);
                true
            }
            Some(_) => false,
            None => true,
        }
    }
}

/// Ends a lease when dropped (after the connection it guards went back to its pool).
struct Lease {
    inner: Arc<Inner>,
    name: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.inner.release(&self.name);
    }
}

/// A connection to one tenant's database. Derefs to `AsyncPgConnection`.
pub struct TenantConnection {
    // Field order matters: the connection returns to its pool before the lease ends.
    connection: Object<Budgeted>,
    _lease: Lease,
}

impl Deref for TenantConnection {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        &self.connection.connection
    }
}

impl DerefMut for TenantConnection {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        &mut self.connection.connection
    }
}

/// A snapshot of the cache, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolCacheStats {
    pub pools: usize,
    pub leased_pools: usize,
    /// Connections currently open across all pools.
    pub open_connections: usize,
    /// The most connections one pool has open.
    pub largest_pool: usize,
    pub max_pools: usize,
    pub connection_bound: usize,
}

#[derive(Clone)]
pub struct TenantPoolCache {
    inner: Arc<Inner>,
}

impl TenantPoolCache {
    /// Must be called inside a Tokio runtime: it starts the idle sweep.
    pub fn new(settings: TenantDbSettings) -> Self {
        let sweep_every =
            (settings.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        let inner = Arc::new(Inner {
            budget: Arc::new(Semaphore::new(settings.connection_bound())),
            returned: Notify::new(),
            settings,
            pools: Mutex::new(HashMap::new()),
            released: Notify::new(),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sweep_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                // The sweep ends with the cache.
                let Some(inner) = weak.upgrade() else { break };
                let evicted = inner.evict_idle();
                if evicted > 0 {
                    tracing::debug!(evicted, "closed idle tenant pools");
                }
            }
        });
        Self { inner }
    }

    /// A connection to `database`, waiting (up to the timeout) when the cache is full of
    /// busy pools.
    pub async fn get(
        &self,
        database: &TenantDatabaseName,
    ) -> Result<TenantConnection, TenantDbError> {
        let name = database.as_str();
        let deadline = tokio::time::Instant::now() + self.inner.settings.timeout;
        loop {
            // Register interest before looking, so a release in between is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(pool) = self.inner.lease(name)? {
                let lease = Lease {
                    inner: Arc::clone(&self.inner),
                    name: name.to_owned(),
                };
                return match pool.get().await {
                    Ok(connection) => Ok(TenantConnection {
                        connection,
                        _lease: lease,
                    }),
                    // Evicted between lease and get cannot happen (leased pools are
                    // never evicted); anything else is a real failure.
                    Err(e) => Err(map_pool_error(e, name)),
                };
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(TenantDbError::PoolExhausted(format!(
                    "all {} tenant pools busy for {:?}",
                    self.inner.settings.max_pools, self.inner.settings.timeout
                )));
            }
        }
    }

    /// Closes the pool of `database` if nobody uses it (before dropping the database).
    /// Returns false when connections are still held.
    pub fn evict(&self, database: &TenantDatabaseName) -> bool {
        self.inner.remove(database.as_str())
    }

    /// Closes pools idle longer than the idle timeout; returns how many.
    pub fn evict_idle(&self) -> usize {
        self.inner.evict_idle()
    }

    pub fn stats(&self) -> PoolCacheStats {
        let pools = self.inner.lock();
        PoolCacheStats {
            pools: pools.len(),
            leased_pools: pools.values().filter(|e| e.leases > 0).count(),
            open_connections: pools.values().map(|e| e.pool.status().size).sum(),
            largest_pool: pools
                .values()
                .map(|e| e.pool.status().size)
                .max()
                .unwrap_or(0),
            max_pools: self.inner.settings.max_pools,
            connection_bound: self.inner.settings.connection_bound(),
        }
    }
}

fn map_pool_error(e: deadpool::managed::PoolError<ConnectError>, name: &str) -> TenantDbError {
    use deadpool::managed::PoolError;
    match e {
        PoolError::Timeout(kind) => {
            TenantDbError::PoolExhausted(format!("{name}: {kind:?} timeout"))
        }
        PoolError::Backend(backend) => TenantDbError::Pool(format!("{name}: {backend}")),
        other => TenantDbError::Pool(format!("{name}: {other}")),
    }
}
