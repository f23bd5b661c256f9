//! The auth service: users, register/login/refresh/logout, verified emails, password
//! reset and change, sessions, platform administration, the caller's profile, and the
//! public keys of platform tokens (JWKS). Settings: `settings.rs`.

use std::sync::Arc;

use actix_web::web;
use http_kit::identity::StaticKeys;
use http_kit::{Background, ReadinessCheck, Running, ServiceInfo};
use utoipa::OpenApi;

pub mod accounts;
pub mod admin;
pub mod app;
pub mod email_links;
pub mod keys;
pub mod passwords;
pub mod routes;
pub mod sessions;
mod settings;
pub mod store;
pub mod tokens;

pub use settings::{Settings, Throttles, DEFAULT_PORT};

pub const INFO: ServiceInfo = ServiceInfo {
    name: "auth",
    version: env!("CARGO_PKG_VERSION"),
};

#[derive(OpenApi)]
#[openapi(
    info(title = "auth", description = "Users, login, refresh, logout and JWTs"),
    paths(
        routes::auth::register,
        routes::auth::login,
        routes::auth::refresh,
        routes::auth::logout,
        routes::auth::verify_email,
        routes::auth::resend_verification,
        routes::auth::forgot_password,
        routes::auth::reset_password,
        routes::users::me,
        routes::users::update_me,
        routes::users::my_tenants,
        routes::users::change_password,
        routes::users::sessions,
        routes::users::revoke_session,
        routes::users::revoke_all_sessions,
        routes::admin::deactivate,
        routes::admin::reactivate,
        routes::admin::revoke_sessions,
        routes::wellknown::jwks,
        routes::internal::resolve_user,
        routes::internal::issue_tokens,
        routes::internal::lookup_users,
        routes::internal::create_user,
        routes::internal::platform_admin,
        routes::internal::secure_for_sso_link,
        routes::internal::revoke_sso_sessions,
    )
)]
struct ApiDoc;

/// This service's OpenAPI document (the server merges in the common endpoints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    http_kit::openapi::secure(
        &mut doc,
        &[
            ("post", "/api/auth/register"),
            ("post", "/api/auth/login"),
            ("post", "/api/auth/password/forgot"),
            ("post", "/api/auth/password/reset"),
            ("post", "/api/auth/verify-email"),
            ("post", "/api/auth/resend-verification"),
            ("get", "/.well-known/jwks.json"),
        ],
    );
    // The Flask original's shapes, kept for its clients (docs/API.md).
    http_kit::openapi::describe(
        &mut doc,
        &[
            ("post", "/api/auth/register"),
            ("post", "/api/auth/login"),
            ("post", "/api/auth/refresh"),
            ("post", "/api/auth/logout"),
            ("get", "/.well-known/jwks.json"),
        ],
    );
    doc
}

http_kit::service!(INFO, Settings, start);

/// Builds the service on `listeners` (tests and the all-in-one runner call this).
/// Must be called inside a Tokio runtime.
pub fn start(
    settings: Settings,
    listeners: http_kit::server::Listeners,
) -> anyhow::Result<Running> {
    let common = &settings.common;
    let mut background = Background::new();
    let db = main_db::service_pool(INFO.name, common)?;
    // The postgres and kafka_topics checks, and the connection-budget warning.
    let database_checks = main_db::database_checks(INFO.name, common, &db, &[])?;
    let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
    let keys = cache::Keys::new(common.redis_key_prefix.clone());
    let revocations = cache::Revocations::new(redis.clone(), keys.clone(), common.redis_timeout);
    let peers = &settings.peers;
    let verifier = peers.verifier_with(
        Arc::new(StaticKeys::from_jwks(&settings.keys.jwks)),
        common,
        &redis,
    );
    let relay = main_db::start_relay(
        INFO.name,
        common,
        Arc::new(main_db::MainOutbox(db.clone())),
        &mut background,
    )?;
    let keyring = secrets::Keyring::parse(settings.secrets_keyring.expose())?;
    let accounts = app::App {
        relay,
        db: db.clone(),
        passwords: passwords::Passwords::new(settings.bcrypt_cost, settings.bcrypt_threads)?,
        issuer: tokens::TokenIssuer::new(
            settings.keys.clone(),
            peers.jwt_issuer.clone(),
            peers.jwt_audience.clone(),
            settings.access_ttl,
            settings.refresh_ttl,
        ),
        verifier: verifier.clone(),
        revocations,
        limiter: cache::RateLimiter::new(redis.clone(), keys, common.redis_timeout),
        limits: Arc::new(app::LoginLimits {
            per_ip: settings.login_limit_per_ip,
            per_account: settings.login_limit_per_account,
            window: settings.login_limit_window,
        }),
        throttles: settings.throttles,
        links: Arc::new(app::LinkSettings {
            public_app_url: settings.public_app_url.clone(),
            verification_ttl: settings.email_verification_ttl,
            reset_ttl: settings.password_reset_ttl,
            keyring,
        }),
        require_verified_email: settings.require_verified_email,
        successors: cache::OneTime::new(
            redis.clone(),
            cache::Keys::new(common.redis_key_prefix.clone()),
            common.redis_timeout,
        ),
        refresh_reuse_interval: settings.refresh_reuse_interval,
        tenants: clients::TenantClient::from_peers(peers)?,
    };
    let checks = [ReadinessCheck::new(
        "redis",
        cache::probe(redis, common.redis_timeout),
    )];
    let accounts = web::Data::new(accounts);
    let verifier = web::Data::new(verifier);
    let jwks = web::Data::new(settings.keys.jwks.clone());
    let internal = web::Data::new(peers.internal_token());
    let server = http_kit::server::start_service(
        INFO,
        common,
        database_checks.into_iter().chain(checks),
        openapi(),
        listeners,
        move |cfg| {
            cfg.app_data(accounts.clone())
                .app_data(verifier.clone())
                .app_data(jwks.clone())
                .app_data(internal.clone());
            routes::configure(cfg);
        },
    )?;
    Ok(Running { server, background })
}
