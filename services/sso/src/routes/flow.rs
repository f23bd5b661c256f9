//! The login flow: `GET /api/auth/sso/azure/login/{tenant_id}` (302 to Entra ID with
//! state, nonce and PKCE S256) and `GET /api/auth/sso/azure/callback` (state consumed
//! once, code exchanged, ID token validated, identity found or provisioned, platform
//! tokens issued).

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{Role, TenantId, TenantStatus, UserId};
use http_kit::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::{provider, service, SsoApp};
use crate::store::{self, ConfigRow, NewIdentity};

const STATE_KIND: &str = "sso-state";

/// What the login keeps in Redis until the callback (single use).
#[derive(Serialize, Deserialize)]
struct LoginState {
    tenant_id: TenantId,
    config_id: Uuid,
    nonce: String,
    pkce_verifier: String,
    redirect_uri: String,
    return_url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    return_url: Option<String>,
    login_hint: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A `return_url` on one of the allowed origins, without a fragment.
fn check_return_url(app: &SsoApp, url: &str) -> Result<String, ApiError> {
    let refuse = || {
        ApiError::validation(
            "return_url",
            "must be an absolute URL on an allowed front-end origin, without a fragment",
        )
    };
    if url.len() > 2048 {
        return Err(refuse());
    }
    let parsed = url::Url::parse(url).map_err(|_| refuse())?;
    if parsed.fragment().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse());
    }
    let origin = crate::settings::origin_of(url).ok_or_else(refuse)?;
    if app.settings.allowed_return_origins.contains(&origin) {
        Ok(parsed.to_string())
    } else {
        Err(refuse())
    }
}

/// The tenant's enabled configuration, for an active tenant; 404 otherwise.
async fn enabled_config(app: &SsoApp, tenant: TenantId) -> Result<ConfigRow, ApiError> {
    let config = app.config(tenant).await?;
    if !config.is_enabled {
        return Err(ApiError::NotFound("SSO configuration"));
    }
    let summary = app.tenants.tenant(tenant).await.map_err(service)?;
    if !summary.is_some_and(|t| t.is_active && t.status == TenantStatus::Active) {
        return Err(ApiError::NotFound("Tenant"));
    }
    Ok(config)
}

/// Start a login: 302 to the tenant's Entra ID authorize endpoint.
#[utoipa::path(get, path = "/api/auth/sso/azure/login/{tenant_id}", tag = "sso",
    params(("tenant_id" = String, Path, format = Uuid),
           ("return_url" = Option<String>, Query, description = "Where the tokens go (URL fragment); an allowed origin only"),
           ("login_hint" = Option<String>, Query)),
    responses((status = 302, description = "To the identity provider"),
              (status = 400, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody),
              (status = 503, body = http_kit::ErrorBody)))]
pub async fn login(
    app: web::Data<SsoApp>,
    path: web::Path<TenantId>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let query = query.into_inner();
    let return_url = match query.return_url.as_deref().filter(|r| !r.is_empty()) {
        Some(url) => Some(check_return_url(&app, url)?),
        None => None,
    };
    let login_hint = query.login_hint.filter(|h| !h.trim().is_empty());
    if login_hint.as_ref().is_some_and(|h| h.len() > 255) {
        return Err(ApiError::validation(
            "login_hint",
            "must be at most 255 characters",
        ));
    }
    let config = enabled_config(&app, tenant).await?;
    let registration = app.registration(&config).await?;
    let (state, nonce) = (random_token()?, random_token()?);
    let authorization = app
        .azure
        .authorize(&registration, &state, &nonce, login_hint.as_deref())
        .await
        .map_err(provider)?;
    let kept = LoginState {
        tenant_id: tenant,
        config_id: config.id,
        nonce,
        pkce_verifier: authorization.pkce_verifier,
        redirect_uri: registration.redirect_uri,
        return_url,
    };
    let value = serde_json::to_string(&kept).map_err(ApiError::internal)?;
    let stored = app
        .one_time
        .put(STATE_KIND, &state, &value, app.settings.state_ttl)
        .await
        .map_err(|e| ApiError::dependency("Redis", e))?;
    if !stored {
        return Err(ApiError::internal(anyhow::anyhow!("login state collided")));
    }
    tracing::info!(tenant.id = %tenant, "SSO login started");
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, authorization.url.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// The highest role the user's groups map to, if any maps.
fn mapped_role(config: &ConfigRow, groups: &[String]) -> Option<Role> {
    let mapping = config.group_role_mapping.as_object()?;
    groups
        .iter()
        .filter_map(|g| {
            mapping
                .get(g)
                .and_then(|r| r.as_str())
                .and_then(|r| r.parse::<Role>().ok())
        })
        .max_by_key(|r| match r {
            Role::Admin => 3,
            Role::User => 2,
            Role::Viewer => 1,
        })
}

/// The email's domain when it is exactly one of the allowed ones.
fn domain_allowed(config: &ConfigRow, email: &str) -> bool {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim().to_ascii_lowercase();
    config.domains().contains(&domain)
}

/// Finish a login: the tokens in the body, or in the fragment of the allowed
/// `return_url` kept at login.
#[utoipa::path(get, path = "/api/auth/sso/azure/callback", tag = "sso",
    params(("code" = Option<String>, Query), ("state" = Option<String>, Query), ("error" = Option<String>, Query)),
    responses((status = 200, description = "{access_token, refresh_token, token_type, expires_in, user, tenant_id, auth_method: \"sso\"}"),
              (status = 302, description = "To the return_url, tokens in the fragment"),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody),
              (status = 503, body = http_kit::ErrorBody)))]
pub async fn callback(
    app: web::Data<SsoApp>,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let invalid_state = || {
        ApiError::bad_request_code(
            "invalid_state",
            "The login state is missing, unknown, expired or already used; start the login again",
        )
    };
    let state = query
        .state
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or_else(invalid_state)?;
    let kept = app
        .one_time
        .take(STATE_KIND, &state)
        .await
        .map_err(|e| ApiError::dependency("Redis", e))?
        .ok_or_else(invalid_state)?;
    let kept: LoginState = serde_json::from_str(&kept).map_err(ApiError::internal)?;
    let tenant = kept.tenant_id;
    if let Some(error) = query.error {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        tracing::info!(tenant.id = %tenant, azure_error = %code, "SSO login refused by the identity provider");
        return Err(ApiError::bad_request_code(
            "azure_error",
            format!("The identity provider refused the login ({code})"),
        ));
    }
    let code = query
        .code
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| ApiError::validation("code", "is required"))?;
    let config = enabled_config(&app, tenant).await?;
    if config.id != kept.config_id {
        return Err(invalid_state());
    }
    let mut registration = app.registration(&config).await?;
    registration.redirect_uri = kept.redirect_uri.clone();
    let (tokens, claims) = app
        .azure
        .redeem(&registration, &code, &kept.pkce_verifier, &kept.nonce)
        .await
        .map_err(provider)?;
    let azure = claims.additional_claims();
    let tid = azure.tid.clone().unwrap_or_default().to_ascii_lowercase();
    if tid != config.provider_tenant_id {
        tracing::warn!(tenant.id = %tenant, "ID token from another directory refused");
        return Err(ApiError::bad_request_code(
            "invalid_id_token",
            "The ID token comes from another directory",
        ));
    }
    let oid =
        azure.oid.clone().filter(|o| !o.is_empty()).ok_or_else(|| {
            ApiError::bad_request_code("invalid_id_token", "The ID token has no oid")
        })?;
    let email = claims
        .email()
        .map(|e| e.as_str().to_owned())
        .or_else(|| claims.preferred_username().map(|u| u.as_str().to_owned()))
        .map(|e| e.trim().to_ascii_lowercase());
    let display_name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_owned());
    let upn = claims.preferred_username().map(|u| u.as_str().to_owned());

    let mut conn = app.conn().await?;
    let existing = store::identity_by_subject(&mut conn, tenant, &tid, &oid)
        .await
        .map_err(ApiError::internal)?;
    drop(conn);
    // A new identity may only be provisioned when the tenant allows it for this exact,
    // verified domain; checked before anything else is asked of Entra or Graph.
    let new_email = match &existing {
        Some(_) => None,
        None => {
            if !config.auto_provisioning {
                return Err(ApiError::bad_request_code(
                    "provisioning_disabled",
                    "This tenant does not create accounts on first sign-in; ask its administrator",
                ));
            }
            let email = email.clone().ok_or_else(|| {
                ApiError::bad_request_code("invalid_id_token", "The ID token has no email")
            })?;
            if !domain_allowed(&config, &email) {
                return Err(ApiError::bad_request_code(
                    "domain_not_allowed",
                    "The email's domain is not allowed to sign in to this tenant",
                ));
            }
            if azure.email_domain_verified() == Some(false) {
                return Err(ApiError::bad_request_code(
                    "domain_not_verified",
                    "The directory has not verified the email's domain",
                ));
            }
            Some(email)
        }
    };
    let groups = if azure.groups_overage() {
        app.graph
            .member_groups(&tokens.access_token)
            .await
            .map_err(|e| match e {
                crate::graph::GraphError::Unavailable(d) => ApiError::dependency("Microsoft Graph", d),
                other => {
                    tracing::warn!(tenant.id = %tenant, error = %other, "groups overage could not be resolved");
                    ApiError::bad_request_code("azure_error", "The user's groups could not be read")
                }
            })?
    } else {
        azure.groups.clone().unwrap_or_default()
    };
    let allowed_groups = config.groups();
    if !allowed_groups.is_empty() && !groups.iter().any(|g| allowed_groups.contains(g)) {
        return Err(ApiError::bad_request_code(
            "group_not_allowed",
            "The user is in none of the groups allowed to sign in",
        ));
    }
    let from_groups = mapped_role(&config, &groups);
    let default_role: Role = config.default_role.parse().unwrap_or(Role::Viewer);
    let role = from_groups.unwrap_or(default_role);

    let (user_id, identity_id, is_new) = match existing {
        Some(identity) => {
            let user = UserId::from_uuid(identity.user_id);
            let membership = app
                .tenants
                .membership(tenant, user)
                .await
                .map_err(service)?;
            match membership {
                Some(m) => {
                    if config.sync_attributes_on_login && from_groups.is_some_and(|r| r != m.role) {
                        if let Err(e) = app.tenants.set_membership(tenant, user, role).await {
                            tracing::warn!(tenant.id = %tenant, user.id = %user, error = %e, "role from groups not applied");
                        }
                    }
                }
                None if config.auto_provisioning => {
                    app.tenants
                        .set_membership(tenant, user, role)
                        .await
                        .map_err(service)?
                        .ok_or(ApiError::NotFound("Tenant"))?;
                }
                None => {
                    return Err(ApiError::Forbidden(
                        "The user is no longer a member of this tenant".into(),
                    ))
                }
            }
            (user, identity.id, false)
        }
        None => {
            let email =
                new_email.ok_or_else(|| ApiError::internal(anyhow::anyhow!("checked above")))?;
            let (first, last) = split_name(display_name.as_deref());
            let (user, created) = app
                .auth
                .resolve_named(&email, first.as_deref(), last.as_deref())
                .await
                .map_err(service)?;
            app.tenants
                .set_membership(tenant, user.id, role)
                .await
                .map_err(service)?
                .ok_or(ApiError::NotFound("Tenant"))?;
            tracing::info!(tenant.id = %tenant, user.id = %user.id, created, role = %role, "SSO user provisioned");
            (user.id, Uuid::new_v4(), true)
        }
    };

    let sealed = app.seal_tokens(identity_id, &tokens).await?;
    let mut conn = app.conn().await?;
    if !is_new {
        store::record_login(&mut conn, identity_id, upn, display_name, sealed)
            .await
            .map_err(ApiError::internal)?;
    } else {
        let inserted = store::insert_identity(
            &mut conn,
            NewIdentity {
                id: identity_id,
                user_id,
                tenant_id: tenant,
                azure_tenant_id: tid.clone(),
                azure_object_id: oid.clone(),
                azure_upn: upn,
                azure_display_name: display_name,
                tokens: sealed,
            },
        )
        .await
        .map_err(ApiError::internal)?;
        if inserted.is_none() {
            // A concurrent login of the same identity won the insert: fine. A user linked
            // to another Entra identity of this tenant: refused.
            let same = store::identity_by_subject(&mut conn, tenant, &tid, &oid)
                .await
                .map_err(ApiError::internal)?;
            if same.is_none_or(|s| s.user_id != user_id.into_uuid()) {
                return Err(ApiError::Conflict(
                    "This account is already linked to another Entra identity in this tenant"
                        .into(),
                ));
            }
        }
    }
    drop(conn);

    let issued = app.auth.issue_tokens(user_id).await.map_err(|e| match e {
        clients::ClientError::Status { status: 403, .. } => ApiError::AccountInactive,
        other => service(other),
    })?;
    let user = app
        .auth
        .users(&[user_id])
        .await
        .map_err(service)?
        .into_iter()
        .next()
        .ok_or(ApiError::NotFound("User"))?;
    tracing::info!(tenant.id = %tenant, user.id = %user_id, "SSO login completed");
    match kept.return_url {
        Some(return_url) => {
            let fragment = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("access_token", &issued.access_token)
                .append_pair("refresh_token", &issued.refresh_token)
                .append_pair("token_type", "Bearer")
                .append_pair("expires_in", &issued.expires_in.to_string())
                .append_pair("tenant_id", &tenant.to_string())
                .append_pair("auth_method", "sso")
                .finish();
            Ok(HttpResponse::Found()
                .insert_header((header::LOCATION, format!("{return_url}#{fragment}")))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::REFERRER_POLICY, "no-referrer"))
                .finish())
        }
        None => Ok(HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({
                "message": "Login successful",
                "access_token": issued.access_token,
                "refresh_token": issued.refresh_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "user": user,
                "tenant_id": tenant,
                "auth_method": "sso",
            }))),
    }
}

/// "Ada Lovelace" → (Ada, Lovelace); one word → (word, None).
fn split_name(name: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return (None, None);
    };
    match name.split_once(' ') {
        Some((first, last)) => (
            Some(first.chars().take(100).collect()),
            Some(last.trim().chars().take(100).collect()),
        ),
        None => (Some(name.chars().take(100).collect()), None),
    }
}
