//! `/api/auth`: register, login, refresh, logout, health.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use http_kit::identity::{bearer_token, Authenticated};
use http_kit::{ApiError, Json, RequestId, ServiceInfo};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::accounts::{Accounts, RegisterInput, UserBody};
use crate::ClientIp;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RegisterResponse {
    message: &'static str,
    user: UserBody,
}

/// Create an account.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 400, body = http_kit::ErrorBody),
              (status = 409, description = "email_exists", body = http_kit::ErrorBody)))]
pub async fn register(
    accounts: web::Data<Accounts>,
    request_id: RequestId,
    body: Json<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let input = RegisterInput {
        first_name: body.first_name,
        last_name: body.last_name,
        email: body.email,
        password: body.password,
    };
    let user = accounts.register(input, Some(request_id.0)).await?;
    Ok(HttpResponse::Created().json(RegisterResponse {
        message: "User registered successfully",
        user: user.into(),
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
    user: UserBody,
    /// The user's active tenants.
    tenants: Vec<LoginTenant>,
}

/// Exchange email and password for a token pair.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
              (status = 401, description = "invalid_credentials", body = http_kit::ErrorBody),
              (status = 403, description = "account_inactive", body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn login(
    accounts: web::Data<Accounts>,
    ip: ClientIp,
    body: Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    let (user, tenants, pair) = accounts.login(&email, password, ip.0.as_deref()).await?;
    let tenants = tenants
        .into_iter()
        .map(|t| LoginTenant {
            id: t.tenant.id,
            name: t.tenant.name,
            database_name: t.tenant.database_name,
            role: t.role,
        })
        .collect();
    Ok(HttpResponse::Ok().json(LoginResponse {
        tenants,
        message: "Login successful",
        access_token: pair.access.token,
        refresh_token: pair.refresh.token,
        token_type: "Bearer",
        expires_in: accounts.issuer.access_ttl.as_secs(),
        user: user.into(),
    }))
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
              (status = 401, description = "invalid_token, token_expired or token_revoked", body = http_kit::ErrorBody)))]
pub async fn refresh(
    accounts: web::Data<Accounts>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let token = bearer_token(&req).ok_or(ApiError::Unauthorized)?;
    let pair = accounts.refresh(&token).await?;
    Ok(HttpResponse::Ok().json(RefreshResponse {
        access_token: pair.access.token,
        refresh_token: pair.refresh.token,
        expires_in: accounts.issuer.access_ttl.as_secs(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    refresh_token: Option<String>,
}

/// Revoke the access token and its session (and the given refresh token's).
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", request_body(content = Option<LogoutRequest>),
    responses((status = 200, description = "Logged out"), (status = 401, body = http_kit::ErrorBody)))]
pub async fn logout(
    accounts: web::Data<Accounts>,
    caller: Authenticated,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The body is optional: absent or empty means no refresh token.
    let refresh_token = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let is_json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Type must be application/json".into(),
            ));
        }
        http_kit::extract::parse_json::<LogoutRequest>(&body)?.refresh_token
    };
    accounts
        .logout(&caller.claims, refresh_token.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(json!({"message": "Logged out successfully"})))
}

/// Liveness of the auth API (as the earlier platform served it).
pub async fn health(info: web::Data<ServiceInfo>) -> HttpResponse {
    HttpResponse::build(StatusCode::OK)
        .json(json!({"status": "healthy", "service": info.name, "version": info.version}))
}
