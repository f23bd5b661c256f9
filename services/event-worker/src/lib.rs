//! The event-worker service: Kafka consumers over every topic, and the API of what they
//! record: the audit log (every event, `GET /api/tenants/{id}/audit-logs`) and
//! webhooks (`/api/tenants/{id}/webhooks`, deliveries signed as Standard Webhooks).
//! Stored files are re-read, checked and typed (`file.process`); a hard-deleted
//! tenant's objects are deleted (`tenant.deleted`). Tenant creators and members get
//! email notifications over SMTP.
//!
//! Without `KAFKA_BROKERS` (development only) the consumers do not run; the API does.
//! Settings: `settings.rs`.

use std::sync::Arc;

use actix_web::web;
use events::Shutdown;
use http_kit::{Background, CommonSettings, ConfigReader, ReadinessCheck, Running, ServiceInfo};
use tokio::task::JoinHandle;
use utoipa::OpenApi;

pub mod audit;
pub mod dlq;
pub mod files;
pub mod lag;
pub mod notifications;
pub mod retention;
pub mod routes;
mod settings;
pub mod store;
pub mod topics;
pub mod webhooks;

pub use settings::{Settings, DEFAULT_PORT};

pub const INFO: ServiceInfo = ServiceInfo {
    name: "event-worker",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "event-worker",
        description = "Kafka consumers: audit log, webhooks, notifications, file processing"
    ),
    paths(
        routes::audit::list,
        routes::webhooks::list,
        routes::webhooks::create,
        routes::webhooks::delete
    ),
    components(schemas(
        routes::audit::AuditEntry,
        routes::webhooks::NewWebhook,
        routes::webhooks::WebhookBody
    ))
)]
struct ApiDoc;

/// This service's OpenAPI document (the server merges in the common endpoints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    http_kit::openapi::secure(&mut doc, &[]);
    http_kit::openapi::describe(&mut doc, &[]);
    doc
}

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

/// Starts the consumers and the HTTP server. Must be called inside a Tokio runtime.
pub fn start(
    settings: Settings,
    listeners: http_kit::server::Listeners,
) -> anyhow::Result<Running> {
    let common = &settings.common;
    let mut background = Background::new();
    let peers = &settings.peers;
    let db = main_db::service_pool(INFO.name, common)?;
    // The postgres and kafka_topics checks, and the connection-budget warning.
    let database_checks =
        main_db::database_checks(INFO.name, common, &db, &[settings.tenant_db.budget_part()])?;
    let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
    let keyring = Arc::new(secrets::Keyring::parse(settings.secrets_keyring.expose())?);
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
            let tenants = clients::TenantClient::new(
                peers.tenant_url.clone(),
                peers.internal_token.clone(),
                peers.call_timeout,
            )?;
            let consumer = |name: &str, topic: events::Topic| settings.consumer(brokers, name, vec![topic], Some(50));
            tasks.push((
                files::PROCESS_CONSUMER,
                tokio::spawn(events::consumer::run(
                    consumer(files::PROCESS_CONSUMER, events::Topic::FileProcess),
                    files::FileProcessor {
                        storage: storage.clone(),
                        pools: tenant_db::TenantPoolCache::new(settings.tenant_db.clone()),
                        tenants: tenants.clone(),
                    },
                    shutdown.clone(),
                )),
            ));
            tasks.push((
                files::PURGE_CONSUMER,
                tokio::spawn(events::consumer::run(
                    consumer(files::PURGE_CONSUMER, events::Topic::TenantDeleted),
                    files::TenantPurge {
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
                        auth: clients::AuthClient::new(
                            peers.auth_url.clone(),
                            peers.internal_token.clone(),
                            peers.call_timeout,
                        )?,
                        tenants: clients::TenantClient::new(
                            peers.tenant_url.clone(),
                            peers.internal_token.clone(),
                            peers.call_timeout,
                        )?,
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
                files::PURGE_CONSUMER => vec![events::Topic::TenantDeleted],
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
    let tenants = clients::TenantClient::new(
        peers.tenant_url.clone(),
        peers.internal_token.clone(),
        peers.call_timeout,
    )?;
    manage(tasks, shutdown, &mut background);
    let verifier = peers.verifier(common, &redis)?;
    let roles = http_kit::peers::cached_roles(Arc::new(tenants), common, &redis, &mut background);
    let checks = [ReadinessCheck::new(
        "redis",
        cache::probe(redis, common.redis_timeout),
    )];
    let db = web::Data::new(db);
    let allow = web::Data::new(routes::webhooks::AllowPrivateTargets(
        settings.webhooks.allow_private_targets,
    ));
    let sealer = web::Data::new(routes::webhooks::SecretSealer(keyring.clone()));
    let verifier = web::Data::new(verifier);
    let roles = web::Data::from(roles);
    let server = http_kit::server::start_service(
        INFO,
        common,
        database_checks.into_iter().chain(checks),
        openapi(),
        listeners,
        move |cfg| {
            cfg.app_data(db.clone())
                .app_data(allow.clone())
                .app_data(sealer.clone())
                .app_data(verifier.clone())
                .app_data(roles.clone());
            routes::configure(cfg);
        },
    )?;
    Ok(Running { server, background })
}

/// The service as its binary and the tests run it.
pub struct Service;

impl http_kit::cli::Service for Service {
    const INFO: ServiceInfo = INFO;
    type Settings = Settings;

    fn read_settings(reader: &mut ConfigReader<'_>) -> Settings {
        Settings::read(reader)
    }

    fn common(settings: &Settings) -> &CommonSettings {
        &settings.common
    }

    fn start(
        settings: Settings,
        listeners: http_kit::server::Listeners,
    ) -> anyhow::Result<Running> {
        start(settings, listeners)
    }
}
