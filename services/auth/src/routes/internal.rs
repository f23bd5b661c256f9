//! Internal routes (never routed by the gateway), guarded by the internal token: for
//! the sso service, find or create a user by email, secure an account before linking
//! it, open a session, end the sessions an identity produced; for the tenant service,
//! users by id or email and the `init` admin.

use crate::store::sessions::SessionOrigin;
use actix_web::{web, HttpResponse};
use domain::{Email, TenantId, UserId};
use http_kit::identity::InternalCaller;
use http_kit::{ApiError, Json};
use serde::{Deserialize, Serialize};

use crate::accounts::{user_summary, UserSummary};
use crate::app::App;
use crate::sessions::ClientInfo;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
    /// A user created now has a verified email (the directory asserted the domain).
    #[serde(default)]
    email_verified: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResolveResponse {
    user: UserSummary,
    /// Whether the user was created by this call.
    created: bool,
}

/// Find the user with this email, or create one without a password (SSO).
#[utoipa::path(post, path = "/internal/v1/users/resolve", tag = "internal", request_body = ResolveRequest,
    responses((status = 200, body = ResolveResponse), (status = 401, body = http_kit::ErrorBody)))]
pub async fn resolve_user(
    _caller: InternalCaller,
    app: web::Data<App>,
    body: Json<ResolveRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (user, created) = app
        .resolve_sso_user(
            &body.email,
            body.first_name,
            body.last_name,
            body.email_verified,
        )
        .await?;
    Ok(HttpResponse::Ok().json(ResolveResponse {
        user: user_summary(user),
        created,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    #[schema(value_type = String, format = Uuid)]
    user_id: UserId,
    /// The SSO login the session comes from; without it, a password session.
    sso: Option<SsoOrigin>,
    user_agent: Option<String>,
    client_address: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoOrigin {
    /// The platform tenant whose SSO login it was.
    #[schema(value_type = String, format = Uuid)]
    tenant_id: TenantId,
    /// The directory (Entra `tid`) that signed the user in.
    directory_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IssueResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// Issue a token pair (a new session) for an active user: tokens of an SSO session carry
/// `amr: ["sso"]` and the directory's `tid`.
#[utoipa::path(post, path = "/internal/v1/tokens", tag = "internal", request_body = IssueRequest,
    responses((status = 200, body = IssueResponse), (status = 401, body = http_kit::ErrorBody),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn issue_tokens(
    _caller: InternalCaller,
    app: web::Data<App>,
    body: Json<IssueRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let user = app.profile(body.user_id).await?;
    if !user.is_active {
        return Err(ApiError::AccountInactive);
    }
    let origin = match body.sso {
        Some(sso) => {
            let directory = sso.directory_id.trim().to_ascii_lowercase();
            if directory.is_empty() || directory.len() > 64 {
                return Err(ApiError::validation(
                    "sso.directory_id",
                    "is not a directory id",
                ));
            }
            SessionOrigin::Sso {
                tenant: sso.tenant_id,
                directory,
            }
        }
        None => SessionOrigin::Password,
    };
    let clip = |v: Option<String>, max: usize| v.map(|v| v.chars().take(max).collect::<String>());
    let client = ClientInfo {
        address: clip(body.client_address, 64),
        user_agent: clip(body.user_agent, 512),
    };
    let pair = app.new_session(&user, &origin, &client).await?;
    Ok(HttpResponse::Ok().json(IssueResponse {
        access_token: pair.access.token,
        refresh_token: pair.refresh.token,
        token_type: "Bearer",
        expires_in: app.issuer.access_ttl.as_secs(),
    }))
}

/// Most users one lookup may ask for.
const MAX_LOOKUP: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    user_ids: Vec<UserId>,
    /// Addresses (compared normalised: trimmed, lower-cased); one that is not an
    /// address matches no one.
    #[serde(default)]
    emails: Vec<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LookupResponse {
    /// The users that exist, in no particular order.
    users: Vec<UserSummary>,
}

/// Users by id (for the tenant service's member lists) and by email (its invitations);
/// unknown ones are left out, a user named both ways appears once.
#[utoipa::path(post, path = "/internal/v1/users/lookup", tag = "internal", request_body = LookupRequest,
    responses((status = 200, body = LookupResponse), (status = 400, body = http_kit::ErrorBody),
              (status = 401, body = http_kit::ErrorBody)))]
pub async fn lookup_users(
    _caller: InternalCaller,
    app: web::Data<App>,
    body: Json<LookupRequest>,
) -> Result<HttpResponse, ApiError> {
    let LookupRequest { user_ids, emails } = body.into_inner();
    if user_ids.len() + emails.len() > MAX_LOOKUP {
        return Err(ApiError::validation(
            "user_ids",
            format!("at most {MAX_LOOKUP} ids and emails"),
        ));
    }
    let emails: Vec<Email> = emails.iter().filter_map(|e| Email::parse(e).ok()).collect();
    let mut users = app.users_by_id(&user_ids).await?;
    for user in app.users_by_email(&emails).await? {
        if !users.iter().any(|u| u.id == user.id) {
            users.push(user);
        }
    }
    Ok(HttpResponse::Ok().json(LookupResponse {
        users: users.into_iter().map(user_summary).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailBody {
    email: String,
}

/// Create a user with a password (`tenant init --create-admin`): the validation of
/// `POST /api/auth/register` without its per-address limits; 409 `email_taken` when the
/// email is registered.
#[utoipa::path(post, path = "/internal/v1/users", tag = "internal", request_body = crate::routes::auth::RegisterRequest,
    responses((status = 201, body = UserSummary), (status = 400, body = http_kit::ErrorBody),
              (status = 401, body = http_kit::ErrorBody), (status = 409, body = http_kit::ErrorBody)))]
pub async fn create_user(
    _caller: InternalCaller,
    app: web::Data<App>,
    body: Json<crate::routes::auth::RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = app.create_with_password(body.into_inner().into()).await?;
    Ok(HttpResponse::Created().json(user_summary(user)))
}

/// Make the user with this email a platform administrator with a verified email
/// (`tenant init --create-admin`).
#[utoipa::path(post, path = "/internal/v1/users/platform-admin", tag = "internal", request_body = EmailBody,
    responses((status = 200, body = UserSummary), (status = 401, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn platform_admin(
    _caller: InternalCaller,
    app: web::Data<App>,
    body: Json<EmailBody>,
) -> Result<HttpResponse, ApiError> {
    let user = app.make_platform_admin(&body.email).await?;
    Ok(HttpResponse::Ok().json(user_summary(user)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SecuredResponse {
    /// Whether a password chosen before the mailbox was proven was removed (and every
    /// session ended).
    password_removed: bool,
}

/// Before a directory identity is linked to this existing account by its email: remove
/// a password chosen before anyone proved control of the mailbox, and end every session.
#[utoipa::path(post, path = "/internal/v1/users/{user_id}/secure-for-sso-link", tag = "internal",
    params(("user_id" = String, Path, format = Uuid)),
    responses((status = 200, body = SecuredResponse), (status = 401, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn secure_for_sso_link(
    _caller: InternalCaller,
    app: web::Data<App>,
    path: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let password_removed = app.secure_for_sso_link(path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(SecuredResponse { password_removed }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RevokedResponse {
    sessions_revoked: usize,
}

/// End the sessions the user obtained through the tenant's SSO login (the directory
/// refused the identity).
#[utoipa::path(post, path = "/internal/v1/users/{user_id}/sso-sessions/{tenant_id}/revoke", tag = "internal",
    params(("user_id" = String, Path, format = Uuid), ("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, body = RevokedResponse), (status = 401, body = http_kit::ErrorBody)))]
pub async fn revoke_sso_sessions(
    _caller: InternalCaller,
    app: web::Data<App>,
    path: web::Path<(UserId, TenantId)>,
) -> Result<HttpResponse, ApiError> {
    let (user, tenant) = path.into_inner();
    let sessions_revoked = app.revoke_sso_sessions(user, tenant).await?;
    Ok(HttpResponse::Ok().json(RevokedResponse { sessions_revoked }))
}
