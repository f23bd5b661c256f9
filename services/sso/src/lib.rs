//! The sso service: per-tenant Microsoft Entra ID single sign-on. Tenant admins
//! configure their directory (`/api/tenants/{id}/sso/…`); users sign in with the
//! authorization-code flow and PKCE (`/api/auth/sso/azure/login/{id}` → Entra ID →
//! `/api/auth/sso/azure/callback`), are provisioned on first sign-in when the tenant
//! allows it, and get platform tokens from auth. Azure tokens and client secrets are
//! stored encrypted (`secrets`). Settings: `settings.rs`.

use std::sync::Arc;

use actix_web::web;
use http_kit::{Background, ReadinessCheck, Running, ServiceInfo};
use utoipa::OpenApi;

pub mod app;
pub mod azure;
pub mod configuration;
pub mod graph;
pub mod login;
pub mod provisioning;
pub mod refresh;
pub mod routes;
mod settings;
pub mod store;

pub use settings::{origin_of, Settings, VaultSettings, DEFAULT_PORT, DEVELOPMENT_KEYRING};

pub const INFO: ServiceInfo = ServiceInfo {
    name: "sso",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sso",
        description = "Per-tenant Microsoft Entra ID single sign-on"
    ),
    paths(
        routes::flow::login,
        routes::flow::link,
        routes::flow::callback,
        routes::session::refresh,
        routes::session::logout,
        routes::discovery::detect,
        routes::discovery::check_availability,
        routes::identities::list,
        routes::identities::mine,
        routes::identities::unlink,
        routes::config::get,
        routes::config::create,
        routes::config::update,
        routes::config::delete,
        routes::config::enable,
        routes::config::disable,
        routes::config::validate,
        routes::config::auto_provisioning,
        routes::config::statistics
    ),
    components(schemas(
        routes::config::NewSsoConfig,
        routes::config::SsoConfigUpdate,
        routes::config::EnableRequest,
        routes::config::DisableRequest,
        routes::config::ProvisioningRequest,
        routes::config::SsoConfigBody,
        routes::discovery::DetectRequest,
        routes::session::RefreshRequest,
        routes::session::LogoutRequest
    ))
)]
struct ApiDoc;

/// This service's OpenAPI document (the server merges in the common endpoints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    http_kit::openapi::secure(
        &mut doc,
        &[
            ("get", "/api/auth/sso/azure/login/{tenant_id}"),
            ("get", "/api/auth/sso/azure/callback"),
            ("post", "/api/auth/sso/detect"),
            ("get", "/api/auth/sso/check-availability/{tenant_id}"),
        ],
    );
    // The Flask original's shapes, kept for its clients (docs/API.md).
    http_kit::openapi::describe(
        &mut doc,
        &[
            ("get", "/api/auth/sso/azure/callback"),
            ("post", "/api/auth/sso/azure/logout/{tenant_id}"),
            ("post", "/api/auth/sso/azure/refresh"),
            ("post", "/api/auth/sso/detect"),
            ("get", "/api/auth/sso/check-availability/{tenant_id}"),
            ("get", "/api/auth/sso/identities"),
        ],
    );
    doc
}

/// The cipher of stored secrets: Vault transit when configured (the local keyring still
/// decrypts what it sealed before), else the local keyring.
fn cipher(settings: &Settings) -> anyhow::Result<secrets::Cipher> {
    let keyring = secrets::Keyring::parse(settings.keyring.expose())?;
    match &settings.vault {
        Some(vault) => {
            let mut v = secrets::VaultSettings::new(
                url::Url::parse(&vault.addr)?,
                vault.role_id.expose().clone(),
                vault.secret_id.expose().clone(),
            );
            v.namespace = vault.namespace.clone();
            v.timeout = vault.timeout;
            let client = secrets::VaultClient::new(v)?;
            client.spawn_renewal();
            Ok(secrets::Cipher::transit(client, vault.transit_key.clone())
                .with_fallback_keyring(keyring))
        }
        None => {
            if settings.keyring.expose() == DEVELOPMENT_KEYRING {
                tracing::warn!(
                    "SECRETS_KEYRING is not set: using the development keyring (refused in production)"
                );
            }
            Ok(secrets::Cipher::local(keyring))
        }
    }
}

/// Everything the handlers and the refresh job share, built from the settings (no
/// connection is opened yet; the outbox relay starts when `KAFKA_BROKERS` is set);
/// its tasks (the relay, the role-change listener) join `background`. Must be called
/// inside a Tokio runtime.
pub fn build_app(settings: &Settings, background: &mut Background) -> anyhow::Result<app::App> {
    let common = &settings.common;
    let db = main_db::service_pool(INFO.name, common)?;
    let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
    let keys = cache::Keys::new(common.redis_key_prefix.clone());
    let peers = &settings.peers;
    let tenants = clients::TenantClient::from_peers(peers)?;
    let roles =
        http_kit::peers::cached_roles(Arc::new(tenants.clone()), common, &redis, background);
    let relay = main_db::start_relay(
        INFO.name,
        common,
        Arc::new(main_db::MainOutbox(db.clone())),
        background,
    )?;
    Ok(app::App {
        roles,
        db,
        azure: Arc::new(azure::Azure::new(
            &settings.authority_url,
            settings.provider_timeout,
            settings.metadata_cache,
        )?),
        graph: graph::Graph::new(&settings.graph_url, settings.provider_timeout)?,
        tenants,
        auth: clients::AuthClient::from_peers(peers)?,
        one_time: cache::OneTime::new(redis.clone(), keys.clone(), common.redis_timeout),
        cipher: cipher(settings)?,
        revocations: cache::Revocations::new(redis.clone(), keys.clone(), common.redis_timeout),
        limiter: cache::RateLimiter::new(redis.clone(), keys, common.redis_timeout),
        redis,
        relay,
        settings: Arc::new(settings.clone()),
    })
}

/// Starts the HTTP server and the token refresh job. Must be called inside a Tokio
/// runtime.
pub fn start(
    settings: Settings,
    listeners: http_kit::server::Listeners,
) -> anyhow::Result<Running> {
    let mut background = Background::new();
    let app = build_app(&settings, &mut background)?;
    let common = &settings.common;
    let verifier = settings.peers.verifier(common, &app.redis)?;
    // The postgres and kafka_topics checks, and the connection-budget warning.
    let database_checks = main_db::database_checks(INFO.name, common, &app.db, &[])?;
    let checks = [ReadinessCheck::new(
        "redis",
        cache::probe(app.redis.clone(), common.redis_timeout),
    )];
    let app = web::Data::new(app);
    background.spawn(
        "sso-token-refresh",
        refresh::run(app.clone(), background.token()),
    );
    let verifier = web::Data::new(verifier);
    let roles = web::Data::from(app.roles.clone());
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
