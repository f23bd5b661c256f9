//! `/api/admin/users/{user_id}/…`: platform administrators deactivate and reactivate
//! accounts, and end every session of one.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::UserId;
use events::account::RevokedBy;
use http_kit::identity::Authenticated;
use http_kit::{success, ApiError};

use crate::accounts::{user_summary, UserSummary};
use crate::app::App;

/// Deactivate an account: it can no longer sign in or refresh, and every session ends
/// at once. Platform administrators only.
#[utoipa::path(post, path = "/api/admin/users/{user_id}/deactivate", tag = "admin",
    params(("user_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data` is the User", body = UserSummary),
              (status = 400, description = "an administrator deactivating themselves", body = http_kit::ErrorBody),
              (status = 401, body = http_kit::ErrorBody),
              (status = 403, description = "not a platform administrator", body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn deactivate(
    app: web::Data<App>,
    caller: Authenticated,
    path: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    app.platform_admin(caller.user_id).await?;
    let user = app.deactivate(caller.user_id, path.into_inner()).await?;
    Ok(success(
        StatusCode::OK,
        "User deactivated; every session ended",
        user_summary(user),
    ))
}

/// Reactivate an account. Platform administrators only.
#[utoipa::path(post, path = "/api/admin/users/{user_id}/reactivate", tag = "admin",
    params(("user_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data` is the User", body = UserSummary),
              (status = 401, body = http_kit::ErrorBody),
              (status = 403, description = "not a platform administrator", body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn reactivate(
    app: web::Data<App>,
    caller: Authenticated,
    path: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    app.platform_admin(caller.user_id).await?;
    let user = app.reactivate(caller.user_id, path.into_inner()).await?;
    Ok(success(
        StatusCode::OK,
        "User reactivated",
        user_summary(user),
    ))
}

/// End every session of an account (the user is told by email). Platform
/// administrators only.
#[utoipa::path(delete, path = "/api/admin/users/{user_id}/sessions", tag = "admin",
    params(("user_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data` is {sessions_revoked}", body = super::users::SessionsRevoked),
              (status = 401, body = http_kit::ErrorBody),
              (status = 403, description = "not a platform administrator", body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn revoke_sessions(
    app: web::Data<App>,
    caller: Authenticated,
    path: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    app.platform_admin(caller.user_id).await?;
    let count = app
        .revoke_all_sessions(path.into_inner(), RevokedBy::Admin, Some(caller.user_id))
        .await?;
    Ok(success(
        StatusCode::OK,
        "Every session of the user ended",
        serde_json::json!({ "sessions_revoked": count }),
    ))
}
