//! Internal routes (never routed by the gateway), for the sso service: find or create a
//! user by email, and issue a token pair for a user. Guarded by the internal token.

use actix_web::{web, HttpResponse};
use domain::UserId;
use http_kit::identity::InternalCaller;
use http_kit::{ApiError, Json, RequestId};
use serde::{Deserialize, Serialize};

use crate::accounts::{Accounts, UserBody};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    email: String,
    first_name: Option<String>,
    last_name: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResolveResponse {
    user: UserBody,
    /// Whether the user was created by this call.
    created: bool,
}

/// Find the user with this email, or create one without a password (SSO).
#[utoipa::path(post, path = "/internal/v1/users/resolve", tag = "internal", request_body = ResolveRequest,
    responses((status = 200, body = ResolveResponse), (status = 401, body = http_kit::ErrorBody)))]
pub async fn resolve_user(
    _caller: InternalCaller,
    accounts: web::Data<Accounts>,
    request_id: RequestId,
    body: Json<ResolveRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let (user, created) = accounts
        .resolve_sso_user(
            &body.email,
            body.first_name,
            body.last_name,
            Some(request_id.0),
        )
        .await?;
    Ok(HttpResponse::Ok().json(ResolveResponse {
        user: user.into(),
        created,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    #[schema(value_type = String, format = Uuid)]
    user_id: UserId,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct IssueResponse {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    expires_in: u64,
}

/// Issue a token pair (a new session) for an active user.
#[utoipa::path(post, path = "/internal/v1/tokens", tag = "internal", request_body = IssueRequest,
    responses((status = 200, body = IssueResponse), (status = 401, body = http_kit::ErrorBody),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn issue_tokens(
    _caller: InternalCaller,
    accounts: web::Data<Accounts>,
    body: Json<IssueRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = accounts.profile(body.user_id).await?;
    if !user.is_active {
        return Err(ApiError::AccountInactive);
    }
    let pair = accounts.new_session(body.user_id).await?;
    Ok(HttpResponse::Ok().json(IssueResponse {
        access_token: pair.access.token,
        refresh_token: pair.refresh.token,
        token_type: "Bearer",
        expires_in: accounts.issuer.access_ttl.as_secs(),
    }))
}

/// Most users one lookup may ask for.
const MAX_LOOKUP: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    #[schema(value_type = Vec<String>)]
    user_ids: Vec<UserId>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LookupResponse {
    /// The users that exist, in no particular order.
    users: Vec<UserBody>,
}

/// Users by id (for the tenant service's member lists); unknown ids are left out.
#[utoipa::path(post, path = "/internal/v1/users/lookup", tag = "internal", request_body = LookupRequest,
    responses((status = 200, body = LookupResponse), (status = 400, body = http_kit::ErrorBody),
              (status = 401, body = http_kit::ErrorBody)))]
pub async fn lookup_users(
    _caller: InternalCaller,
    accounts: web::Data<Accounts>,
    body: Json<LookupRequest>,
) -> Result<HttpResponse, ApiError> {
    let ids = &body.user_ids;
    if ids.len() > MAX_LOOKUP {
        return Err(ApiError::validation(
            "user_ids",
            format!("at most {MAX_LOOKUP} ids"),
        ));
    }
    let users = accounts.users_by_id(ids).await?;
    Ok(HttpResponse::Ok().json(LookupResponse {
        users: users.into_iter().map(UserBody::from).collect(),
    }))
}
