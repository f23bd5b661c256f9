//! The document service: documents and files of a tenant: upload, list, download, presigned URLs.
//!
//! Today it serves the operations endpoints every service has (`/health`, `/ready`,
//! `/metrics`, `/api-docs/openapi.json`); its API lands with its own issue.
//! Settings: the common ones of `http_kit::config` (default port 5003).

use std::net::TcpListener;

use actix_web::dev::Server;
use http_kit::{CommonSettings, ConfigReader, ReadinessCheck, ServiceInfo};
use utoipa::OpenApi;

pub const INFO: ServiceInfo = ServiceInfo {
    name: "document",
    version: env!("CARGO_PKG_VERSION"),
};
pub const DEFAULT_PORT: u16 = 5003;

#[derive(OpenApi)]
#[openapi(info(
    title = "document",
    description = "Documents and files of a tenant: upload, list, download, presigned URLs"
))]
struct ApiDoc;

/// This service's OpenAPI document (the server merges in the common endpoints).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The service as its binary and the tests run it.
pub struct Service;

impl http_kit::cli::Service for Service {
    const INFO: ServiceInfo = INFO;
    type Settings = CommonSettings;

    fn read_settings(reader: &mut ConfigReader<'_>) -> CommonSettings {
        CommonSettings::read(reader, DEFAULT_PORT)
    }

    fn common(settings: &CommonSettings) -> &CommonSettings {
        settings
    }

    fn start(settings: CommonSettings, listener: TcpListener) -> anyhow::Result<Server> {
        let db = main_db::build_pool(
            settings.database_url.expose(),
            &main_db::PoolSettings {
                max_size: settings.database_pool_size,
                timeout: settings.database_timeout,
            },
        )?;
        let redis = cache::connect(settings.redis_url.expose(), settings.redis_timeout)?;
        let checks = [
            ReadinessCheck::new("postgres", main_db::probe(db)),
            ReadinessCheck::new("redis", cache::probe(redis, settings.redis_timeout)),
        ];
        http_kit::server::start_service(INFO, &settings, checks, openapi(), listener, |_routes| {})
    }
}
