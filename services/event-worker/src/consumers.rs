//! The consumers and loops the event-worker runs beside its API, each a managed
//! background task (`http_kit::lifecycle`): stopping the service triggers their
//! `Shutdown`, and a consumer finishes its batch and commits before it returns.
//!
//! Without `KAFKA_BROKERS` (development only) no consumer runs; the webhook dispatcher
//! and the retention loop do. Without `S3_ENDPOINT_URL` files are not processed nor
//! purged; without `SMTP_URL` no notification is sent.

use std::sync::Arc;

use events::Shutdown;
use http_kit::Background;
use main_db::DbPool;
use tokio::task::JoinHandle;

use crate::{audit, files, lag, notifications, purge, retention, webhooks, Settings};

/// A consumer's (or another loop's) task, its error logged when it ends.
type Task = JoinHandle<Result<(), events::consumer::ConsumerError>>;

/// Hands the tasks to `background`: cancelling its token triggers `shutdown`, which
/// every consumer and loop watches (a consumer finishes its batch and commits first).
fn manage(tasks: Vec<(&'static str, Task)>, shutdown: Shutdown, background: &mut Background) {
    let stop = background.token();
    background.spawn("shutdown-signal", async move {
        stop.cancelled().await;
        shutdown.trigger();
    });
    for (name, task) in tasks {
        background.spawn(name, async move {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(consumer = name, error = %e, "consumer failed"),
                Err(e) => tracing::error!(consumer = name, error = %e, "consumer task panicked"),
            }
        });
    }
}

/// Spawns every consumer and loop `settings` enable, handed to `background`.
pub fn start(
    settings: &Settings,
    db: &DbPool,
    keyring: &Arc<secrets::Keyring>,
    background: &mut Background,
) -> anyhow::Result<()> {
    let common = &settings.common;
    let peers = &settings.peers;
    let shutdown = Shutdown::new();
    let mut tasks = Vec::new();
    let kafka = common.kafka().map(events::Connection::from);
    match &kafka {
        Some(brokers) => {
            let consumer =
                settings.consumer(brokers, audit::CONSUMER, audit::AuditLog::topics(), None);
            tasks.push((
                audit::CONSUMER,
                tokio::spawn(events::consumer::run(
                    consumer,
                    audit::AuditLog::new(db.clone()),
                    shutdown.clone(),
                )),
            ));
        }
        None => tracing::warn!("KAFKA_BROKERS is not set: no events are consumed"),
    }
    // Deliveries are made whether or not events are being consumed (earlier ones may
    // be due).
    let wake = Arc::new(tokio::sync::Notify::new());
    if let Some(brokers) = &kafka {
        let consumer = settings.consumer(
            brokers,
            webhooks::CONSUMER,
            events::Topic::ALL.to_vec(),
            None,
        );
        tasks.push((
            webhooks::CONSUMER,
            tokio::spawn(events::consumer::run(
                consumer,
                webhooks::Webhooks::new(db.clone(), wake.clone()),
                shutdown.clone(),
            )),
        ));
    }
    match (&kafka, &settings.storage) {
        (Some(brokers), Some(storage_settings)) => {
            let storage = storage::Storage::new(storage_settings.clone())?;
            let tenants = clients::TenantClient::from_peers(peers)?;
            let consumer = |name: &str, topic: events::Topic| settings.consumer(brokers, name, vec![topic], Some(50));
            tasks.push((
                files::PROCESS_CONSUMER,
                tokio::spawn(events::consumer::run(
                    consumer(files::PROCESS_CONSUMER, events::Topic::FileProcess),
                    files::FileProcessor {
                        storage: storage.clone(),
                        pools: tenant_db::TenantPoolCache::new(settings.tenant_db.clone()),
                        servers: std::sync::Arc::new(tenant_db::ServerUrls::new(&settings.tenant_db)),
                        tenants: tenants.clone(),
                    },
                    shutdown.clone(),
                )),
            ));
            tasks.push((
                purge::PURGE_CONSUMER,
                tokio::spawn(events::consumer::run(
                    consumer(purge::PURGE_CONSUMER, events::Topic::TenantDeleted),
                    purge::TenantPurge {
                        storage,
                        tenants,
                        db: db.clone(),
                    },
                    shutdown.clone(),
                )),
            ));
        }
        (Some(_), None) => tracing::warn!(
            "S3_ENDPOINT_URL is not set: stored files are not processed and deleted tenants' objects stay"
        ),
        (None, _) => {}
    }
    match (&kafka, &settings.smtp) {
        (Some(brokers), Some(smtp)) => {
            let wake = Arc::new(tokio::sync::Notify::new());
            let consumer = settings.consumer(
                brokers,
                notifications::CONSUMER,
                notifications::topics(),
                Some(50),
            );
            tasks.push((
                notifications::CONSUMER,
                tokio::spawn(events::consumer::run(
                    consumer,
                    notifications::Notifications {
                        db: db.clone(),
                        auth: clients::AuthClient::from_peers(peers)?,
                        tenants: clients::TenantClient::from_peers(peers)?,
                        wake: wake.clone(),
                    },
                    shutdown.clone(),
                )),
            ));
            tasks.push((
                "notification-sender",
                tokio::spawn({
                    let (db, smtp, shutdown) = (db.clone(), smtp.clone(), shutdown.clone());
                    let keyring = keyring.clone();
                    async move {
                        notifications::send_loop(db, smtp, keyring, wake, shutdown).await;
                        Ok(())
                    }
                }),
            ));
        }
        (Some(_), None) => {
            tracing::warn!("SMTP_URL is not set: no email notifications are sent");
        }
        (None, _) => {}
    }
    if let Some(connection) = &kafka {
        // The groups of the consumers started above, for the lag metrics.
        let mut groups = Vec::new();
        for (name, _) in &tasks {
            let topics = match *name {
                audit::CONSUMER | webhooks::CONSUMER => events::Topic::ALL.to_vec(),
                files::PROCESS_CONSUMER => vec![events::Topic::FileProcess],
                purge::PURGE_CONSUMER => vec![events::Topic::TenantDeleted],
                notifications::CONSUMER => notifications::topics(),
                _ => continue,
            };
            let id = format!("{}.{name}", settings.consumer_group_prefix);
            groups.push(lag::Group::new(connection, id, topics)?);
        }
        let (every, timeout) = (settings.consumer_lag_every, common.kafka_timeout);
        let shutdown = shutdown.clone();
        tasks.push((
            "consumer-lag",
            tokio::spawn(async move {
                lag::run(groups, every, timeout, shutdown).await;
                Ok(())
            }),
        ));
    }
    tasks.push((
        "retention",
        tokio::spawn({
            let (db, shutdown) = (db.clone(), shutdown.clone());
            let retention = settings.processed_events_retention;
            async move {
                retention::run(db, retention, shutdown).await;
                Ok(())
            }
        }),
    ));
    tasks.push((
        "webhook-dispatcher",
        tokio::spawn({
            let (db, hooks, keyring, wake, shutdown) = (
                db.clone(),
                settings.webhooks.clone(),
                keyring.clone(),
                wake.clone(),
                shutdown.clone(),
            );
            async move {
                webhooks::dispatch(db, hooks, keyring, wake, shutdown).await;
                Ok(())
            }
        }),
    ));
    manage(tasks, shutdown, background);
    Ok(())
}
