//! The request middleware: accepts a well-formed `x-request-id` or creates one, echoes
//! it, sets `Cache-Control: no-store` (and `Pragma: no-cache`) where a route set no
//! caching rule of its own, runs the request inside a tracing span carrying it (and, once known, `tenant.id`
//! and `user.id`), logs one line per request, records metrics, and turns any error
//! response that is not yet the JSON envelope (actix's own 404/405, payload errors) into
//! one.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use tracing::Instrument;

use crate::error::{code_for_status, envelope_response, Enveloped};
use crate::metrics::HttpMetrics;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served, as an extractor and in request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The id of the request whose handler is running, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `work` (a task spawned by a handler, say) as part of the request `id`: its
/// events and calls carry that id.
pub async fn scope<F: std::future::Future>(id: Option<String>, work: F) -> F::Output {
    match id {
        Some(id) => CURRENT.scope(id, work).await,
        None => work.await,
    }
}

/// An incoming id is kept only if short and made of safe characters, so it cannot
/// forge log lines or headers.
fn accept(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= MAX_REQUEST_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    ok.then(|| s.to_owned())
}

impl actix_web::FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &actix_web::HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string()));
        std::future::ready(Ok(id))
    }
}

/// Paths whose last segment is a secret (an invitation token): logged without it.
const SECRET_SEGMENT_PATHS: [&str; 1] = ["/api/invitations/"];

/// The path as logged: a secret segment replaced by `[token]`.
fn loggable_path(path: &str) -> String {
    for prefix in SECRET_SEGMENT_PATHS {
        if let Some(rest) = path.strip_prefix(prefix) {
            if !rest.is_empty() && !rest.contains('/') && rest != "accept" {
                return format!("{prefix}[token]");
            }
        }
    }
    path.to_owned()
}

pub(crate) async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // HEAD is served wherever GET is: routed as a GET; the connection sends the
    // headers only (actix knows the request was a HEAD).
    let mut req = req;
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = loggable_path(req.path());
    let metrics = req.app_data::<web::Data<HttpMetrics>>().cloned();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        path = %path,
        tenant.id = tracing::field::Empty,
        user.id = tracing::field::Empty,
    );

    let outcome = CURRENT
        .scope(id.clone(), async {
            if !crate::server::admit(&req) {
                let refused = actix_web::ResponseError::error_response(&crate::ApiError::NotFound(
                    "Resource",
                ));
                return Ok(req.into_response(refused));
            }
            // A NUL character in the path or the query string: PostgreSQL cannot
            // store it, so it is a 400 here rather than a 500 deeper down.
            let nul_field = if crate::extract::path_has_nul(req.path()) {
                Some("path".to_owned())
            } else {
                crate::extract::nul_parameter(req.query_string())
            };
            if let Some(field) = nul_field {
                let refused =
                    actix_web::ResponseError::error_response(&crate::ApiError::Validation(
                        crate::FieldErrors::single(field, crate::extract::NUL_MESSAGE),
                    ));
                return Ok(req.into_response(refused));
            }
            // Rewrite inside the scope so the envelope carries the request id.
            next.call(req)
                .await
                .map(|res| ensure_envelope(res.map_into_boxed_body()))
        })
        .instrument(span.clone())
        .await;
    // Handlers' and extractors' errors arrive as responses; an `Err` here can only come
    // from a middleware inside this one (there is none today), and actix renders it.
    let mut response = outcome?;
    let status = response.status();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = started.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe(method.as_str(), &route, status.as_u16(), elapsed);
    }
    // Answers are per caller and may carry tokens (login, refresh, the SSO callback):
    // no cache may keep them unless a route says otherwise.
    let headers = response.headers_mut();
    if !headers.contains_key(actix_web::http::header::CACHE_CONTROL) {
        headers.insert(
            actix_web::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
    }
    let no_store = headers
        .get(actix_web::http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("no-store"));
    if no_store && !headers.contains_key(actix_web::http::header::PRAGMA) {
        // For HTTP/1.0 caches.
        headers.insert(
            actix_web::http::header::PRAGMA,
            HeaderValue::from_static("no-cache"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let _entered = span.enter();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), duration_ms, route = %route, "request finished");
    } else if route != "/health" && route != "/metrics" {
        tracing::info!(status = status.as_u16(), duration_ms, route = %route, "request finished");
    } else {
        tracing::debug!(status = status.as_u16(), duration_ms, route = %route, "request finished");
    }
    Ok(response)
}

fn ensure_envelope(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response
            .response()
            .extensions()
            .get::<Enveloped>()
            .is_some()
    {
        return response;
    }
    if let Some(error) = response.response().error() {
        // Log the cause of a non-ApiError 5xx once; the client sees only the generic text.
        if status.is_server_error() {
            tracing::error!(error = %error, "internal error");
        }
    }
    let (code, message) = code_for_status(status);
    let (req, old) = response.into_parts();
    let mut new = envelope_response(status, code, message.to_owned(), None);
    // Keep headers such as Allow and Retry-After, but not the old body's type or length.
    for (name, value) in old.headers() {
        if name != actix_web::http::header::CONTENT_TYPE
            && name != actix_web::http::header::CONTENT_LENGTH
        {
            new.headers_mut().insert(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(req, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitation_tokens_are_not_logged() {
        assert_eq!(
            loggable_path("/api/invitations/abc_DEF-1"),
            "/api/invitations/[token]"
        );
        assert_eq!(
            loggable_path("/api/invitations/accept"),
            "/api/invitations/accept"
        );
        assert_eq!(
            loggable_path("/api/tenants/x/invitations"),
            "/api/tenants/x/invitations"
        );
    }

    #[test]
    fn only_safe_request_ids_are_accepted() {
        // The gateway's rule too (deploy/gateway/nginx.conf.template): [A-Za-z0-9._-]{1,128}.
        let ok = HeaderValue::from_static("abc-123_x.Y");
        assert_eq!(accept(&ok).as_deref(), Some("abc-123_x.Y"));
        let longest = "a".repeat(128);
        assert_eq!(
            accept(&HeaderValue::from_str(&longest).expect("header")),
            Some(longest)
        );
        for bad in [
            "",
            "with space",
            "new\nline",
            "quote\"",
            "a:b",
            "<b>",
            &"a".repeat(129),
        ] {
            if let Ok(value) = HeaderValue::from_str(bad) {
                assert_eq!(accept(&value), None, "{bad:?}");
            }
        }
    }
}
