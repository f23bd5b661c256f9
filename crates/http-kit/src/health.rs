//! `/health` (alive), `/ready` (dependencies answer) and `/metrics` handlers.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Serialize;

use crate::error::envelope_response;
use crate::metrics::HttpMetrics;
use crate::server::ServiceInfo;

pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency probed by `/ready`.
#[derive(Clone)]
pub struct ReadinessCheck {
    name: &'static str,
    run: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            run: Arc::new(move || Box::pin(check())),
        }
    }
}

/// The dependencies of a service, each probed with a timeout.
#[derive(Clone)]
pub struct Readiness {
    checks: Vec<ReadinessCheck>,
    timeout: Duration,
}

impl Readiness {
    pub fn new(timeout: Duration) -> Self {
        Self {
            checks: Vec::new(),
            timeout,
        }
    }

    pub fn with(mut self, check: ReadinessCheck) -> Self {
        self.checks.push(check);
        self
    }

    /// Runs every check concurrently: name → "ok" | "unavailable" | "timeout".
    pub async fn run(&self) -> BTreeMap<&'static str, &'static str> {
        let probes = self.checks.iter().map(|check| async move {
            let outcome = tokio::time::timeout(self.timeout, (check.run)()).await;
            let state = match outcome {
                Ok(Ok(())) => "ok",
                Ok(Err(reason)) => {
                    tracing::warn!(dependency = check.name, %reason, "readiness check failed");
                    "unavailable"
                }
                Err(_) => {
                    tracing::warn!(
                        dependency = check.name,
                        timeout_ms = self.timeout.as_millis() as u64,
                        "readiness check timed out"
                    );
                    "timeout"
                }
            };
            (check.name, state)
        });
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .collect()
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// Always `healthy` when the process answers.
    pub status: &'static str,
    pub service: &'static str,
    pub version: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyBody {
    /// `ready`.
    pub status: &'static str,
    /// Dependency → `ok`.
    #[schema(value_type = Object)]
    pub checks: BTreeMap<&'static str, &'static str>,
}

/// The process is alive.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthBody)))]
pub async fn health(info: web::Data<ServiceInfo>) -> HttpResponse {
    HttpResponse::Ok().json(HealthBody {
        status: "healthy",
        service: info.name,
        version: info.version,
    })
}

/// Every dependency answers (PostgreSQL, Redis, …).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = ReadyBody),
        (status = 503, description = "A dependency is unavailable", body = crate::ErrorBody)))]
pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let checks = readiness.run().await;
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, s)| **s != "ok")
        .map(|(n, _)| *n)
        .collect();
    if failed.is_empty() {
        HttpResponse::Ok().json(ReadyBody {
            status: "ready",
            checks,
        })
    } else {
        envelope_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("Unavailable: {}", failed.join(", ")),
            serde_json::to_value(&checks).ok(),
        )
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text", content_type = "text/plain", body = String)))]
pub async fn metrics(metrics: web::Data<HttpMetrics>) -> Result<HttpResponse, crate::ApiError> {
    let text = metrics.render().map_err(crate::ApiError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
