//! `POST /api/auth/sso/azure/refresh` (platform refresh token as Bearer): refreshes the
//! caller's stored Azure tokens, then rotates the platform pair; and
//! `POST /api/auth/sso/azure/logout/{tenant_id}`: clears the stored Azure tokens and
//! revokes the platform tokens.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::{TenantId, UserId};
use http_kit::identity::{bearer_token, Authenticated, TokenType, TokenVerifier};
use http_kit::{ApiError, Json};
use serde::Deserialize;
use serde_json::json;

use crate::app::{service, App};
use crate::refresh::{refresh_identity, Outcome};
use crate::store;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantId,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// The platform refresh token, revoked with its whole session.
    pub refresh_token: Option<String>,
}

fn reauth() -> ApiError {
    ApiError::bad_request_code(
        "reauth_required",
        "The identity provider needs a new sign-in for this tenant",
    )
}

/// Refresh the caller's Azure tokens of a tenant, then the platform tokens.
#[utoipa::path(post, path = "/api/auth/sso/azure/refresh", tag = "sso", request_body = RefreshRequest,
    responses((status = 200, description = "{access_token, refresh_token, token_type, expires_in, azure_token_expires_at}"),
              (status = 400, body = http_kit::ErrorBody), (status = 401, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody), (status = 503, body = http_kit::ErrorBody)))]
pub async fn refresh(
    bearer: http_kit::identity::Bearer,
    app: web::Data<App>,
    verifier: web::Data<TokenVerifier>,
    body: Json<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = bearer.0;
    let claims = verifier.verify(&token, TokenType::Refresh).await?;
    let user = UserId::from_uuid(claims.sub);
    let tenant = body.tenant_id;
    let mut conn = app.conn().await?;
    let identity = store::identity_of_user(&mut conn, tenant, user)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("SSO identity"))?;
    drop(conn);
    if identity.needs_reauth || identity.refresh_token_encrypted.is_none() {
        return Err(reauth());
    }
    if refresh_identity(&app, &identity).await? == Outcome::NeedsReauth {
        return Err(reauth());
    }
    let pair = app.auth.refresh(&token).await.map_err(|e| match e {
        clients::ClientError::Status { status: 401, .. } => ApiError::TokenRevoked,
        clients::ClientError::Status { status: 403, .. } => ApiError::AccountInactive,
        other => service(other),
    })?;
    let mut conn = app.conn().await?;
    let expires = store::identity_of_user(&mut conn, tenant, user)
        .await
        .map_err(ApiError::internal)?
        .and_then(|i| i.token_expires_at);
    tracing::info!(tenant.id = %tenant, user.id = %user, "SSO session refreshed");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "token_type": "Bearer",
            "expires_in": pair.expires_in,
            "azure_token_expires_at": expires.as_ref().map(http_kit::time::format),
        })))
}

/// Sign out: the stored Azure tokens are cleared and the platform tokens revoked.
#[utoipa::path(post, path = "/api/auth/sso/azure/logout/{tenant_id}", tag = "sso",
    params(("tenant_id" = String, Path, format = Uuid)), request_body(content = Option<LogoutRequest>),
    responses((status = 200, description = "{message, logout_url}"), (status = 401, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn logout(
    app: web::Data<App>,
    caller: Authenticated,
    request: HttpRequest,
    path: web::Path<TenantId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    // No body, or `null`, is a logout without a refresh token.
    let body: LogoutRequest =
        http_kit::extract::optional_json(&request, &body)?.unwrap_or_default();
    let access = bearer_token(&request).ok_or(ApiError::Unauthorized)?;
    if let Some(refresh) = &body.refresh_token {
        if refresh.trim().is_empty() || refresh.len() > 4096 {
            return Err(ApiError::validation(
                "refresh_token",
                "is not a valid refresh token",
            ));
        }
    }
    let logout_url = crate::login::sign_out(
        &app,
        tenant,
        caller.user_id,
        &access,
        body.refresh_token.as_deref(),
    )
    .await?;
    tracing::info!(tenant.id = %tenant, user.id = %caller.user_id, "SSO logout");
    Ok(HttpResponse::Ok().json(json!({
        "message": "Logged out successfully",
        "logout_url": logout_url,
    })))
}
