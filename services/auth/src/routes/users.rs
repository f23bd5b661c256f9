//! `/api/users/me`: the caller's profile, password and sessions.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use events::account::RevokedBy;
use http_kit::identity::Authenticated;
use http_kit::{success, ApiError, FieldErrors, Json};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::accounts::{user_summary, validate_name, UserSummary};
use crate::app::App;
use crate::sessions::SessionBody;

/// The caller's profile.
#[utoipa::path(get, path = "/api/users/me", tag = "users",
    responses((status = 200, description = "`data` is the User", body = UserSummary), (status = 401, body = http_kit::ErrorBody)))]
pub async fn me(app: web::Data<App>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let user = app.profile(caller.user_id).await?;
    Ok(success(
        StatusCode::OK,
        "User profile retrieved",
        user_summary(user),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    first_name: Option<String>,
    last_name: Option<String>,
}

/// Change the caller's names (at least one).
#[utoipa::path(put, path = "/api/users/me", tag = "users", request_body = UpdateMeRequest,
    responses((status = 200, description = "`data` is the User", body = UserSummary), (status = 400, body = http_kit::ErrorBody)))]
pub async fn update_me(
    app: web::Data<App>,
    caller: Authenticated,
    body: Json<UpdateMeRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut errors = FieldErrors::new();
    if body.first_name.is_none() && body.last_name.is_none() {
        errors.add("body", "give first_name, last_name or both");
    }
    let first = body
        .first_name
        .as_deref()
        .map(|v| validate_name(&mut errors, "first_name", Some(v)));
    let last = body
        .last_name
        .as_deref()
        .map(|v| validate_name(&mut errors, "last_name", Some(v)));
    errors.into_result()?;
    let user = app
        .update_profile(caller.user_id, first.flatten(), last.flatten())
        .await?;
    Ok(success(
        StatusCode::OK,
        "User profile updated",
        user_summary(user),
    ))
}

/// The caller's active tenants with role and join time, most recently joined first.
#[utoipa::path(get, path = "/api/users/me/tenants", tag = "users",
    responses((status = 200, description = "`data` is a list of Tenant + role + joined_at", body = Vec<clients::UserTenant>),
              (status = 401, body = http_kit::ErrorBody), (status = 503, body = http_kit::ErrorBody)))]
pub async fn my_tenants(
    app: web::Data<App>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let tenants = app.tenants_of(caller.user_id).await?;
    Ok(success(StatusCode::OK, "User tenants retrieved", tenants))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    current_password: Option<String>,
    /// Same policy as registration.
    new_password: Option<String>,
}

/// Change the caller's password; every other session of the account ends.
#[utoipa::path(post, path = "/api/users/me/password", tag = "users", request_body = ChangePasswordRequest,
    responses((status = 200, description = "`data` is the User", body = UserSummary),
              (status = 400, description = "validation_error (`current_password` not correct, or `new_password` too weak)", body = http_kit::ErrorBody),
              (status = 401, body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody)))]
pub async fn change_password(
    app: web::Data<App>,
    caller: Authenticated,
    body: Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = app
        .change_password(
            caller.user_id,
            caller.claims.fam,
            body.current_password.as_deref(),
            body.new_password.as_deref(),
        )
        .await?;
    Ok(success(
        StatusCode::OK,
        "Password changed; your other sessions were signed out",
        user_summary(user),
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionList {
    sessions: Vec<SessionBody>,
}

/// The caller's sessions that can still be used, most recently used first.
#[utoipa::path(get, path = "/api/users/me/sessions", tag = "users",
    responses((status = 200, description = "`data` is {sessions}", body = SessionList),
              (status = 401, body = http_kit::ErrorBody)))]
pub async fn sessions(
    app: web::Data<App>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let sessions = app.sessions_of(caller.user_id, caller.claims.fam).await?;
    Ok(success(
        StatusCode::OK,
        "Sessions retrieved",
        SessionList { sessions },
    ))
}

/// End one of the caller's sessions: its tokens stop working at once.
#[utoipa::path(delete, path = "/api/users/me/sessions/{session_id}", tag = "users",
    params(("session_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data` is {revoked_session_id}", body = SessionRevoked),
              (status = 401, body = http_kit::ErrorBody),
              (status = 404, description = "not a live session of the caller", body = http_kit::ErrorBody)))]
pub async fn revoke_session(
    app: web::Data<App>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let session = path.into_inner();
    let user = app.profile(caller.user_id).await?;
    app.revoke_session(&user, session).await?;
    Ok(success(
        StatusCode::OK,
        "Session revoked",
        serde_json::json!({ "revoked_session_id": session }),
    ))
}

/// Sign out everywhere: every session of the caller ends, this one included.
#[utoipa::path(delete, path = "/api/users/me/sessions", tag = "users",
    responses((status = 200, description = "`data` is {sessions_revoked}", body = SessionsRevoked),
              (status = 401, body = http_kit::ErrorBody)))]
pub async fn revoke_all_sessions(
    app: web::Data<App>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let count = app
        .revoke_all_sessions(caller.user_id, RevokedBy::User, Some(caller.user_id))
        .await?;
    Ok(success(
        StatusCode::OK,
        "Signed out everywhere",
        serde_json::json!({ "sessions_revoked": count }),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of ending sessions.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SessionsRevoked {
    sessions_revoked: u64,
}

/// `data` of ending one session.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SessionRevoked {
    #[schema(format = Uuid)]
    revoked_session_id: String,
}
