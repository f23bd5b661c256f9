//! The relay running inside a producing service. Handlers call [`RelayHandle::nudge`]
//! after a commit that wrote outbox rows, and the relay publishes them within
//! milliseconds; a sweep of every database the service writes events to runs at start
//! (leftovers of a crash or of a Kafka outage) and then periodically (rows another
//! replica committed and could not publish). A database whose publication failed is
//! retried with exponential backoff; its rows wait in the outbox meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::DerefMut;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Relay;

/// A database holding an outbox.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutboxDb {
    /// The main database.
    Main,
    /// A tenant database, by name.
    Tenant(String),
}

impl fmt::Display for OutboxDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxDb::Main => f.write_str("main"),
            OutboxDb::Tenant(name) => f.write_str(name),
        }
    }
}

/// A connection to one outbox database, however the service pools it.
pub type OutboxConnection<'a> = Box<dyn DerefMut<Target = AsyncPgConnection> + Send + 'a>;

/// The databases a service writes events to, and how to reach them.
pub trait OutboxDatabases: Send + Sync + 'static {
    /// Every database whose outbox may hold this service's events (for sweeps).
    fn all(&self) -> BoxFuture<'_, anyhow::Result<Vec<OutboxDb>>>;
    /// A connection to `db`.
    fn connect<'a>(
        &'a self,
        db: &'a OutboxDb,
    ) -> BoxFuture<'a, anyhow::Result<OutboxConnection<'a>>>;
}

/// When the relay sweeps and how it backs off.
#[derive(Debug, Clone, Copy)]
pub struct RelaySchedule {
    /// A full sweep runs at start and then this often.
    pub sweep_every: Duration,
    /// First retry delay of a database whose publication failed; doubled on each
    /// failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RelaySchedule {
    fn default() -> Self {
        Self {
            sweep_every: Duration::from_secs(30),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }
}

struct Shared {
    dirty: Mutex<BTreeSet<OutboxDb>>,
    wake: Notify,
}

/// Tells the relay that a database has new outbox rows. Cheap to clone; a disabled
/// handle (no Kafka configured) does nothing and the rows wait in the outbox.
#[derive(Clone)]
pub struct RelayHandle {
    shared: Option<Arc<Shared>>,
}

impl RelayHandle {
    /// A handle for a service running without Kafka.
    pub fn disabled() -> Self {
        Self { shared: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Call after committing a transaction that enqueued events into `db`.
    pub fn nudge(&self, db: OutboxDb) {
        if let Some(shared) = &self.shared {
            shared
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(db);
            shared.wake.notify_one();
        }
    }
}

/// Starts the relay loop on the current Tokio runtime; it runs until `stop` is
/// cancelled, then publishes what it was nudged about since its last pass and returns
/// (the returned task ends then). A transaction interrupted by the end of the process
/// rolls back, and rows it could not publish wait for the next sweep (this replica's
/// next start, or another replica's).
pub fn spawn_relay(
    relay: Relay,
    databases: Arc<dyn OutboxDatabases>,
    schedule: RelaySchedule,
    stop: CancellationToken,
) -> (RelayHandle, JoinHandle<()>) {
    let shared = Arc::new(Shared {
        dirty: Mutex::new(BTreeSet::new()),
        wake: Notify::new(),
    });
    let handle = RelayHandle {
        shared: Some(shared.clone()),
    };
    let task = tokio::spawn(run(relay, databases, schedule, shared, stop));
    (handle, task)
}

async fn run(
    relay: Relay,
    databases: Arc<dyn OutboxDatabases>,
    schedule: RelaySchedule,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut next_sweep = Instant::now();
    // Databases whose last publication failed: when to retry, and the delay used.
    let mut retry: BTreeMap<OutboxDb, (Instant, Duration)> = BTreeMap::new();
    // What each database's outbox held after its last publication (metrics). One
    // that held rows is looked at again every BACKLOG_REFRESH until it is empty: another
    // replica (or service sharing the main outbox) may have published them.
    let mut backlogs: BTreeMap<OutboxDb, crate::relay::Backlog> = BTreeMap::new();
    let mut next_refresh = Instant::now();
    loop {
        let next_retry = retry.values().map(|(at, _)| *at).min();
        let mut wake_at = next_retry.map_or(next_sweep, |r| r.min(next_sweep));
        if backlogs.values().any(|(rows, _)| *rows > 0) {
            wake_at = wake_at.min(next_refresh);
        }
        let stopping = tokio::select! {
            () = shared.wake.notified() => false,
            () = tokio::time::sleep_until(wake_at) => false,
            () = stop.cancelled() => true,
        };
        let now = Instant::now();
        let mut targets: BTreeSet<OutboxDb> = std::mem::take(
            &mut *shared
                .dirty
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if stopping {
            // The last pass: what committed requests nudged about, nothing else.
            for db in targets {
                if let (Err(e), _) = publish(&relay, databases.as_ref(), &db).await {
                    tracing::warn!(
                        database = %db,
                        error = format!("{e:#}"),
                        "outbox not published before stopping; the next sweep publishes it"
                    );
                }
            }
            tracing::debug!("outbox relay stopped");
            return;
        }
        if now >= next_sweep {
            match databases.all().await {
                Ok(all) => {
                    // A database no longer listed (a purged tenant's) holds nothing.
                    backlogs.retain(|db, _| all.contains(db));
                    targets.extend(all);
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "outbox sweep could not list databases"
                ),
            }
            next_sweep = now + schedule.sweep_every;
        }
        // A database in backoff waits for its time, even when nudged again.
        for (db, (at, _)) in &retry {
            if *at <= now {
                targets.insert(db.clone());
            } else {
                targets.remove(db);
            }
        }
        for db in targets {
            let (published, backlog) = publish(&relay, databases.as_ref(), &db).await;
            if let Some(backlog) = backlog {
                backlogs.insert(db.clone(), backlog);
            }
            match published {
                Ok(published) => {
                    if retry.remove(&db).is_some() {
                        tracing::info!(database = %db, published, "outbox relay recovered");
                    } else if published > 0 {
                        tracing::debug!(database = %db, published, "outbox published");
                    }
                }
                Err(e) => {
                    let backoff = retry.get(&db).map_or(schedule.min_backoff, |(_, last)| {
                        (*last * 2).min(schedule.max_backoff)
                    });
                    tracing::warn!(
                        database = %db,
                        retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                        error = format!("{e:#}"),
                        "outbox relay failed; the events wait in the outbox"
                    );
                    retry.insert(db, (Instant::now() + backoff, backoff));
                }
            }
        }
        if now >= next_refresh {
            let waiting: Vec<OutboxDb> = backlogs
                .iter()
                .filter(|(db, (rows, _))| *rows > 0 && !retry.contains_key(*db))
                .map(|(db, _)| db.clone())
                .collect();
            for db in waiting {
                let backlog = match databases.connect(&db).await {
                    Ok(mut conn) => relay.backlog(&mut conn).await.ok(),
                    Err(_) => None,
                };
                if let Some(backlog) = backlog {
                    backlogs.insert(db, backlog);
                }
            }
            next_refresh = now + BACKLOG_REFRESH;
        }
        record_backlog(relay.service(), &backlogs);
    }
}

/// How often an outbox last seen holding rows is looked at again (metrics only).
const BACKLOG_REFRESH: Duration = Duration::from_secs(2);

/// Sets the outbox gauges of `service` from what its databases held.
fn record_backlog(service: &str, backlogs: &BTreeMap<OutboxDb, crate::relay::Backlog>) {
    let rows: i64 = backlogs.values().map(|(n, _)| n).sum();
    let oldest = backlogs.values().filter_map(|(_, at)| *at).min();
    let age = oldest.map_or(0, |at| (chrono::Utc::now() - at).num_seconds().max(0));
    crate::metrics::OUTBOX_BACKLOG
        .with_label_values(&[service])
        .set(rows);
    crate::metrics::OUTBOX_OLDEST_AGE
        .with_label_values(&[service])
        .set(age);
}

/// Publishes what `db`'s outbox holds; then reads what is left (unknown when the
/// database cannot be reached).
async fn publish(
    relay: &Relay,
    databases: &dyn OutboxDatabases,
    db: &OutboxDb,
) -> (anyhow::Result<usize>, Option<crate::relay::Backlog>) {
    let mut conn = match databases.connect(db).await {
        Ok(conn) => conn,
        Err(e) => return (Err(e), None),
    };
    let published = relay.publish_pending(&mut conn).await.map_err(Into::into);
    let backlog = relay.backlog(&mut conn).await.ok();
    (published, backlog)
}

/// Starts the relay of a service, or returns a disabled handle (with a warning) when
/// no broker is configured.
pub fn start_relay(
    connection: Option<crate::Connection>,
    client_id: &str,
    message_timeout: Duration,
    sweep_every: Duration,
    databases: Arc<dyn OutboxDatabases>,
    stop: CancellationToken,
) -> Result<(RelayHandle, Option<JoinHandle<()>>), crate::RelayError> {
    let Some(connection) = connection else {
        tracing::warn!("KAFKA_BROKERS is not set: events are kept in the outbox, not published");
        return Ok((RelayHandle::disabled(), None));
    };
    let relay = Relay::new(&crate::KafkaSettings {
        connection,
        client_id: client_id.to_owned(),
        message_timeout,
    })?;
    let (handle, task) = spawn_relay(
        relay,
        databases,
        RelaySchedule {
            sweep_every,
            ..RelaySchedule::default()
        },
        stop,
    );
    Ok((handle, Some(task)))
}
