//! The auth service: users, register/login/refresh/logout, the caller's profile, and
//! the public keys of platform tokens (JWKS). Settings: `settings.rs`.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Payload, Server};
use actix_web::{web, FromRequest, HttpRequest};
use http_kit::identity::{InternalToken, StaticKeys, TokenVerifier, VerifierSettings};
use http_kit::{CommonSettings, ConfigReader, ReadinessCheck, ServiceInfo};
use utoipa::OpenApi;

pub mod accounts;
pub mod keys;
pub mod passwords;
pub mod routes;
mod settings;
pub mod tokens;

pub use settings::{Settings, DEFAULT_PORT};

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
        routes::users::me,
        routes::users::update_me,
        routes::users::my_tenants,
        routes::wellknown::jwks,
        routes::internal::resolve_user,
        routes::internal::issue_tokens,
        routes::internal::lookup_users,
    )
)]
struct ApiDoc;

/// This service's OpenAPI document (the server merges in the common endpoints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The client's address for rate limits: the peer, or, when `TRUST_PROXY_HEADERS` is
/// set (behind the gateway), the last `X-Forwarded-For` entry, the one the gateway
/// added.
pub struct ClientIp(pub Option<String>);

#[derive(Clone, Copy)]
struct TrustProxyHeaders(bool);

impl FromRequest for ClientIp {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust = req
            .app_data::<web::Data<TrustProxyHeaders>>()
            .is_some_and(|t| t.0);
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        let ip = if trust {
            // The gateway appends the address it saw; everything left of it came from
            // the client and proves nothing. Take the rightmost entry.
            req.headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                .map(|ip| ip.to_string())
                .or(peer)
        } else {
            peer
        };
        std::future::ready(Ok(ClientIp(ip)))
    }
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

    fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Server> {
        let common = &settings.common;
        let db = main_db::build_pool(
            common.database_url.expose(),
            &main_db::PoolSettings {
                max_size: common.database_pool_size,
                timeout: common.database_timeout,
            },
        )?;
        let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
        let keys = cache::Keys::new(common.redis_key_prefix.clone());
        let revocations =
            cache::Revocations::new(redis.clone(), keys.clone(), common.redis_timeout);
        let verifier = TokenVerifier::new(
            Arc::new(StaticKeys::from_jwks(&settings.keys.jwks)),
            revocations.clone(),
            &VerifierSettings {
                issuer: settings.issuer.clone(),
                audience: settings.audience.clone(),
                leeway_secs: 30,
            },
        );
        let relay = events::start_relay(
            common.kafka_brokers.as_deref(),
            INFO.name,
            common.kafka_timeout,
            common.outbox_sweep_every,
            Arc::new(main_db::MainOutbox(db.clone())),
        )?;
        let accounts = accounts::Accounts {
            relay,
            db: db.clone(),
            passwords: passwords::Passwords::new(settings.bcrypt_cost, settings.bcrypt_threads)?,
            issuer: tokens::TokenIssuer::new(
                settings.keys.clone(),
                settings.issuer.clone(),
                settings.audience.clone(),
                settings.access_ttl,
                settings.refresh_ttl,
            ),
            verifier: verifier.clone(),
            revocations,
            limiter: cache::RateLimiter::new(redis.clone(), keys, common.redis_timeout),
            limits: Arc::new(accounts::LoginLimits {
                per_ip: settings.login_limit_per_ip,
                per_account: settings.login_limit_per_account,
                window: settings.login_limit_window,
            }),
            tenants: clients::TenantClient::new(
                settings.tenant_service_url.clone(),
                settings.internal_token.clone(),
                settings.service_call_timeout,
            )?,
        };
        let checks = [
            ReadinessCheck::new("postgres", main_db::probe(db)),
            ReadinessCheck::new("redis", cache::probe(redis, common.redis_timeout)),
        ];
        let accounts = web::Data::new(accounts);
        let verifier = web::Data::new(verifier);
        let jwks = web::Data::new(settings.keys.jwks.clone());
        let trust = web::Data::new(TrustProxyHeaders(settings.trust_proxy_headers));
        let internal = web::Data::new(InternalToken(settings.internal_token.clone()));
        http_kit::server::start_service(INFO, common, checks, openapi(), listener, move |cfg| {
            cfg.app_data(accounts.clone())
                .app_data(verifier.clone())
                .app_data(jwks.clone())
                .app_data(trust.clone())
                .app_data(internal.clone());
            routes::configure(cfg);
        })
    }
}
