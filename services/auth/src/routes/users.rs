//! `/api/users/me`: the caller's profile.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use http_kit::identity::Authenticated;
use http_kit::{success, ApiError, FieldErrors, Json};
use serde::Deserialize;

use crate::accounts::{validate_name, Accounts, UserBody};

/// The caller's profile.
#[utoipa::path(get, path = "/api/users/me", tag = "users",
    responses((status = 200, description = "`data` is the User", body = UserBody), (status = 401, body = http_kit::ErrorBody)))]
pub async fn me(
    accounts: web::Data<Accounts>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = accounts.profile(caller.user_id).await?;
    Ok(success(
        StatusCode::OK,
        "User profile retrieved",
        UserBody::from(user),
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
    responses((status = 200, description = "`data` is the User", body = UserBody), (status = 400, body = http_kit::ErrorBody)))]
pub async fn update_me(
    accounts: web::Data<Accounts>,
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
    let user = accounts
        .update_profile(caller.user_id, first.flatten(), last.flatten())
        .await?;
    Ok(success(
        StatusCode::OK,
        "User profile updated",
        UserBody::from(user),
    ))
}

/// The caller's active tenants with role and join time, most recently joined first.
#[utoipa::path(get, path = "/api/users/me/tenants", tag = "users",
    responses((status = 200, description = "`data` is a list of Tenant + role + joined_at", body = Vec<clients::UserTenant>),
              (status = 401, body = http_kit::ErrorBody), (status = 503, body = http_kit::ErrorBody)))]
pub async fn my_tenants(
    accounts: web::Data<Accounts>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let tenants = accounts.tenants_of(caller.user_id).await?;
    Ok(success(StatusCode::OK, "User tenants retrieved", tenants))
}
