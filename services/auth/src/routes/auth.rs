//! `/api/auth`: register, login, refresh, logout, health; verifying an email, asking
//! for a verification or reset link, resetting a password.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use http_kit::identity::{bearer_token, Authenticated};
use http_kit::{success, ApiError, ClientIp, Json, ServiceInfo, UserAgent};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::{user_summary, RegisterInput, UserSummary};
use crate::app::App;
use crate::sessions::ClientInfo;

/// Responses that carry tokens are never stored by a cache.
fn no_store(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    response
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

impl From<RegisterRequest> for RegisterInput {
    fn from(body: RegisterRequest) -> Self {
        RegisterInput {
            first_name: body.first_name,
            last_name: body.last_name,
            email: body.email,
            password: body.password,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RegisterResponse {
    message: &'static str,
    user: UserSummary,
}

/// Create an account; a verification link is mailed to the address.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 400, body = http_kit::ErrorBody),
              (status = 409, description = "email_exists", body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn register(
    app: web::Data<App>,
    ip: ClientIp,
    body: Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = app
        .register(body.into_inner().into(), ip.0.as_deref())
        .await?;
    Ok(HttpResponse::Created().json(RegisterResponse {
        message: "User registered successfully",
        user: user_summary(user),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginTenant {
    #[schema(value_type = String, format = Uuid)]
    id: domain::TenantId,
    name: String,
    database_name: String,
    role: domain::Role,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    message: &'static str,
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
    user: UserSummary,
    /// The user's active tenants.
    tenants: Vec<LoginTenant>,
}

/// Exchange email and password for a token pair.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
              (status = 401, description = "invalid_credentials", body = http_kit::ErrorBody),
              (status = 403, description = "account_inactive, or email_not_verified when verified emails are required", body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn login(
    app: web::Data<App>,
    ip: ClientIp,
    agent: UserAgent,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    let client = ClientInfo {
        address: ip.0,
        user_agent: agent.0,
    };
    let (user, tenants, pair) = app.login(&email, password, &client).await?;
    let tenants = tenants
        .into_iter()
        .map(|t| LoginTenant {
            id: t.tenant.id,
            name: t.tenant.name,
            database_name: t.tenant.database_name,
            role: t.role,
        })
        .collect();
    Ok(no_store(HttpResponse::Ok().json(LoginResponse {
        tenants,
        message: "Login successful",
        access_token: pair.access.token,
        refresh_token: pair.refresh.token,
        token_type: "Bearer",
        expires_in: app.issuer.access_ttl.as_secs(),
        user: user_summary(user),
    })))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RefreshResponse {
    access_token: String,
    refresh_token: String,
    expires_in: u64,
}

/// Rotate the refresh token (sent as the bearer token) for a new pair.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth",
    responses((status = 200, body = RefreshResponse),
              (status = 401, description = "invalid_token, token_expired, token_revoked or account_disabled", body = http_kit::ErrorBody)))]
pub async fn refresh(app: web::Data<App>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&req).ok_or(ApiError::Unauthorized)?;
    let pair = app.refresh(&token).await?;
    Ok(no_store(HttpResponse::Ok().json(RefreshResponse {
        access_token: pair.access.token,
        refresh_token: pair.refresh.token,
        expires_in: app.issuer.access_ttl.as_secs(),
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    refresh_token: Option<String>,
}

/// The Flask original's logout answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct LoggedOut {
    /// `Logged out successfully`.
    message: String,
}

/// Revoke the access token and its session (and the given refresh token's).
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body(content = Option<LogoutRequest>),
    responses((status = 200, description = "Logged out", body = LoggedOut), (status = 401, body = http_kit::ErrorBody)))]
pub async fn logout(
    app: web::Data<App>,
    caller: Authenticated,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The body is optional: absent, empty or `null` means no refresh token.
    let refresh_token = http_kit::extract::optional_json::<LogoutRequest>(&req, &body)?
        .and_then(|b| b.refresh_token);
    app.logout(&caller.claims, refresh_token.as_deref()).await?;
    Ok(HttpResponse::Ok().json(json!({"message": "Logged out successfully"})))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token of the emailed link (after `#token=`).
    token: Option<String>,
}

/// Verify an email address with the token of a verification link.
#[utoipa::path(post, path = "/api/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses((status = 200, description = "`data` is the User, `email_verified: true`", body = UserSummary),
              (status = 400, description = "invalid_token: unknown or already used; validation_error", body = http_kit::ErrorBody),
              (status = 410, description = "token_expired", body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn verify_email(
    app: web::Data<App>,
    ip: ClientIp,
    body: Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = app
        .verify_email(body.token.as_deref(), ip.0.as_deref())
        .await?;
    Ok(success(
        StatusCode::OK,
        "Email verified",
        user_summary(user),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    email: Option<String>,
}

/// The one answer of link requests, whether the address has an account or not.
fn link_requested(message: &str) -> HttpResponse {
    HttpResponse::Accepted().json(json!({"success": true, "message": message}))
}

const RESEND_MESSAGE: &str =
    "If this address belongs to an account that still needs verifying, a new link is on its way";
const FORGOT_MESSAGE: &str =
    "If this address belongs to an account, a password reset link is on its way";

/// Ask for a new verification link. The answer is the same for every address.
#[utoipa::path(post, path = "/api/auth/resend-verification", tag = "auth", request_body = EmailRequest,
    responses((status = 202, description = "{success, message}, the same for known and unknown addresses"),
              (status = 400, description = "validation_error", body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn resend_verification(
    app: web::Data<App>,
    ip: ClientIp,
    body: Json<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    app.resend_verification(body.email.as_deref(), ip.0.as_deref())
        .await?;
    Ok(link_requested(RESEND_MESSAGE))
}

/// Ask for a password reset link. The answer is the same for every address.
#[utoipa::path(post, path = "/api/auth/password/forgot", tag = "auth", request_body = EmailRequest,
    responses((status = 202, description = "{success, message}, the same for known and unknown addresses"),
              (status = 400, description = "validation_error", body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn forgot_password(
    app: web::Data<App>,
    ip: ClientIp,
    body: Json<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    app.forgot_password(body.email.as_deref(), ip.0.as_deref())
        .await?;
    Ok(link_requested(FORGOT_MESSAGE))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The token of the emailed reset link.
    token: Option<String>,
    /// Same policy as registration.
    new_password: Option<String>,
}

/// Set a new password with the token of a reset link. The email counts as verified and
/// every session of the account ends.
#[utoipa::path(post, path = "/api/auth/password/reset", tag = "auth", request_body = ResetRequest,
    responses((status = 200, description = "`data` is the User", body = UserSummary),
              (status = 400, description = "invalid_token or validation_error", body = http_kit::ErrorBody),
              (status = 410, description = "token_expired", body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn reset_password(
    app: web::Data<App>,
    ip: ClientIp,
    body: Json<ResetRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = app
        .reset_password(
            body.token.as_deref(),
            body.new_password.as_deref(),
            ip.0.as_deref(),
        )
        .await?;
    Ok(success(
        StatusCode::OK,
        "Password reset; sign in with the new password",
        user_summary(user),
    ))
}

/// Liveness of the auth API (as the earlier platform served it).
pub async fn health(info: web::Data<ServiceInfo>) -> HttpResponse {
    HttpResponse::build(StatusCode::OK)
        .json(json!({"status": "healthy", "service": info.name, "version": info.version}))
}
