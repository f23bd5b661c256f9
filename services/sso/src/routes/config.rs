//! `/api/tenants/{tenant_id}/sso/…` (admins of the tenant only): the tenant's Entra ID
//! configuration. The client secret is write-only: stored encrypted, never returned.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::{Permission, Role, TenantId};
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, FieldErrors, Json};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::{aad, enqueue, App, TxError};
use crate::store::{self, ConfigChange, ConfigRow, NewConfig, Provisioning};

/// Most bytes of `config_metadata` (as JSON).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most entries of each allow-list and of the group mapping.
pub const MAX_LIST: usize = 500;

/// `null` and absent told apart: `Some(None)` is an explicit `null`.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSsoConfig {
    /// The Entra tenant (directory) id, a GUID.
    #[schema(format = Uuid)]
    pub provider_tenant_id: String,
    /// The app registration's application (client) id.
    #[schema(pattern = "^[A-Za-z0-9._~-]{1,255}$")]
    pub client_id: String,
    /// Only for a confidential client; PKCE is always used.
    pub client_secret: Option<String>,
    /// Defaults to `{SSO_PUBLIC_URL}/api/auth/sso/azure/callback`.
    pub redirect_uri: Option<String>,
    /// Enable at once (auth method `both`).
    pub enable: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub config_metadata: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoConfigUpdate {
    #[schema(format = Uuid)]
    pub provider_tenant_id: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9._~-]{1,255}$")]
    pub client_id: Option<String>,
    /// A new secret; `null` removes it (public client).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Option<String>>,
    /// `null` returns to the default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub redirect_uri: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub config_metadata: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableRequest {
    /// `sso` (SSO only) or `both` (SSO and passwords).
    #[schema(pattern = "^(sso|both)$")]
    pub auth_method: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// Keep the users' linked identities (default true); `false` removes them.
    #[serde(default = "yes")]
    pub keep_azure_identities: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisioningRequest {
    pub enabled: bool,
    pub default_role: Option<Role>,
    pub sync_attributes_on_login: Option<bool>,
    /// Exact email domains (`corp.com` does not admit `evilcorp.com` or `a.corp.com`).
    pub allowed_email_domains: Option<Vec<String>>,
    /// Entra group ids; when not empty, only their members may sign in.
    pub allowed_azure_groups: Option<Vec<String>>,
    /// Entra group id → role; the highest role of the user's groups wins.
    #[schema(value_type = Option<Object>)]
    pub group_role_mapping: Option<BTreeMap<String, Role>>,
}

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

/// An Entra directory (tenant) id: a GUID, lowercased. A domain name is refused: its
/// discovery document names the GUID issuer, which must match exactly.
pub fn check_provider_tenant_id(value: &str) -> Result<String, &'static str> {
    let v = value.trim().to_ascii_lowercase();
    if matches!(v.as_str(), "common" | "organizations" | "consumers") {
        return Err("must be the directory's own id, not a multi-tenant alias");
    }
    if v.len() == 36 && uuid::Uuid::parse_str(&v).is_ok() {
        return Ok(v);
    }
    Err("must be the directory (tenant) id, a GUID")
}

/// A lowercase DNS name with at least two labels.
pub fn is_domain(v: &str) -> bool {
    v.len() <= 253
        && v.split('.').count() >= 2
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn check_client_id(value: &str, errors: &mut FieldErrors) -> String {
    let v = value.trim();
    if v.is_empty()
        || v.len() > 255
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
    {
        errors.add(
            "client_id",
            "must be 1-255 characters of letters, digits, '.', '_', '~' and '-'",
        );
    }
    v.to_owned()
}

fn check_secret(value: &str, errors: &mut FieldErrors) {
    if value.trim().is_empty() || value.len() > 1024 {
        errors.add("client_secret", "must be 1-1024 characters, not blank");
    }
}

fn check_redirect(app: &App, value: &str, errors: &mut FieldErrors) -> String {
    let v = value.trim();
    match url::Url::parse(v) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.fragment().is_none()
                && v.len() <= 2048 =>
        {
            if u.scheme() == "http"
                && app.settings.common.environment == http_kit::config::Environment::Production
            {
                errors.add("redirect_uri", "must be https:// in production");
            }
        }
        _ => {
            errors.add(
                "redirect_uri",
                "must be an absolute http(s) URL without a fragment, at most 2048 characters",
            );
        }
    }
    v.to_owned()
}

fn check_metadata(value: &Value, errors: &mut FieldErrors) {
    if !value.is_object() {
        errors.add("config_metadata", "must be a JSON object");
    } else if value.to_string().len() > MAX_METADATA_BYTES {
        errors.add(
            "config_metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes"),
        );
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
    let request = request.into_inner();
    let mut errors = FieldErrors::new();
    let provider_tenant_id =
        check_provider_tenant_id(&request.provider_tenant_id).unwrap_or_else(|reason| {
            errors.add("provider_tenant_id", reason);
            String::new()
        });
    let client_id = check_client_id(&request.client_id, &mut errors);
    if let Some(secret) = &request.client_secret {
        check_secret(secret, &mut errors);
    }
    let redirect_uri = request
        .redirect_uri
        .as_deref()
        .map(|r| check_redirect(&app, r, &mut errors));
    let metadata = request.config_metadata.unwrap_or_else(|| json!({}));
    check_metadata(&metadata, &mut errors);
    errors.into_result()?;
    let tenant = member.tenant_id;
    let client_secret = match &request.client_secret {
        Some(secret) => Some(
            app.seal(secret, &aad("tenant_sso_configs.client_secret", tenant))
                .await?,
        ),
        None => None,
    };
    let enable = request.enable.unwrap_or(false);
    let event = app.audit_event(
        tenant,
        Some(member.user_id),
        "sso.config.created",
        json!({"provider_tenant_id": provider_tenant_id, "client_id": client_id,
               "confidential": client_secret.is_some()}),
    )?;
    let new = NewConfig {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        provider_tenant_id,
        client_id,
        client_secret,
        redirect_uri,
        is_enabled: false,
        config_metadata: metadata,
    };
    let mut conn = app.conn().await?;
    let row = diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        let row = store::insert_config(tx, new).await?;
        if row.is_some() {
            enqueue(tx, &event).await?;
        }
        Ok(row)
    })
    .await?
    .ok_or_else(|| ApiError::Conflict("The tenant already has an SSO configuration".into()))?;
    drop(conn);
    app.published();
    let row = if enable {
        enable_config(&app, tenant, Some(member.user_id), "both", &row).await?
    } else {
        row
    };
    tracing::info!(tenant.id = %tenant, user.id = %member.user_id, "SSO configuration created");
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
    let request = request.into_inner();
    let mut errors = FieldErrors::new();
    let provider_tenant_id = request.provider_tenant_id.as_deref().map(|p| {
        check_provider_tenant_id(p).unwrap_or_else(|reason| {
            errors.add("provider_tenant_id", reason);
            String::new()
        })
    });
    let client_id = request
        .client_id
        .as_deref()
        .map(|c| check_client_id(c, &mut errors));
    if let Some(Some(secret)) = &request.client_secret {
        check_secret(secret, &mut errors);
    }
    let redirect_uri = request
        .redirect_uri
        .map(|r| r.map(|r| check_redirect(&app, &r, &mut errors)));
    if let Some(metadata) = &request.config_metadata {
        check_metadata(metadata, &mut errors);
    }
    errors.into_result()?;
    let tenant = member.tenant_id;
    // While the tenant signs in through SSO only, its directory and app registration are
    // what lets anyone in: changing them could lock every member out, so the tenant goes
    // back to `both` first (platform administrators excepted).
    let registration_changes = provider_tenant_id.is_some()
        || client_id.is_some()
        || request.client_secret.is_some()
        || redirect_uri.is_some();
    let summary = app
        .tenants
        .tenant(tenant)
        .await
        .map_err(crate::app::service)?
        .ok_or(ApiError::NotFound("Tenant"))?;
    if registration_changes && summary.auth_method == "sso" && !member.claims.platform_admin {
        return Err(ApiError::Conflict(
            "This tenant signs in through SSO only: enable `both` before changing its directory or app registration".into(),
        ));
    }
    let current = app.config(tenant).await?;
    if let Some(new_id) = &provider_tenant_id {
        let mut conn = app.conn().await?;
        let linked = store::count_identities(&mut conn, tenant)
            .await
            .map_err(ApiError::internal)?;
        if *new_id != current.provider_tenant_id && linked > 0 {
            return Err(ApiError::Conflict(format!(
                "{linked} users are linked to the current directory; remove them first \
                 (POST …/config/disable with keep_azure_identities false) to change it"
            )));
        }
    }
    let client_secret = match &request.client_secret {
        None => None,
        Some(None) => Some(None),
        Some(Some(secret)) => Some(Some(
            app.seal(secret, &aad("tenant_sso_configs.client_secret", tenant))
                .await?,
        )),
    };
    let changed: Vec<&str> = [
        ("provider_tenant_id", provider_tenant_id.is_some()),
        ("client_id", client_id.is_some()),
        ("client_secret", client_secret.is_some()),
        ("redirect_uri", redirect_uri.is_some()),
        ("config_metadata", request.config_metadata.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let event = app.audit_event(
        tenant,
        Some(member.user_id),
        "sso.config.updated",
        json!({"fields": changed}),
    )?;
    let change = ConfigChange {
        provider_tenant_id,
        client_id,
        client_secret,
        redirect_uri,
        is_enabled: None,
        config_metadata: request.config_metadata,
    };
    let mut conn = app.conn().await?;
    let row = diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        let row = store::update_config(tx, tenant, change).await?;
        if row.is_some() {
            enqueue(tx, &event).await?;
        }
        Ok(row)
    })
    .await?
    .ok_or(ApiError::NotFound("SSO configuration"))?;
    app.published();
    // The tenant's row mirrors the directory: SSO-only tenants admit its tokens only.
    if row.provider_tenant_id != current.provider_tenant_id {
        app.mirror(tenant, &summary.auth_method, Some(&row)).await?;
    }
    tracing::info!(tenant.id = %tenant, user.id = %member.user_id, "SSO configuration updated");
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
    let tenant = member.tenant_id;
    app.config(tenant).await?;
    let mut conn = app.conn().await?;
    let identities = store::count_identities(&mut conn, tenant)
        .await
        .map_err(ApiError::internal)?;
    if identities > 0 && query.force != Some(true) {
        return Err(ApiError::Conflict(format!(
            "{identities} users are linked to this configuration; delete with ?force=true to remove them too"
        )));
    }
    drop(conn);
    // The tenant first: from now on it accepts passwords only.
    app.mirror(tenant, "local", None).await?;
    let mut conn = app.conn().await?;
    let actor = Some(member.user_id);
    let removed =
        diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
            let removed = store::delete_identities_of_tenant(tx, tenant).await?;
            store::delete_config(tx, tenant).await?;
            let event = app.audit_event(
                tenant,
                actor,
                "sso.config.deleted",
                json!({"deleted_identities": removed}),
            )?;
            enqueue(tx, &event).await?;
            Ok(removed)
        })
        .await?;
    app.published();
    tracing::info!(tenant.id = %tenant, user.id = %member.user_id, identities = removed, "SSO configuration deleted");
    Ok(success(
        StatusCode::OK,
        "SSO configuration deleted",
        json!({"deleted_identities": removed}),
    ))
}

async fn enable_config(
    app: &App,
    tenant: TenantId,
    actor: Option<domain::UserId>,
    auth_method: &str,
    row: &ConfigRow,
) -> Result<ConfigRow, ApiError> {
    app.mirror(tenant, auth_method, Some(row)).await?;
    let event = app.audit_event(
        tenant,
        actor,
        "sso.enabled",
        json!({"auth_method": auth_method}),
    )?;
    let mut conn = app.conn().await?;
    let row = diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        let change = ConfigChange {
            is_enabled: Some(true),
            ..ConfigChange::default()
        };
        let row = store::update_config(tx, tenant, change).await?;
        if row.is_some() {
            enqueue(tx, &event).await?;
        }
        Ok(row)
    })
    .await?
    .ok_or(ApiError::NotFound("SSO configuration"))?;
    app.published();
    Ok(row)
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
    let tenant = member.tenant_id;
    let row = app.config(tenant).await?;
    app.mirror(tenant, "local", Some(&row)).await?;
    let (keep, actor) = (request.keep_azure_identities, Some(member.user_id));
    let mut conn = app.conn().await?;
    let removed =
        diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
            store::update_config(
                tx,
                tenant,
                ConfigChange {
                    is_enabled: Some(false),
                    ..ConfigChange::default()
                },
            )
            .await?;
            let removed = if keep {
                0
            } else {
                store::delete_identities_of_tenant(tx, tenant).await?
            };
            let event = app.audit_event(
                tenant,
                actor,
                "sso.disabled",
                json!({"removed_identities": removed}),
            )?;
            enqueue(tx, &event).await?;
            Ok(removed)
        })
        .await?;
    app.published();
    tracing::info!(tenant.id = %tenant, user.id = %member.user_id, removed, "SSO disabled");
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
    let request = request.into_inner();
    let tenant = member.tenant_id;
    let current = app.config(tenant).await?;
    let mut errors = FieldErrors::new();
    let domains = match request.allowed_email_domains {
        None => current.domains(),
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for d in list {
                let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
                if !is_domain(&d) {
                    errors.add(
                        "allowed_email_domains",
                        format!("{d:?} is not a domain name"),
                    );
                } else if !out.contains(&d) {
                    out.push(d);
                }
            }
            out
        }
    };
    if domains.len() > MAX_LIST {
        errors.add(
            "allowed_email_domains",
            format!("at most {MAX_LIST} entries"),
        );
    }
    let groups = match request.allowed_azure_groups {
        None => current.groups(),
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for g in list {
                let g = g.trim().to_owned();
                if g.is_empty() || g.len() > 255 {
                    errors.add("allowed_azure_groups", "entries must be 1-255 characters");
                } else if !out.contains(&g) {
                    out.push(g);
                }
            }
            out
        }
    };
    if groups.len() > MAX_LIST {
        errors.add(
            "allowed_azure_groups",
            format!("at most {MAX_LIST} entries"),
        );
    }
    let mapping = match request.group_role_mapping {
        None => current.group_role_mapping.clone(),
        Some(map) => {
            if map.len() > MAX_LIST {
                errors.add("group_role_mapping", format!("at most {MAX_LIST} entries"));
            }
            if map.keys().any(|g| g.trim().is_empty() || g.len() > 255) {
                errors.add("group_role_mapping", "group ids must be 1-255 characters");
            }
            serde_json::to_value(map).map_err(ApiError::internal)?
        }
    };
    if request.enabled && domains.is_empty() {
        errors.add(
            "allowed_email_domains",
            "auto-provisioning needs at least one allowed email domain",
        );
    }
    errors.into_result()?;
    let default_role = request
        .default_role
        .map(|r| r.as_str().to_owned())
        .unwrap_or(current.default_role.clone());
    let event = app.audit_event(
        tenant,
        Some(member.user_id),
        "sso.auto_provisioning.updated",
        json!({"enabled": request.enabled, "default_role": default_role,
               "allowed_email_domains": domains, "allowed_azure_groups": groups.len(),
               "group_role_mapping": mapping.as_object().map_or(0, |m| m.len())}),
    )?;
    let provisioning = Provisioning {
        enabled: request.enabled,
        default_role,
        sync_attributes_on_login: request
            .sync_attributes_on_login
            .unwrap_or(current.sync_attributes_on_login),
        allowed_email_domains: domains,
        allowed_azure_groups: groups,
        group_role_mapping: mapping,
    };
    let mut conn = app.conn().await?;
    let row = diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        let row = store::set_provisioning(tx, tenant, provisioning).await?;
        if row.is_some() {
            enqueue(tx, &event).await?;
        }
        Ok(row)
    })
    .await?
    .ok_or(ApiError::NotFound("SSO configuration"))?;
    drop(conn);
    app.published();
    let auth_method = app
        .tenants
        .tenant(tenant)
        .await
        .map_err(crate::app::service)?
        .map(|t| t.auth_method)
        .unwrap_or_else(|| "local".to_owned());
    app.mirror(tenant, &auth_method, Some(&row)).await?;
    tracing::info!(tenant.id = %tenant, user.id = %member.user_id, enabled = row.auto_provisioning, "SSO auto-provisioning updated");
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
