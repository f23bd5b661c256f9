//! The HTTP server around a service's routes: request middleware, extractor error
//! handlers, the common endpoints and a JSON 404 for everything else.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};

use crate::error::ApiError;
use crate::extract::{actix_json_error, actix_query_error, path_error, MAX_JSON_BYTES};
use crate::health::{health, metrics, ready, Readiness};
use crate::metrics::HttpMetrics;
use crate::openapi::{serve_openapi, OpenApiJson};
use crate::request_id::request_context;
use crate::CommonSettings;

/// Name and version reported by `/health`.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    pub name: &'static str,
    pub version: &'static str,
}

/// What the server needs besides the service's own routes.
pub struct ServiceHttp {
    pub info: ServiceInfo,
    pub readiness: Readiness,
    pub openapi: utoipa::openapi::OpenApi,
    pub metrics: Arc<HttpMetrics>,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub trust_proxy_headers: bool,
}

impl ServiceHttp {
    pub fn new(
        info: ServiceInfo,
        settings: &CommonSettings,
        readiness: Readiness,
        openapi: utoipa::openapi::OpenApi,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            info,
            readiness,
            openapi,
            metrics: Arc::new(HttpMetrics::new(info.name)?),
            workers: settings.http_workers,
            shutdown_timeout: settings.shutdown_timeout,
            trust_proxy_headers: settings.trust_proxy_headers,
        })
    }
}

/// Starts serving on `listener`; `configure` adds the service's routes.
/// The returned server stops gracefully on SIGTERM/SIGINT.
pub fn start<F>(listener: TcpListener, http: ServiceHttp, configure: F) -> anyhow::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let mut doc = http.openapi;
    doc.merge(crate::openapi::common());
    let doc = web::Data::new(OpenApiJson(doc.to_json()?));
    let info = web::Data::new(http.info);
    let readiness = web::Data::new(http.readiness);
    let metrics = web::Data::from(http.metrics);
    let trust = web::Data::new(crate::client::TrustProxyHeaders(http.trust_proxy_headers));

    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(info.clone())
            .app_data(readiness.clone())
            .app_data(metrics.clone())
            .app_data(doc.clone())
            .app_data(trust.clone())
            .app_data(web::PayloadConfig::new(MAX_JSON_BYTES))
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_JSON_BYTES)
                    .error_handler(actix_json_error),
            )
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::QueryConfig::default().error_handler(actix_query_error))
            .wrap(from_fn(request_context))
            .route("/health", web::get().to(health))
            .route("/ready", web::get().to(ready))
            .route("/metrics", web::get().to(metrics_handler))
            .route("/api-docs/openapi.json", web::get().to(serve_openapi))
            .configure(configure.clone())
            .default_service(web::to(not_found))
    })
    .shutdown_timeout(http.shutdown_timeout.as_secs());
    if http.workers > 0 {
        server = server.workers(http.workers);
    }
    Ok(server.listen(listener)?.run())
}

/// Starts a service whose readiness is `checks`: the usual wiring in one call.
pub fn start_service<F>(
    info: ServiceInfo,
    settings: &CommonSettings,
    checks: impl IntoIterator<Item = crate::ReadinessCheck>,
    openapi: utoipa::openapi::OpenApi,
    listener: TcpListener,
    configure: F,
) -> anyhow::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let readiness = checks
        .into_iter()
        .fold(Readiness::new(settings.ready_timeout), Readiness::with);
    start(
        listener,
        ServiceHttp::new(info, settings, readiness, openapi)?,
        configure,
    )
}

async fn metrics_handler(m: web::Data<HttpMetrics>) -> Result<actix_web::HttpResponse, ApiError> {
    metrics(m).await
}

async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("Resource"))
}
