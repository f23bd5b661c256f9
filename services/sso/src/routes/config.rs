//! `/api/tenants/{tenant_id}/sso/…` (admins of the tenant only): the tenant's Entra ID
//! configuration. The client secret is write-only: stored encrypted, never returned.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::{Permission, Role};
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, Json};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::App;
use crate::configuration::{self, enable_config};
pub use crate::configuration::{
    DisableRequest, EnableRequest, NewSsoConfig, ProvisioningRequest, SsoConfigUpdate, MAX_LIST,
    MAX_METADATA_BYTES,
};
use crate::store::{self, ConfigRow};

#[derive(Debug, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    force: Option<bool>,
}

/// A configuration as the API shows it (never the secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SsoConfigBody {
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: Uuid,
    pub provider: String,
    pub provider_tenant_id: String,
    pub client_id: String,
    pub has_client_secret: bool,
    pub redirect_uri: String,
    pub is_enabled: bool,
    pub issuer: String,
    #[schema(value_type = Object)]
    pub config_metadata: Value,
    #[schema(value_type = Object)]
    pub auto_provisioning: Value,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

pub fn provisioning_body(row: &ConfigRow) -> Value {
    json!({
        "enabled": row.auto_provisioning,
        "default_role": row.default_role,
        "sync_attributes_on_login": row.sync_attributes_on_login,
        "allowed_email_domains": row.domains(),
        "allowed_azure_groups": row.groups(),
        "group_role_mapping": row.group_role_mapping,
    })
}

fn body(app: &App, row: &ConfigRow) -> SsoConfigBody {
    SsoConfigBody {
        id: row.id,
        tenant_id: row.tenant_id,
        provider: row.provider.clone(),
        provider_tenant_id: row.provider_tenant_id.clone(),
        client_id: row.client_id.clone(),
        has_client_secret: row.client_secret_encrypted.is_some(),
        redirect_uri: row
            .redirect_uri
            .clone()
            .unwrap_or_else(|| app.settings.default_redirect_uri()),
        is_enabled: row.is_enabled,
        issuer: app.azure.issuer(&row.provider_tenant_id),
        config_metadata: row.config_metadata.clone(),
        auto_provisioning: provisioning_body(row),
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// The tenant's configuration.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/sso/config", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: SsoConfigBody", body = SsoConfigBody),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn get(app: web::Data<App>, member: TenantMember) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let row = app.config(member.tenant_id).await?;
    Ok(success(
        StatusCode::OK,
        "SSO configuration",
        body(&app, &row),
    ))
}

/// Create the tenant's configuration (one per tenant).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/sso/config", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = NewSsoConfig,
    responses((status = 201, description = "`data`: SsoConfigBody", body = SsoConfigBody),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody), (status = 409, body = http_kit::ErrorBody)))]
pub async fn create(
    app: web::Data<App>,
    member: TenantMember,
    request: Json<NewSsoConfig>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let row = configuration::create(&app, &member, request.into_inner()).await?;
    Ok(success(
        StatusCode::CREATED,
        "SSO configuration created",
        body(&app, &row),
    ))
}

/// Change the connection settings; absent fields stay.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/sso/config", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = SsoConfigUpdate,
    responses((status = 200, description = "`data`: SsoConfigBody", body = SsoConfigBody),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn update(
    app: web::Data<App>,
    member: TenantMember,
    request: Json<SsoConfigUpdate>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let row = configuration::update(&app, &member, request.into_inner()).await?;
    Ok(success(
        StatusCode::OK,
        "SSO configuration updated",
        body(&app, &row),
    ))
}

/// Remove the configuration; `?force=true` is needed while identities exist (they go
/// with it).
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/sso/config", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid), ("force" = Option<bool>, Query)),
    responses((status = 200, description = "`data`: {deleted_identities}", body = SsoConfigDeleted),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody),
              (status = 409, body = http_kit::ErrorBody)))]
pub async fn delete(
    app: web::Data<App>,
    member: TenantMember,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let removed = configuration::delete(&app, &member, query.force == Some(true)).await?;
    Ok(success(
        StatusCode::OK,
        "SSO configuration deleted",
        json!({"deleted_identities": removed}),
    ))
}

/// Turn SSO on: `sso` (SSO only) or `both`.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/sso/config/enable", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = EnableRequest,
    responses((status = 200, description = "`data`: SsoConfigBody", body = SsoConfigBody),
              (status = 400, body = http_kit::ErrorBody),
              (status = 403, description = "forbidden, or sso_sign_in_required: `sso` needs the caller signed in through this tenant's SSO", body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn enable(
    app: web::Data<App>,
    member: TenantMember,
    request: Json<EnableRequest>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let method = request.into_inner().auth_method;
    if method != "sso" && method != "both" {
        return Err(ApiError::validation("auth_method", "must be sso or both"));
    }
    let tenant = member.tenant_id;
    let row = app.config(tenant).await?;
    // SSO only: the admin proves it works by being signed in through it (else a broken
    // configuration would lock every member out, the admin included).
    if method == "sso"
        && !member
            .claims
            .is_sso_of_tenant(tenant.into_uuid(), &row.provider_tenant_id)
        && !member.claims.platform_admin
    {
        return Err(ApiError::forbidden_code(
            "sso_sign_in_required",
            "Sign in through this tenant's single sign-on first: only then can it become the only way in",
        ));
    }
    let row = enable_config(&app, tenant, Some(member.user_id), &method, &row).await?;
    tracing::info!(tenant.id = %tenant, user.id = %member.user_id, auth_method = %method, "SSO enabled");
    let mut data = serde_json::to_value(body(&app, &row)).map_err(ApiError::internal)?;
    data["auth_method"] = json!(method);
    Ok(success(StatusCode::OK, "SSO enabled", data))
}

/// Turn SSO off (passwords only); identities are kept unless asked otherwise.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/sso/config/disable", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = DisableRequest,
    responses((status = 200, description = "`data`: {is_enabled, auth_method, removed_identities}", body = SsoDisabled),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn disable(
    app: web::Data<App>,
    member: TenantMember,
    request: Json<DisableRequest>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let removed = configuration::disable(&app, &member, request.into_inner()).await?;
    Ok(success(
        StatusCode::OK,
        "SSO disabled",
        json!({"is_enabled": false, "auth_method": "local", "removed_identities": removed}),
    ))
}

/// Fetch the tenant's discovery document and keys now (with the provider timeout).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/sso/config/validate", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: {valid, issuer, endpoints… or error}"),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn validate(app: web::Data<App>, member: TenantMember) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let row = app.config(member.tenant_id).await?;
    let issuer = app.azure.issuer(&row.provider_tenant_id);
    let data = match app.azure.refresh_metadata(&row.provider_tenant_id).await {
        Ok(metadata) => json!({
            "valid": true,
            "issuer": metadata.issuer().as_str(),
            "authorization_endpoint": metadata.authorization_endpoint().as_str(),
            "token_endpoint": metadata.token_endpoint().map(|t| t.as_str()),
            "jwks_uri": metadata.jwks_uri().as_str(),
            "signing_keys": metadata.jwks().keys().len(),
        }),
        Err(e) => {
            let reason = match &e {
                crate::azure::AzureError::Unavailable(_) => "the discovery document could not be fetched",
                _ => "the discovery document is not acceptable (its issuer must be exactly the tenant's)",
            };
            tracing::info!(tenant.id = %member.tenant_id, error = %e, "SSO configuration did not validate");
            json!({"valid": false, "issuer": issuer, "error": reason})
        }
    };
    Ok(success(StatusCode::OK, "SSO configuration checked", data))
}

/// Persist the auto-provisioning settings; absent optional fields stay.
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/sso/config/auto-provisioning", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = ProvisioningRequest,
    responses((status = 200, description = "`data`: the auto-provisioning settings", body = ProvisioningBody),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn auto_provisioning(
    app: web::Data<App>,
    member: TenantMember,
    request: Json<ProvisioningRequest>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let row = configuration::auto_provisioning(&app, &member, request.into_inner()).await?;
    Ok(success(
        StatusCode::OK,
        "Auto-provisioning updated",
        provisioning_body(&row),
    ))
}

/// Figures about the tenant's SSO users.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/sso/statistics", tag = "sso-config",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: statistics", body = SsoStatistics),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn statistics(
    app: web::Data<App>,
    member: TenantMember,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageSso)?;
    let tenant = member.tenant_id;
    let row = app.config(tenant).await?;
    let window = chrono::Duration::from_std(app.settings.refresh_window)
        .unwrap_or_else(|_| chrono::Duration::minutes(30));
    let mut conn = app.conn().await?;
    let s = store::statistics(&mut conn, tenant, window)
        .await
        .map_err(ApiError::internal)?;
    Ok(success(
        StatusCode::OK,
        "SSO statistics",
        json!({
            "is_enabled": row.is_enabled,
            "auto_provisioning": row.auto_provisioning,
            "total_identities": s.total,
            "active_identities": s.total - s.needs_reauth,
            "needs_reauth": s.needs_reauth,
            "with_stored_tokens": s.with_tokens,
            "tokens_expiring_soon": s.expiring_within,
            "last_login": s.last_login.as_ref().map(http_kit::time::format),
        }),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of the configuration's deletion.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SsoConfigDeleted {
    /// Linked directory identities removed with it.
    deleted_identities: i64,
}

/// `data` of disabling SSO.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SsoDisabled {
    is_enabled: bool,
    /// `local`: passwords only.
    auth_method: String,
    /// Linked directory identities removed (none when they were kept).
    removed_identities: i64,
}

/// `data` of the SSO statistics.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SsoStatistics {
    is_enabled: bool,
    auto_provisioning: bool,
    total_identities: i64,
    active_identities: i64,
    needs_reauth: i64,
    with_stored_tokens: i64,
    tokens_expiring_soon: i64,
    #[schema(format = DateTime)]
    last_login: Option<String>,
}

/// `data` of the auto-provisioning settings (what `provisioning_body` builds).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ProvisioningBody {
    enabled: bool,
    default_role: Role,
    sync_attributes_on_login: bool,
    allowed_email_domains: Vec<String>,
    allowed_azure_groups: Vec<String>,
    /// Directory group id → role.
    #[schema(value_type = Object)]
    group_role_mapping: Value,
}
