//! The auth service: users, login, refresh, logout and JWTs.
//!
//! Today it serves the operations endpoints every service has (`/health`, `/ready`,
//! `/metrics`, `/api-docs/openapi.json`); its API lands with its own issue.
//! Settings: the common ones of `http_kit::config` (default port 5001).

use std::net::TcpListener;

use actix_web::dev::Server;
use anyhow::Context;
use http_kit::{CommonSettings, ConfigReader, Readiness, ReadinessCheck, ServiceHttp, ServiceInfo};
use utoipa::OpenApi;

pub const INFO: ServiceInfo = ServiceInfo {
    name: "auth",
    version: env!("CARGO_PKG_VERSION"),
};
pub const DEFAULT_PORT: u16 = 5001;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
}

#[derive(OpenApi)]
#[openapi(info(title = "auth", description = "Users, login, refresh, logout and JWTs"))]
struct ApiDoc;

/// This service's OpenAPI document (without the common operations endpoints, which
/// the server merges in).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The service as its binary runs it.
pub struct Service;

impl http_kit::cli::Service for Service {
    const INFO: ServiceInfo = INFO;
    type Settings = Settings;

    fn read_settings(reader: &mut ConfigReader<'_>) -> Settings {
        Settings {
            common: CommonSettings::read(reader, DEFAULT_PORT),
        }
    }

    fn common(settings: &Settings) -> &CommonSettings {
        &settings.common
    }

    async fn serve(settings: Settings) -> anyhow::Result<()> {
        let address = settings.common.bind_address();
        let listener = TcpListener::bind(&address).with_context(|| format!("binding {address}"))?;
        tracing::info!(%address, "auth listening");
        start(settings, listener)?.await?;
        Ok(())
    }
}

/// Builds the service on `listener` (tests and the all-in-one runner call this).
pub fn start(settings: Settings, listener: TcpListener) -> anyhow::Result<Server> {
    let common = &settings.common;
    let db = main_db::build_pool(
        common.database_url.expose(),
        &main_db::PoolSettings {
            max_size: common.database_pool_size,
            timeout: common.database_timeout,
        },
    )?;
    let redis = cache::build_pool(
        common.redis_url.expose(),
        common.redis_pool_size,
        common.redis_timeout,
    )?;
    let readiness = Readiness::new(common.ready_timeout)
        .with(ReadinessCheck::new("postgres", main_db::probe(db)))
        .with(ReadinessCheck::new(
            "redis",
            cache::probe(redis, common.redis_timeout),
        ));
    let http = ServiceHttp::new(INFO, common, readiness, openapi())?;
    http_kit::server::start(listener, http, |_routes| {})
}
