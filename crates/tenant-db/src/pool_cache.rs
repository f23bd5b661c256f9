//! A bounded cache of per-tenant connection pools.
//!
//! Bound: never more than `max_pools × connections_per_pool` tenant connections (the
//! budget), however many tenants exist. The budget is shared, not split: every open
//! connection holds one of its permits, and one busy tenant's pool may grow to `burst`
//! connections (half the budget by default) while others are quiet, so a hot tenant is
//! not held to its average share. When the budget is spent, a pool that needs a
//! connection takes it from others by leveling, never in turn: it closes an idle
//! connection of a quiet pool (unused for `quiet_after`, 1 s), or of a pool with at least two connections
//! more than its own; otherwise it waits (up to the timeout), and meanwhile a pool at
//! least two connections richer closes its next idle connection for it and hands it
//! the permit (`Budgeted::recycle`). Busy tenants thus settle at even shares instead
//! of reconnecting for each other (a first version that took any idle connection
//! opened one connection per 13 requests under four busy tenants).
//!
//! Pools: normally at most `max_pools` (the least recently used idle one is closed for
//! a new tenant); when every pool is in use, more are made, up to one per permit, so
//! tenants that keep every pool busy cannot lock the others out. A pool is evicted only
//! when nobody holds or is acquiring one of its connections (its lease count is zero);
//! pools unused for `idle_timeout` are closed by a background sweep.
//! docs/DESIGN-NOTES.md ("Connection budget").

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use deadpool::managed::{Manager, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use deadpool::Runtime;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as ConnectError, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use domain::TenantDatabaseName;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::{TenantDbError, TenantDbSettings};

type TenantPool = Pool<Budgeted>;

tokio::task_local! {
    /// Set while a background job (the outbox sweep) asks for a connection.
    static BACKGROUND: ();
}

/// Whether the connection asked for is a background job's: it takes a free permit or
/// one of a quiet pool, never one by leveling from busy tenants, and its waiting makes
/// no pool yield one.
fn in_background() -> bool {
    BACKGROUND.try_with(|()| ()).is_ok()
}

/// A tenant connection and the budget permit it holds while it is open.
pub(crate) struct BudgetedConnection {
    connection: AsyncPgConnection,
    /// Taken out when the connection is closed for another pool, which gets it.
    permit: Option<OwnedSemaphorePermit>,
}

/// Why a pool could not open a connection.
#[derive(Debug)]
pub(crate) enum BudgetError {
    /// Every permit is held by a connection that may not be closed for this pool:
    /// `TenantPoolCache::get` waits for one and asks again.
    Spent,
    /// The cache is gone.
    Closed,
    Connect(ConnectError),
}

impl std::fmt::Display for BudgetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Spent => f.write_str("the tenant connection budget is spent"),
            Self::Closed => f.write_str("the tenant pool cache was closed"),
            Self::Connect(e) => e.fmt(f),
        }
    }
}

/// Creates a pool's connections within the cache's budget. It never waits for a
/// permit: waiting inside `create` would hold the request there while its own
/// pool's connections come back idle.
pub(crate) struct Budgeted {
    connect: AsyncDieselConnectionManager<AsyncPgConnection>,
    /// The pool's database, so shedding spares this pool.
    name: String,
    cache: Weak<Inner>,
    /// A permit a waiting request of this pool was handed, for its next connection.
    handed: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Budgeted {
    fn handed(&self) -> MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.handed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Manager for Budgeted {
    type Type = BudgetedConnection;
    type Error = BudgetError;

    async fn create(&self) -> Result<BudgetedConnection, BudgetError> {
        let handed = self.handed().take();
        let permit = match handed {
            Some(permit) => permit,
            None => {
                let cache = self.cache.upgrade().ok_or(BudgetError::Closed)?;
                cache.take_permit(&self.name).ok_or(BudgetError::Spent)?
            }
        };
        let connection = self.connect.create().await.map_err(BudgetError::Connect)?;
        Ok(BudgetedConnection {
            connection,
            permit: Some(permit),
        })
    }

    async fn recycle(
        &self,
        obj: &mut BudgetedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<BudgetError> {
        // A request of another pool waits with at least two connections fewer than
        // this pool: this idle connection is closed, and its permit handed to that
        // pool (not released, or this pool could take it straight back).
        if let Some(cache) = self.cache.upgrade() {
            if cache.starving.load(Ordering::Relaxed) > 0 {
                if let Some(neediest) = cache.yield_to(&self.name) {
                    if let Some(permit) = obj.permit.take() {
                        *neediest.manager().handed() = Some(permit);
                        cache.returned.notify_waiters();
                    }
                    return Err(RecycleError::message("closed for a pool below its share"));
                }
            }
        }
        self.connect
            .recycle(&mut obj.connection, metrics)
            .await
            .map_err(|e| match e {
                RecycleError::Message(m) => RecycleError::Message(m),
                RecycleError::Backend(e) => RecycleError::Backend(BudgetError::Connect(e)),
            })
    }
}

struct Entry {
    pool: TenantPool,
    /// Connections held plus acquisitions in progress.
    leases: usize,
    /// Requests waiting for the budget.
    waiting: usize,
    last_used: Instant,
}

struct Inner {
    settings: TenantDbSettings,
    /// Pools by key: the database name on the main server, `name@server` elsewhere.
    pools: Mutex<HashMap<String, Entry>>,
    /// Databases on another server than `settings`' (`TenantPoolCache::place`).
    placed: Mutex<HashMap<String, Placed>>,
    /// One permit per tenant connection the budget allows.
    budget: Arc<Semaphore>,
    /// Signalled whenever a connection goes back to its pool.
    returned: Notify,
    /// Connections opened since the cache was made (churn shows here).
    opened: AtomicUsize,
    /// Requests waiting for the budget, over all pools.
    starving: AtomicUsize,
    /// Signalled whenever a pool's lease count drops to zero.
    released: Notify,
}

/// Where a database on another server than the cache's own is.
struct Placed {
    server: uuid::Uuid,
    /// Its URL for request traffic.
    url: String,
}

impl Inner {
    /// The pool key and URL of database `name`.
    fn key_for(&self, name: &str) -> (String, String) {
        let placed = self.placed.lock().unwrap_or_else(|p| p.into_inner());
        match placed.get(name) {
            Some(p) => (
                format!("{name}@{}", p.server),
                crate::settings::with_database(&p.url, name),
            ),
            None => (name.to_owned(), self.settings.url_for(name)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock leaves counts that are still consistent
        // (every change is a single statement), so a poisoned lock is safe to reuse.
        self.pools
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn build_pool(self: &Arc<Self>, name: &str, url: String) -> Result<TenantPool, TenantDbError> {
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager = Budgeted {
            connect: AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
                url, config,
            ),
            name: name.to_owned(),
            cache: Arc::downgrade(self),
            handed: Mutex::new(None),
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
    fn lease(self: &Arc<Self>, name: &str, url: &str) -> Result<Option<TenantPool>, TenantDbError> {
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
                // Every pool is in use. A pool holds no connection of its own (the
                // budget bounds those), so up to one pool per permit may exist: busy
                // tenants holding every pool must not lock the others out.
                None if pools.len() < self.settings.connection_bound() => {}
                None => return Ok(None),
            }
        }
        let pool = self.build_pool(name, url.to_owned())?;
        pools.insert(
            name.to_owned(),
            Entry {
                pool: pool.clone(),
                leases: 1,
                waiting: 0,
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

    /// A permit for a new connection of `name`'s pool: a free one, or one freed by
    /// closing an idle connection of another pool ([`Inner::shed_idle_connection`]).
    fn take_permit(&self, name: &str) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.budget)
            .try_acquire_owned()
            .ok()
            .or_else(|| {
                self.shed_idle_connection(name)
                    .then(|| Arc::clone(&self.budget).try_acquire_owned().ok())
                    .flatten()
            })?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        Some(permit)
    }

    /// Closes one idle connection of another pool for `name`'s, which returns its
    /// permit to the budget: of a pool nobody is using (least recently used first),
    /// else of a pool with at least two connections more than `name`'s (the largest
    /// first). Busy tenants thereby level out instead of taking connections from each
    /// other in turn, each paying a new connection every time. False when there is
    /// none to close.
    fn shed_idle_connection(&self, name: &str) -> bool {
        let shed = {
            let pools = self.lock();
            let mine = pools.get(name).map_or(0, |e| e.pool.status().size);
            let mut others: Vec<_> = pools
                .iter()
                .filter(|(n, _)| n.as_str() != name)
                .map(|(_, e)| (e, e.pool.status().size))
                .filter(|(e, size)| self.quiet(e) || (*size > mine + 1 && !in_background()))
                .collect();
            // Quiet pools first, the least recently used of them; then the largest.
            others.sort_by_key(|(e, size)| (!self.quiet(e), std::cmp::Reverse(*size), e.last_used));
            others.into_iter().find_map(|(entry, _)| {
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

    /// Whether nobody has used the pool for `quiet_after`: a busy tenant's pool is
    /// between requests many times a second, and taking its idle connections then
    /// only makes it open new ones.
    fn quiet(&self, entry: &Entry) -> bool {
        entry.leases == 0 && entry.last_used.elapsed() >= self.settings.quiet_after
    }

    /// The pool with a request waiting for the budget and at least two connections
    /// fewer than `name`'s (the one with fewest), if any, that holds no handed permit.
    fn yield_to(&self, name: &str) -> Option<TenantPool> {
        let pools = self.lock();
        let mine = pools.get(name)?.pool.status().size;
        pools
            .iter()
            .filter(|(n, e)| e.waiting > 0 && n.as_str() != name)
            .map(|(_, e)| (e.pool.status().size, &e.pool))
            .filter(|(size, pool)| mine > size + 1 && pool.manager().handed().is_none())
            .min_by_key(|(size, _)| *size)
            .map(|(_, pool)| pool.clone())
    }

    /// Counts a request of `name`'s pool in (`waiting`) or out of the budget's waiters.
    fn mark_waiting(&self, name: &str, waiting: bool) {
        let mut pools = self.lock();
        if let Some(entry) = pools.get_mut(name) {
            if waiting {
                entry.waiting += 1;
                self.starving.fetch_add(1, Ordering::Relaxed);
            } else if entry.waiting > 0 {
                entry.waiting -= 1;
                self.starving.fetch_sub(1, Ordering::Relaxed);
            }
        }
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

/// A request counted as waiting for the budget while it lives.
struct Waiting<'a> {
    inner: &'a Inner,
    name: &'a str,
}

impl<'a> Waiting<'a> {
    fn new(inner: &'a Inner, name: &'a str) -> Self {
        inner.mark_waiting(name, true);
        Self { inner, name }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.inner.mark_waiting(self.name, false);
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
    /// Connections opened since the cache was made.
    pub opened: usize,
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
            opened: AtomicUsize::new(0),
            starving: AtomicUsize::new(0),
            settings,
            pools: Mutex::new(HashMap::new()),
            placed: Mutex::new(HashMap::new()),
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
        let (key, url) = self.inner.key_for(database.as_str());
        let name = key.as_str();
        let deadline = tokio::time::Instant::now() + self.inner.settings.timeout;
        loop {
            // Register interest before looking, so a release in between is not missed.
            let released = self.inner.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(pool) = self.inner.lease(name, &url)? {
                let lease = Lease {
                    inner: Arc::clone(&self.inner),
                    name: name.to_owned(),
                };
                return self.connect(&pool, lease, deadline).await;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(TenantDbError::PoolExhausted(format!(
                    "all {} tenant pools busy for {:?}",
                    self.inner
                        .settings
                        .connection_bound()
                        .max(self.inner.settings.max_pools),
                    self.inner.settings.timeout
                )));
            }
        }
    }

    /// A connection to `database` for a background job (the outbox sweep): as `get`,
    /// but it takes no connection from a busy tenant (only a free permit or one of a
    /// quiet pool), so a sweep through every tenant database does not make busy pools
    /// reconnect.
    pub async fn get_background(
        &self,
        database: &TenantDatabaseName,
    ) -> Result<TenantConnection, TenantDbError> {
        BACKGROUND.scope((), self.get(database)).await
    }

    /// A connection of the leased `pool`: an idle one, a new one within the budget, or,
    /// when the budget is spent, the first one returned or closed, up to `deadline`.
    async fn connect(
        &self,
        pool: &TenantPool,
        lease: Lease,
        deadline: tokio::time::Instant,
    ) -> Result<TenantConnection, TenantDbError> {
        loop {
            // Register before asking, so a connection returned in between is seen.
            let returned = self.inner.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            match pool.get().await {
                Ok(connection) => {
                    // A permit handed to this pool and not used here stays for its
                    // next connection (or goes back when the pool is closed).
                    return Ok(TenantConnection {
                        connection,
                        _lease: lease,
                    });
                }
                Err(PoolError::Backend(BudgetError::Spent)) => {
                    // Counted as waiting, richer pools close a connection for this one
                    // when they next take one (`Budgeted::recycle`).
                    let _waiting =
                        (!in_background()).then(|| Waiting::new(&self.inner, &lease.name));
                    let budget = Arc::clone(&self.inner.budget);
                    // Woken by a free permit or a returned connection, and at the latest
                    // once `quiet_after` has passed: pools that were busy a moment ago
                    // may have gone quiet by then without anything being returned or
                    // freed, and their idle connections can be shed for this request
                    // (the next `pool.get()`). Without it, the last waiters of a burst
                    // slept until the idle sweep.
                    let quiet_after = self.inner.settings.quiet_after;
                    let freed = async {
                        tokio::select! {
                            permit = budget.acquire_owned() => {
                                if let Ok(permit) = permit {
                                    *pool.manager().handed() = Some(permit);
                                }
                            }
                            () = returned => {}
                            () = tokio::time::sleep(quiet_after) => {}
                        }
                    };
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(TenantDbError::PoolExhausted(format!(
                            "{}: the budget of {} tenant connections stayed in use for {:?}",
                            lease.name,
                            self.inner.settings.connection_bound(),
                            self.inner.settings.timeout
                        )));
                    }
                }
                // Evicted between lease and get cannot happen (leased pools are never
                // evicted); anything else is a real failure.
                Err(e) => return Err(map_pool_error(e, &lease.name)),
            }
        }
    }

    /// Closes the pools of `database` (on every server it was placed on) that nobody
    /// uses (before dropping the database). Returns false when connections are still
    /// held.
    pub fn evict(&self, database: &TenantDatabaseName) -> bool {
        let name = database.as_str();
        let on_servers = format!("{name}@");
        let keys: Vec<String> = self
            .inner
            .lock()
            .keys()
            .filter(|k| k.as_str() == name || k.starts_with(&on_servers))
            .cloned()
            .collect();
        // Every pool is tried (no short cut): those not in use close even when one is.
        let closed: Vec<bool> = keys.iter().map(|key| self.inner.remove(key)).collect();
        closed.into_iter().all(|c| c)
    }

    /// Records that `database` is on `server`, whose request-traffic URL (any
    /// database) is `server_url`; the main server ([`crate::MAIN_SERVER_ID`]) is the
    /// cache's own. Connections asked for afterwards go there; a pool to where the
    /// database was before is no longer used and closes when idle.
    pub fn place(&self, database: &TenantDatabaseName, server: uuid::Uuid, server_url: &str) {
        let mut placed = self.inner.placed.lock().unwrap_or_else(|p| p.into_inner());
        if server == crate::MAIN_SERVER_ID {
            placed.remove(database.as_str());
        } else {
            placed.insert(
                database.as_str().to_owned(),
                Placed {
                    server,
                    url: server_url.to_owned(),
                },
            );
        }
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
            opened: self.inner.opened.load(Ordering::Relaxed),
            max_pools: self.inner.settings.max_pools,
            connection_bound: self.inner.settings.connection_bound(),
        }
    }
}

fn map_pool_error(e: PoolError<BudgetError>, name: &str) -> TenantDbError {
    match e {
        PoolError::Timeout(kind) => {
            TenantDbError::PoolExhausted(format!("{name}: {kind:?} timeout"))
        }
        PoolError::Backend(backend) => TenantDbError::Pool(format!("{name}: {backend}")),
        other => TenantDbError::Pool(format!("{name}: {other}")),
    }
}
