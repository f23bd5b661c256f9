//! `ApiError`: every failure a handler can answer with, mapped to a status and a stable
//! snake_case code, rendered in the one error envelope of docs/API.md:
//! `{"success": false, "error", "message", "details"?, "request_id"}`.
//! A 500 says nothing of its cause to the client; the cause is logged once, here.

use std::collections::BTreeMap;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::request_id;

/// Field name → messages, as in `details` of a `validation_error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// One field, one message.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::new();
        errors.add(field, message);
        errors
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) -> &mut Self {
        self.0.entry(field.into()).or_default().push(message.into());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// `Ok(())` when nothing was added, else a `validation_error`.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("The request is invalid")]
    Validation(FieldErrors),
    /// `page` or `per_page` out of range (400 `invalid_pagination`, naming the field).
    #[error("The page or page size is out of range")]
    InvalidPagination(FieldErrors),
    #[error("{0}")]
    BadRequest(String),
    /// A 400 with its own stable code (e.g. the SSO flow's `invalid_state`).
    #[error("{message}")]
    BadRequestCode { code: &'static str, message: String },
    #[error("Authentication required")]
    Unauthorized,
    #[error("Token has expired")]
    TokenExpired,
    #[error("Token has been revoked")]
    TokenRevoked,
    #[error("Token is invalid")]
    InvalidToken,
    #[error("Invalid email or password")]
    InvalidCredentials,
    #[error("Account is inactive")]
    AccountInactive,
    /// A refresh (or another use of a session) by a deactivated account.
    #[error("This account has been disabled")]
    AccountDisabled,
    /// Login of an unverified account while verified emails are required.
    #[error("Verify your email address before signing in; ask for a new link if you need one")]
    EmailNotVerified,
    /// A tenant that signs in through SSO only, and a token that did not come from its
    /// SSO login.
    #[error("This tenant requires signing in through its single sign-on")]
    SsoRequired,
    /// A single-use emailed token (verification, reset) that expired: 410.
    #[error("This link has expired; ask for a new one")]
    LinkExpired,
    /// An SSO identity that may not be linked to the existing account of its email yet.
    #[error("An account with this email already exists and its email is not verified: verify your email (or reset your password) first, or sign in and link your directory account from your profile")]
    LinkRequiresVerification,
    #[error("{0}")]
    Forbidden(String),
    /// A 403 with its own stable code (e.g. `reauthentication_required`).
    #[error("{message}")]
    ForbiddenCode { code: &'static str, message: String },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("Method not allowed")]
    MethodNotAllowed,
    #[error("Email is already registered")]
    EmailExists,
    #[error("{0}")]
    Conflict(String),
    /// A 409 with its own stable code (e.g. `invitation_limit_reached`).
    #[error("{message}")]
    ConflictCode { code: &'static str, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Anything unexpected. The cause is logged, never shown.
    #[error("An internal error occurred")]
    Internal(#[source] anyhow::Error),
    /// The service cannot answer now; the message is shown to the client as is.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// Too much work in progress here (e.g. `UPLOAD_CONCURRENCY` uploads): 503 `busy`
    /// with `Retry-After`.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// The tenant's database takes no writes for a moment (it is being moved to another
    /// server): 503 `tenant_maintenance` with `Retry-After`; reads go on.
    #[error("This tenant is being moved to another database server: writes resume in a moment")]
    TenantMaintenance { retry_after_secs: u64 },
    /// A dependency (database, Redis, another service) cannot answer: the client sees
    /// only `"<what> unavailable"`, the detail is logged.
    #[error("{what} unavailable")]
    Dependency { what: &'static str, detail: String },
}

impl ApiError {
    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    /// A dependency failure: `what` is shown, `detail` only logged.
    pub fn dependency(what: &'static str, detail: impl std::fmt::Display) -> Self {
        Self::Dependency {
            what,
            detail: detail.to_string(),
        }
    }

    /// A 403 with the stable `code` and a message for people.
    pub fn forbidden_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::ForbiddenCode {
            code,
            message: message.into(),
        }
    }

    /// A 409 with the stable `code` and a message for people.
    pub fn conflict_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::ConflictCode {
            code,
            message: message.into(),
        }
    }

    /// A 400 with the stable `code` and a message for people.
    pub fn bad_request_code(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequestCode {
            code,
            message: message.into(),
        }
    }

    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }

    /// The stable machine code of docs/API.md.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_error",
            Self::InvalidPagination(_) => "invalid_pagination",
            Self::BadRequest(_) => "bad_request",
            Self::BadRequestCode { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::TokenExpired => "token_expired",
            Self::TokenRevoked => "token_revoked",
            Self::InvalidToken => "invalid_token",
            Self::InvalidCredentials => "invalid_credentials",
            Self::AccountInactive => "account_inactive",
            Self::AccountDisabled => "account_disabled",
            Self::EmailNotVerified => "email_not_verified",
            Self::SsoRequired => "sso_required",
            Self::LinkExpired => "token_expired",
            Self::LinkRequiresVerification => "account_link_requires_verification",
            Self::Forbidden(_) => "forbidden",
            Self::ForbiddenCode { code, .. } => code,
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EmailExists => "email_exists",
            Self::Conflict(_) => "conflict",
            Self::ConflictCode { code, .. } => code,
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Internal(_) => "internal_error",
            Self::ServiceUnavailable(_) | Self::Dependency { .. } => "service_unavailable",
            Self::Busy { .. } => "busy",
            Self::TenantMaintenance { .. } => "tenant_maintenance",
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            Self::Validation(fields) | Self::InvalidPagination(fields) => {
                serde_json::to_value(fields).ok()
            }
            _ => None,
        }
    }
}

/// The error envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    /// Stable snake_case code, e.g. `validation_error`.
    pub error: String,
    /// Human-readable message.
    pub message: String,
    /// For `validation_error`: `{field: [messages]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    /// The request id, also in the `x-request-id` header.
    pub request_id: String,
}

/// Marks a response whose body already is the envelope, so the request middleware does
/// not rewrite it.
#[derive(Clone, Copy)]
pub(crate) struct Enveloped;

/// Builds an envelope response for a status, code and message.
pub(crate) fn envelope_response(
    status: StatusCode,
    code: &str,
    message: String,
    details: Option<serde_json::Value>,
) -> HttpResponse {
    let body = ErrorBody {
        success: false,
        error: code.to_owned(),
        message,
        details,
        request_id: request_id::current().unwrap_or_default(),
    };
    let mut response = HttpResponse::build(status).json(body);
    response.extensions_mut().insert(Enveloped);
    response
}

/// Database errors as answers, so a handler uses `?` and never formats one
/// (docs/API.md, "Errors"): a row that is not there is a 404, a unique violation a 409
/// naming what its constraint covers, a database that cannot answer a 503 naming only
/// "Database" (the cause is logged); anything else a 500 whose cause is logged.
/// `Retry-After` of a write refused while its tenant's database moves (a move's
/// read-only window is seconds for a usual tenant).
pub const TENANT_MAINTENANCE_RETRY_SECS: u64 = 5;

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        match e {
            Error::NotFound => ApiError::NotFound("Resource"),
            Error::DatabaseError(Kind::UniqueViolation, info) => {
                let field = info.constraint_name().map_or_else(
                    || "value".to_owned(),
                    |name| constraint_field(name, info.table_name()),
                );
                ApiError::Conflict(format!("A resource with this {field} already exists"))
            }
            Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _)
            | Error::BrokenTransactionManager => ApiError::dependency("Database", e),
            // Only a tenant database refuses writes: while it moves to another server.
            Error::DatabaseError(Kind::ReadOnlyTransaction, _) => ApiError::TenantMaintenance {
                retry_after_secs: TENANT_MAINTENANCE_RETRY_SECS,
            },
            other => ApiError::internal(other),
        }
    }
}

/// No connection from a pool (it timed out, or the database refused): 503.
impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        ApiError::dependency("Database", e)
    }
}

/// The column(s) a unique constraint named the PostgreSQL way (`<table>_<columns>_key`,
/// or an index `<table>_<columns>_idx`) covers, as a field name: `users_email_key` of
/// `users` → `email`. Other names are given without the table and the suffix.
fn constraint_field(name: &str, table: Option<&str>) -> String {
    let trimmed = ["_key", "_idx", "_unique", "_uniq"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    table
        .and_then(|table| trimmed.strip_prefix(table))
        .and_then(|rest| rest.strip_prefix('_'))
        .filter(|rest| !rest.is_empty())
        .unwrap_or(trimmed)
        .to_owned()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_)
            | Self::InvalidPagination(_)
            | Self::BadRequest(_)
            | Self::BadRequestCode { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized
            | Self::TokenExpired
            | Self::TokenRevoked
            | Self::InvalidToken
            | Self::InvalidCredentials
            | Self::AccountDisabled => StatusCode::UNAUTHORIZED,
            Self::AccountInactive
            | Self::Forbidden(_)
            | Self::ForbiddenCode { .. }
            | Self::EmailNotVerified
            | Self::SsoRequired => StatusCode::FORBIDDEN,
            Self::LinkExpired => StatusCode::GONE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailExists
            | Self::Conflict(_)
            | Self::ConflictCode { .. }
            | Self::LinkRequiresVerification => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ServiceUnavailable(_)
            | Self::Dependency { .. }
            | Self::Busy { .. }
            | Self::TenantMaintenance { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error")
            }
            Self::ServiceUnavailable(why) => {
                tracing::warn!(reason = %why, "dependency unavailable")
            }
            Self::Dependency { what, detail } => {
                tracing::warn!(dependency = %what, reason = %detail, "dependency unavailable")
            }
            _ => {}
        }
        let mut response = envelope_response(
            self.status_code(),
            self.code(),
            self.to_string(),
            self.details(),
        );
        if let Self::RateLimited { retry_after_secs }
        | Self::TenantMaintenance { retry_after_secs }
        | Self::Busy {
            retry_after_secs, ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        response
    }
}

/// The code and generic message for a status that no `ApiError` produced (actix's own
/// 404 and 405, a middleware's refusal): keeps one envelope on every error.
pub(crate) fn code_for_status(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad_request", "The request is invalid"),
        401 => ("unauthorized", "Authentication required"),
        403 => ("forbidden", "Forbidden"),
        404 => ("not_found", "Not found"),
        405 => ("method_not_allowed", "Method not allowed"),
        409 => ("conflict", "Conflict"),
        413 => ("payload_too_large", "Payload too large"),
        415 => ("unsupported_media_type", "Unsupported media type"),
        429 => ("rate_limited", "Too many requests"),
        503 => ("service_unavailable", "Service unavailable"),
        s if s >= 500 => ("internal_error", "An internal error occurred"),
        _ => ("bad_request", "The request is invalid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_constraint_is_named_by_its_columns() {
        assert_eq!(constraint_field("users_email_key", Some("users")), "email");
        assert_eq!(
            constraint_field(
                "tenant_memberships_tenant_id_user_id_key",
                Some("tenant_memberships")
            ),
            "tenant_id_user_id"
        );
        assert_eq!(
            constraint_field("files_md5_hash_idx", Some("files")),
            "md5_hash"
        );
        assert_eq!(
            constraint_field("one_pending_invitation", Some("invitations")),
            "one_pending_invitation"
        );
        assert_eq!(constraint_field("users_email_key", None), "users_email");
    }

    #[test]
    fn database_errors_answer_404_409_503_or_500() {
        use diesel::result::Error;
        let status = |e: Error| ApiError::from(e).status_code().as_u16();
        assert_eq!(status(Error::NotFound), 404);
        assert_eq!(status(Error::BrokenTransactionManager), 503);
        assert_eq!(status(Error::RollbackTransaction), 500);
        let unavailable = ApiError::from(Error::BrokenTransactionManager);
        assert_eq!(unavailable.to_string(), "Database unavailable");
    }
    use actix_web::body::to_bytes;

    async fn render(error: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = error.error_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = to_bytes(response.into_body()).await.expect("body");
        (status, serde_json::from_slice(&body).expect("json"), retry)
    }

    #[tokio::test]
    async fn every_error_renders_the_envelope() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                ApiError::validation("email", "is required"),
                400,
                "validation_error",
            ),
            (ApiError::BadRequest("bad".into()), 400, "bad_request"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::TokenExpired, 401, "token_expired"),
            (ApiError::TokenRevoked, 401, "token_revoked"),
            (ApiError::InvalidToken, 401, "invalid_token"),
            (ApiError::InvalidCredentials, 401, "invalid_credentials"),
            (ApiError::AccountInactive, 403, "account_inactive"),
            (ApiError::AccountDisabled, 401, "account_disabled"),
            (ApiError::EmailNotVerified, 403, "email_not_verified"),
            (ApiError::SsoRequired, 403, "sso_required"),
            (
                ApiError::forbidden_code("reauthentication_required", "sign in again"),
                403,
                "reauthentication_required",
            ),
            (ApiError::LinkExpired, 410, "token_expired"),
            (
                ApiError::LinkRequiresVerification,
                409,
                "account_link_requires_verification",
            ),
            (ApiError::Forbidden("no".into()), 403, "forbidden"),
            (ApiError::NotFound("Tenant"), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::EmailExists, 409, "email_exists"),
            (ApiError::Conflict("dup".into()), 409, "conflict"),
            (
                ApiError::PayloadTooLarge("big".into()),
                413,
                "payload_too_large",
            ),
            (
                ApiError::UnsupportedMediaType("xml".into()),
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::RateLimited {
                    retry_after_secs: 7,
                },
                429,
                "rate_limited",
            ),
            (
                ApiError::internal(anyhow::anyhow!("password=hunter2 at db.internal:5432")),
                500,
                "internal_error",
            ),
            (
                ApiError::ServiceUnavailable("Redis unavailable".into()),
                503,
                "service_unavailable",
            ),
        ];
        for (error, status, code) in cases {
            let (got_status, body, retry) = render(error).await;
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(body["success"], false, "{code}");
            assert_eq!(body["error"], code);
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{code}"
            );
            assert!(body.get("request_id").is_some(), "{code}");
            if code == "validation_error" {
                assert_eq!(
                    body["details"],
                    serde_json::json!({"email": ["is required"]})
                );
            } else {
                assert!(body.get("details").is_none(), "{code}: {body}");
            }
            if code == "rate_limited" {
                assert_eq!(retry.as_deref(), Some("7"));
            }
            if code == "service_unavailable" {
                let text = body.to_string();
                assert!(
                    !text.contains("db.internal") && !text.contains("password"),
                    "{text}"
                );
            }
            if code == "internal_error" {
                let text = body.to_string();
                assert!(
                    !text.contains("hunter2") && !text.contains("db.internal"),
                    "{text}"
                );
                assert_eq!(body["message"], "An internal error occurred");
            }
        }
    }
}
