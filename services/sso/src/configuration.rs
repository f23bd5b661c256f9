//! A tenant's Entra ID configuration: what a valid one is (directory id, client id,
//! secret, redirect URI, metadata, the provisioning lists), and the changes an admin
//! makes to it, each with its audit event in the same transaction and the tenant's
//! row kept in step (its sign-in rule mirrors the configuration). The client secret is
//! write-only: stored sealed, never returned. The routes are `routes/config.rs`.

use std::collections::BTreeMap;

use domain::{Role, TenantId};
use http_kit::identity::TenantMember;
use http_kit::{ApiError, FieldErrors};
use serde::{Deserialize, Deserializer};
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

pub async fn enable_config(
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

/// Creates the tenant's configuration (one per tenant), sealed secret and audit event
/// included; enabled at once (`both`) when asked.
pub async fn create(
    app: &App,
    member: &TenantMember,
    request: NewSsoConfig,
) -> Result<ConfigRow, ApiError> {
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
        .map(|r| check_redirect(app, r, &mut errors));
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
        enable_config(app, tenant, Some(member.user_id), "both", &row).await?
    } else {
        row
    };
    tracing::info!(tenant.id = %tenant, user.id = %member.user_id, "SSO configuration created");
    Ok(row)
}

/// Changes the connection settings; absent fields stay. While the tenant signs in
/// through SSO only, its directory and app registration cannot change (platform
/// administrators excepted): that could lock every member out.
pub async fn update(
    app: &App,
    member: &TenantMember,
    request: SsoConfigUpdate,
) -> Result<ConfigRow, ApiError> {
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
        .map(|r| r.map(|r| check_redirect(app, &r, &mut errors)));
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
    Ok(row)
}

/// Removes the configuration and, with `force`, the identities linked through it (refused
/// while there are some without it); the tenant accepts passwords only from then on.
/// How many identities went.
pub async fn delete(app: &App, member: &TenantMember, force: bool) -> Result<usize, ApiError> {
    let tenant = member.tenant_id;
    app.config(tenant).await?;
    let mut conn = app.conn().await?;
    let identities = store::count_identities(&mut conn, tenant)
        .await
        .map_err(ApiError::internal)?;
    if identities > 0 && !force {
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
    Ok(removed)
}

/// Turns SSO off (the tenant back to passwords only), keeping or removing the linked
/// identities. How many were removed.
pub async fn disable(
    app: &App,
    member: &TenantMember,
    request: DisableRequest,
) -> Result<usize, ApiError> {
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
    Ok(removed)
}

/// Sets who a first SSO sign-in admits and with which role: provisioning on or off,
/// default role, exact allowed domains, allowed groups, the group → role mapping.
pub async fn auto_provisioning(
    app: &App,
    member: &TenantMember,
    request: ProvisioningRequest,
) -> Result<ConfigRow, ApiError> {
    let tenant = member.tenant_id;
    let current = app.config(tenant).await?;
    let mut errors = FieldErrors::new();
    let domains = match request.allowed_email_domains {
        None => current.domains(),
        Some(list) => allow_list(list, "allowed_email_domains", &mut errors, |d| {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            if is_domain(&d) {
                Ok(d)
            } else {
                Err(format!("{d:?} is not a domain name"))
            }
        }),
    };
    if domains.len() > MAX_LIST {
        errors.add(
            "allowed_email_domains",
            format!("at most {MAX_LIST} entries"),
        );
    }
    let groups = match request.allowed_azure_groups {
        None => current.groups(),
        Some(list) => allow_list(list, "allowed_azure_groups", &mut errors, |g| {
            let g = g.trim();
            if g.is_empty() || g.len() > 255 {
                Err("entries must be 1-255 characters".to_owned())
            } else {
                Ok(g.to_owned())
            }
        }),
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
    Ok(row)
}

/// An allow-list as given, each entry normalised by `check` (or refused, naming
/// `field`), duplicates dropped, in order.
fn allow_list(
    list: Vec<String>,
    field: &str,
    errors: &mut FieldErrors,
    check: impl Fn(&str) -> Result<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in list {
        match check(&entry) {
            Ok(entry) if !out.contains(&entry) => out.push(entry),
            Ok(_) => {}
            Err(reason) => {
                errors.add(field, reason);
            }
        }
    }
    out
}
