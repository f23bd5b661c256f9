//! The HTTP server around a service's routes: request middleware, extractor error
//! handlers, the common endpoints and a JSON 404 for everything else.
//!
//! A service listens twice: on `PORT` (public: what the gateway proxies) and on
//! `INTERNAL_PORT` (the platform's own callers, reachable only inside the deployment).
//! The internal API (`/internal/…`, routes under [`internal_only`]) and `/metrics` are
//! served on the internal listener only; the public listener answers 404 for them
//! whatever their spelling. The internal listener serves the public routes too, so a
//! service needs one address of another (auth's JWKS, say).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServiceRequest};
use actix_web::middleware::from_fn;
use actix_web::{guard, web, App, HttpMessage, HttpServer};

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
    pub trusted_proxies: crate::client::TrustedProxies,
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
            trusted_proxies: settings.trusted_proxies.clone(),
        })
    }
}

/// Which of its listeners a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

/// A service's two listening sockets.
pub struct Listeners {
    pub public: TcpListener,
    pub internal: TcpListener,
}

impl Listeners {
    /// Binds `HOST:PORT` and `HOST:INTERNAL_PORT`.
    pub fn bind(settings: &CommonSettings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let public = settings.bind_address();
        let internal = settings.internal_bind_address();
        Ok(Self {
            public: TcpListener::bind(&public).with_context(|| format!("binding {public}"))?,
            internal: TcpListener::bind(&internal)
                .with_context(|| format!("binding {internal} (INTERNAL_PORT)"))?,
        })
    }
}

/// A guard admitting requests of the internal listener only: put it on the internal
/// API's scope (a request of the public listener then finds no route: 404).
pub fn internal_only() -> impl guard::Guard {
    guard::fn_guard(|ctx| ctx.req_data().get::<Listener>() == Some(&Listener::Internal))
}

/// Whether a path names the internal API (in any case; also once percent-decoded, as
/// the router sees it).
fn is_internal_path(path: &str) -> bool {
    let trimmed = path.trim_start_matches('/');
    trimmed
        .get(..8)
        .is_some_and(|head| head.eq_ignore_ascii_case("internal"))
        || trimmed.get(..1) == Some("%")
}

/// Marks the request with its listener; on the public one, a request for the internal
/// API is refused before routing (a second line behind [`internal_only`]). Called by
/// the request middleware (one layer, not two, on every request).
pub(crate) fn admit(req: &ServiceRequest) -> bool {
    let listener = req
        .conn_data::<Listener>()
        .copied()
        .unwrap_or(Listener::Public);
    req.extensions_mut().insert(listener);
    listener == Listener::Internal
        || !(is_internal_path(req.path()) || is_internal_path(req.match_info().as_str()))
}

/// Starts serving on `listeners`; `configure` adds the service's routes.
/// The server does not watch signals itself: `lifecycle::serve_until_signalled` stops
/// it, then the service's background tasks.
pub fn start<F>(listeners: Listeners, http: ServiceHttp, configure: F) -> anyhow::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let internal_port = listeners.internal.local_addr()?.port();
    let mut doc = http.openapi;
    doc.merge(crate::openapi::common());
    let methods = web::Data::new(RouteMethods::of(&doc));
    let doc = web::Data::new(OpenApiJson(doc.to_json()?));
    let info = web::Data::new(http.info);
    let readiness = web::Data::new(http.readiness);
    let metrics = web::Data::from(http.metrics);
    let trust = web::Data::new(http.trusted_proxies);

    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(info.clone())
            .app_data(readiness.clone())
            .app_data(metrics.clone())
            .app_data(doc.clone())
            .app_data(methods.clone())
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
            .route(
                "/metrics",
                web::get().guard(internal_only()).to(metrics_handler),
            )
            .route("/api-docs/openapi.json", web::get().to(serve_openapi))
            .configure(configure.clone())
            .default_service(web::to(not_found))
    })
    .on_connect(move |connection, data| {
        let local = connection
            .downcast_ref::<actix_web::rt::net::TcpStream>()
            .and_then(|stream| stream.local_addr().ok());
        data.insert(match local {
            Some(address) if address.port() == internal_port => Listener::Internal,
            _ => Listener::Public,
        });
    })
    // Idle connections outlive the gateway's (nginx keeps its upstream connections
    // 60 s): a server closing first races a request the proxy is already sending on
    // the connection, which the proxy cannot retry for a POST and answers 502.
    .keep_alive(KEEP_ALIVE)
    .disable_signals()
    .shutdown_timeout(http.shutdown_timeout.as_secs());
    if http.workers > 0 {
        server = server.workers(http.workers);
    }
    Ok(server
        .listen(listeners.public)?
        .listen(listeners.internal)?
        .run())
}

/// How long an idle client connection stays open: longer than any proxy in front keeps
/// its idle upstream connections (the gateway: 60 s, `keepalive_timeout` in its
/// upstreams), so the proxy always closes first.
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(75);

/// Starts a service whose readiness is `checks`: the usual wiring in one call.
pub fn start_service<F>(
    info: ServiceInfo,
    settings: &CommonSettings,
    checks: impl IntoIterator<Item = crate::ReadinessCheck>,
    openapi: utoipa::openapi::OpenApi,
    listeners: Listeners,
    configure: F,
) -> anyhow::Result<Server>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let readiness = checks
        .into_iter()
        .fold(Readiness::new(settings.ready_timeout), Readiness::with);
    start(
        listeners,
        ServiceHttp::new(info, settings, readiness, openapi)?,
        configure,
    )
}

async fn metrics_handler(m: web::Data<HttpMetrics>) -> Result<actix_web::HttpResponse, ApiError> {
    metrics(m).await
}

/// Which methods each documented path answers: a request for a known path with
/// another method is a 405 with `Allow`, not a 404. Built from the service's OpenAPI
/// document, which lists every route (a test of each service checks that).
pub struct RouteMethods(Vec<(Vec<String>, Vec<&'static str>)>);

impl RouteMethods {
    fn of(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = Vec::new();
        for (path, item) in &doc.paths.paths {
            let mut methods = Vec::new();
            for (method, name) in [
                (&item.get, "GET"),
                (&item.post, "POST"),
                (&item.put, "PUT"),
                (&item.patch, "PATCH"),
                (&item.delete, "DELETE"),
            ] {
                if method.is_some() {
                    methods.push(name);
                }
            }
            if methods.contains(&"GET") {
                methods.insert(1, "HEAD");
            }
            let segments = path
                .trim_matches('/')
                .split('/')
                .map(str::to_owned)
                .collect();
            routes.push((segments, methods));
        }
        Self(routes)
    }

    /// The methods of the documented path `path` matches, if any. A path that several
    /// templates match belongs to the most literal one, as the router decides
    /// (`/api/invitations/accept` is not an `/api/invitations/{token}`).
    fn allowed(&self, path: &str) -> Vec<&'static str> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let literals =
            |template: &[String]| template.iter().filter(|t| !t.starts_with('{')).count();
        let matching: Vec<_> = self
            .0
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| {
                        (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                    })
            })
            .collect();
        let most = matching.iter().map(|(t, _)| literals(t)).max().unwrap_or(0);
        let mut allowed = Vec::new();
        for (template, methods) in matching {
            if literals(template) == most {
                for method in methods {
                    if !allowed.contains(method) {
                        allowed.push(*method);
                    }
                }
            }
        }
        allowed
    }
}

async fn not_found(
    req: actix_web::HttpRequest,
    methods: Option<web::Data<RouteMethods>>,
) -> Result<actix_web::HttpResponse, ApiError> {
    let allowed = methods.map(|m| m.allowed(req.path())).unwrap_or_default();
    if allowed.is_empty() || allowed.contains(&req.method().as_str()) {
        return Err(ApiError::NotFound("Resource"));
    }
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    Ok(response)
}
