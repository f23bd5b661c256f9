//! The caller's linked Entra identities: `GET /api/auth/sso/identities`,
//! `GET /api/users/me/sso-identities`, `DELETE /api/users/me/sso-identities/{tenant_id}`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::TenantId;
use http_kit::identity::Authenticated;
use http_kit::{success, ApiError};
use serde_json::{json, Value};

use crate::app::{enqueue, service, App, TxError};
use crate::store::{self, IdentityRow};

fn rfc3339(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    json!(t.as_ref().map(http_kit::time::format))
}

async fn listed(app: &App, rows: Vec<IdentityRow>) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let tenant = TenantId::from_uuid(row.tenant_id);
        let name = app
            .tenants
            .tenant(tenant)
            .await
            .map_err(service)?
            .map(|t| t.name);
        out.push(json!({
            "id": row.id,
            "tenant_id": tenant,
            "tenant_name": name,
            "provider": "azure_ad",
            "azure_tenant_id": row.azure_tenant_id,
            "azure_object_id": row.azure_object_id,
            "azure_upn": row.azure_upn,
            "azure_display_name": row.azure_display_name,
            "last_sync": rfc3339(row.last_sync),
            "token_expires_at": rfc3339(row.token_expires_at),
            "needs_reauth": row.needs_reauth,
            "has_valid_token": row.has_valid_token(),
            "created_at": rfc3339(Some(row.created_at)),
        }));
    }
    Ok(out)
}

/// The caller's identities (flat body).
#[utoipa::path(get, path = "/api/auth/sso/identities", tag = "sso",
    responses((status = 200, description = "{identities: [...]}", body = IdentityList), (status = 401, body = http_kit::ErrorBody)))]
pub async fn list(app: web::Data<App>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let mut conn = app.conn().await?;
    let rows = store::identities_of_user(&mut conn, caller.user_id)
        .await
        .map_err(ApiError::internal)?;
    drop(conn);
    let identities = listed(&app, rows).await?;
    Ok(HttpResponse::Ok().json(json!({"identities": identities})))
}

/// The caller's identities (success envelope, as `/api/users/me…`).
#[utoipa::path(get, path = "/api/users/me/sso-identities", tag = "sso",
    responses((status = 200, description = "`data`: [identity]", body = Vec<IdentityBody>), (status = 401, body = http_kit::ErrorBody)))]
pub async fn mine(app: web::Data<App>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let mut conn = app.conn().await?;
    let rows = store::identities_of_user(&mut conn, caller.user_id)
        .await
        .map_err(ApiError::internal)?;
    drop(conn);
    let identities = listed(&app, rows).await?;
    Ok(success(StatusCode::OK, "SSO identities", identities))
}

/// Unlink the caller's identity in a tenant (its stored Azure tokens go with it).
#[utoipa::path(delete, path = "/api/users/me/sso-identities/{tenant_id}", tag = "sso",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: {tenant_id, tenant_name, azure_object_id}", body = IdentityRemoved),
              (status = 401, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn unlink(
    app: web::Data<App>,
    caller: Authenticated,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let mut conn = app.conn().await?;
    let row = store::identity_of_user(&mut conn, tenant, caller.user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("SSO identity"))?;
    let event = app.audit_event(
        tenant,
        Some(caller.user_id),
        "sso.identity.unlinked",
        json!({"azure_tenant_id": row.azure_tenant_id, "azure_object_id": row.azure_object_id}),
    )?;
    diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        store::delete_identity(tx, row.id).await?;
        enqueue(tx, &event).await
    })
    .await?;
    drop(conn);
    app.published();
    let name = app
        .tenants
        .tenant(tenant)
        .await
        .map_err(service)?
        .map(|t| t.name);
    tracing::info!(tenant.id = %tenant, user.id = %caller.user_id, "SSO identity unlinked");
    Ok(success(
        StatusCode::OK,
        "SSO identity removed",
        json!({"tenant_id": tenant, "tenant_name": name, "azure_object_id": row.azure_object_id}),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of unlinking an identity.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IdentityRemoved {
    #[schema(format = Uuid)]
    tenant_id: String,
    tenant_name: String,
    azure_object_id: String,
}

/// A linked directory identity (what `listed` builds).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IdentityBody {
    #[schema(format = Uuid)]
    id: String,
    #[schema(format = Uuid)]
    tenant_id: String,
    /// `null` when the tenant is gone.
    tenant_name: Option<String>,
    /// `azure_ad`.
    provider: String,
    azure_tenant_id: String,
    azure_object_id: String,
    azure_upn: Option<String>,
    azure_display_name: Option<String>,
    #[schema(format = DateTime)]
    last_sync: Option<String>,
    #[schema(format = DateTime)]
    token_expires_at: Option<String>,
    needs_reauth: bool,
    has_valid_token: bool,
    #[schema(format = DateTime)]
    created_at: Option<String>,
}

/// The flat body of `GET /api/auth/sso/identities`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct IdentityList {
    identities: Vec<IdentityBody>,
}
