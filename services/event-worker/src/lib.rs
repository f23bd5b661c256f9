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
use http_kit::{Background, ReadinessCheck, Running, ServiceInfo};
use utoipa::OpenApi;

pub mod app;
pub mod audit;
pub mod commands;
pub mod consumers;
pub mod dlq;
pub mod files;
pub mod lag;
pub mod notifications;
pub mod purge;
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
    consumers::start(&settings, &db, &keyring, &mut background)?;
    let tenants = clients::TenantClient::from_peers(peers)?;
    let verifier = peers.verifier(common, &redis)?;
    let roles = http_kit::peers::cached_roles(Arc::new(tenants), common, &redis, &mut background);
    let checks = [ReadinessCheck::new(
        "redis",
        cache::probe(redis, common.redis_timeout),
    )];
    let app = web::Data::new(app::App {
        db,
        allow_private_targets: settings.webhooks.allow_private_targets,
        keyring,
    });
    let verifier = web::Data::new(verifier);
    let roles = web::Data::from(roles);
    let server = http_kit::server::start_service(
        INFO,
        common,
        database_checks.into_iter().chain(checks),
        openapi(),
        listeners,
        move |cfg| {
            cfg.app_data(app.clone())
                .app_data(verifier.clone())
                .app_data(roles.clone());
            routes::configure(cfg);
        },
    )?;
    Ok(Running { server, background })
}

http_kit::service!(INFO, Settings, start);
