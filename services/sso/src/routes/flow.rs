//! The login flow: `GET /api/auth/sso/azure/login/{tenant_id}` (302 to Entra ID with
//! state, nonce and PKCE S256) and `GET /api/auth/sso/azure/callback` (state consumed
//! once, code exchanged, ID token validated, identity found or provisioned, platform
//! tokens issued).

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use domain::{Role, TenantId, TenantStatus, UserId};
use http_kit::identity::Authenticated;
use http_kit::{ApiError, ClientIp, UserAgent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::app::{enqueue, provider, service, App, TxError};
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
    /// The value of the cookie set on the browser that started the login: the callback
    /// must come from that browser (login CSRF).
    browser: String,
    /// A signed-in user linking their directory account from their profile: the
    /// callback links the identity to this account, whatever its email, if the
    /// session that asked is still live.
    #[serde(default)]
    link: Option<LinkIntent>,
}

/// Who asked to link, and with which token (checked again at the callback).
#[derive(Serialize, Deserialize)]
struct LinkIntent {
    user: UserId,
    session: Option<Uuid>,
    jti: Uuid,
    issued_at: i64,
}

/// How recently a user must have signed in to link a directory account: a token stolen
/// later cannot attach its thief's directory account to the victim's.
const LINK_RECENT_SIGN_IN_SECS: i64 = 600;

/// Where the browser-binding cookie is sent.
const COOKIE_PATH: &str = "/api/auth/sso/azure";

/// The browser-binding cookie of one login (one per login, so parallel logins work).
fn cookie_name(state: &str) -> String {
    format!("sso_{}", state.get(..16).unwrap_or(state))
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
fn check_return_url(app: &App, url: &str) -> Result<String, ApiError> {
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
/// The tenant's enabled configuration and the tenant, for an active tenant; 404
/// otherwise.
async fn enabled_config(
    app: &App,
    tenant: TenantId,
) -> Result<(ConfigRow, clients::TenantSummary), ApiError> {
    let config = app.config(tenant).await?;
    if !config.is_enabled {
        return Err(ApiError::NotFound("SSO configuration"));
    }
    let summary = app.tenants.tenant(tenant).await.map_err(service)?;
    match summary {
        Some(t) if t.is_active && t.status == TenantStatus::Active => {
            // The tenant's row says passwords only (a disable half done): no SSO.
            if t.auth_method == "local" {
                return Err(ApiError::NotFound("SSO configuration"));
            }
            Ok((config, t))
        }
        _ => Err(ApiError::NotFound("Tenant")),
    }
}

/// A login started: where the browser goes, and the cookie that binds the callback to it.
struct Started {
    authorization_url: String,
    cookie: Cookie<'static>,
}

/// Starts a login (or a link, for `link`): state, nonce and PKCE verifier kept once
/// in Redis, and the browser-binding cookie.
async fn start_login(
    app: &App,
    tenant: TenantId,
    return_url: Option<&str>,
    login_hint: Option<String>,
    link: Option<LinkIntent>,
) -> Result<Started, ApiError> {
    let return_url = match return_url.filter(|r| !r.is_empty()) {
        Some(url) => Some(check_return_url(app, url)?),
        None => None,
    };
    let login_hint = login_hint.filter(|h| !h.trim().is_empty());
    if login_hint.as_ref().is_some_and(|h| h.len() > 255) {
        return Err(ApiError::validation(
            "login_hint",
            "must be at most 255 characters",
        ));
    }
    let (config, _) = enabled_config(app, tenant).await?;
    let registration = app.registration(&config).await?;
    let (state, nonce, browser) = (random_token()?, random_token()?, random_token()?);
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
        browser: browser.clone(),
        link,
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
    let cookie = Cookie::build(cookie_name(&state), browser)
        .path(COOKIE_PATH)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(app.settings.public_url.starts_with("https://"))
        .max_age(CookieDuration::seconds(
            app.settings.state_ttl.as_secs() as i64
        ))
        .finish();
    Ok(Started {
        authorization_url: authorization.url.to_string(),
        cookie,
    })
}

/// Start a login: 302 to the tenant's Entra ID authorize endpoint.
#[utoipa::path(get, path = "/api/auth/sso/azure/login/{tenant_id}", tag = "sso",
    params(("tenant_id" = String, Path, format = Uuid),
           ("return_url" = Option<String>, Query, description = "Where the tokens go (URL fragment); an allowed origin only"),
           ("login_hint" = Option<String>, Query)),
    responses((status = 302, description = "To the identity provider"),
              (status = 400, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody),
              (status = 503, body = http_kit::ErrorBody)))]
pub async fn login(
    app: web::Data<App>,
    client: ClientIp,
    path: web::Path<TenantId>,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, ApiError> {
    app.throttle_login(&client).await?;
    let tenant = path.into_inner();
    let query = query.into_inner();
    let started = start_login(
        &app,
        tenant,
        query.return_url.as_deref(),
        query.login_hint,
        None,
    )
    .await?;
    tracing::info!(tenant.id = %tenant, "SSO login started");
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, started.authorization_url))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(started.cookie)
        .finish())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// Where the tokens go after the callback (URL fragment); an allowed origin only.
    return_url: Option<String>,
    login_hint: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LinkStarted {
    /// Send the browser here (from the same browser that made this request: the
    /// callback needs the cookie set on this response).
    authorization_url: String,
}

/// Link the caller's account to their directory account in a tenant they belong to:
/// starts an SSO login whose callback links the directory identity to the caller
/// (whatever its email), for an account whose email is not verified yet, or differs.
/// The caller must have signed in within the last 10 minutes; the user is emailed.
#[utoipa::path(post, path = "/api/users/me/sso-identities/link/{tenant_id}", tag = "sso",
    params(("tenant_id" = String, Path, format = Uuid)), request_body(content = Option<LinkRequest>),
    responses((status = 200, description = "`data` is {authorization_url}; a cookie binds the callback to this browser", body = LinkStarted),
              (status = 400, body = http_kit::ErrorBody), (status = 401, body = http_kit::ErrorBody),
              (status = 403, description = "reauthentication_required: sign in again (within 10 minutes) first", body = http_kit::ErrorBody),
              (status = 404, description = "not a member of that tenant, or no SSO there", body = http_kit::ErrorBody),
              (status = 415, body = http_kit::ErrorBody),
              (status = 429, description = "rate_limited", body = http_kit::ErrorBody),
              (status = 503, body = http_kit::ErrorBody)))]
pub async fn link(
    app: web::Data<App>,
    caller: Authenticated,
    request: HttpRequest,
    client: ClientIp,
    path: web::Path<TenantId>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    app.throttle_login(&client).await?;
    let tenant = path.into_inner();
    let body: LinkRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LinkRequest::default()
    } else {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "Content-Type must be application/json".into(),
            ));
        }
        // `null` is the document's "no body" too.
        http_kit::extract::parse_json::<Option<LinkRequest>>(&body)?.unwrap_or_default()
    };
    let signed_in = caller.claims.auth_time.unwrap_or(i64::MIN);
    if chrono::Utc::now().timestamp().saturating_sub(signed_in) > LINK_RECENT_SIGN_IN_SECS {
        return Err(ApiError::forbidden_code(
            "reauthentication_required",
            "Sign in again to link a directory account (a sign-in of the last 10 minutes is needed)",
        ));
    }
    // Only a tenant the user already belongs to (as for every tenant route, 404 else).
    app.tenants
        .membership(tenant, caller.user_id)
        .await
        .map_err(service)?
        .ok_or(ApiError::NotFound("Tenant"))?;
    let link = LinkIntent {
        user: caller.user_id,
        session: caller.claims.fam,
        jti: caller.claims.jti,
        issued_at: caller.claims.iat,
    };
    let started = start_login(
        &app,
        tenant,
        body.return_url.as_deref(),
        body.login_hint,
        Some(link),
    )
    .await?;
    tracing::info!(tenant.id = %tenant, user.id = %caller.user_id, "SSO link started");
    let mut response = http_kit::success(
        actix_web::http::StatusCode::OK,
        "Send the browser to authorization_url to link your directory account",
        LinkStarted {
            authorization_url: started.authorization_url,
        },
    );
    response
        .add_cookie(&started.cookie)
        .map_err(ApiError::internal)?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    Ok(response)
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
              (status = 400, description = "invalid_state, azure_error, invalid_id_token, provisioning_disabled, domain_not_allowed, domain_not_verified (no xms_edov: true), group_not_allowed", body = http_kit::ErrorBody),
              (status = 403, body = http_kit::ErrorBody),
              (status = 409, description = "account_link_requires_verification (an existing account whose email is not verified), or conflict (the directory account is linked to another user)", body = http_kit::ErrorBody),
              (status = 503, body = http_kit::ErrorBody)))]
pub async fn callback(
    app: web::Data<App>,
    request: HttpRequest,
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
    let same_browser = request
        .cookie(&cookie_name(&state))
        .is_some_and(|c| bool::from(c.value().as_bytes().ct_eq(kept.browser.as_bytes())));
    if !same_browser {
        tracing::warn!(tenant.id = %tenant, "SSO callback from another browser than the login's refused");
        return Err(ApiError::bad_request_code(
            "invalid_state",
            "The login was not started in this browser; start the login again",
        ));
    }
    let removal = Cookie::build(cookie_name(&state), "")
        .path(COOKIE_PATH)
        .max_age(CookieDuration::ZERO)
        .finish();
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
    let (config, summary) = enabled_config(&app, tenant).await?;
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
    // Only the `email` claim: `preferred_username` is not an email Entra vouches for.
    let email = claims
        .email()
        .map(|e| e.as_str().trim().to_ascii_lowercase());
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
    let domain_verified = azure.email_domain_verified() == Some(true);
    // Admitting someone who is not (or no longer) a member needs provisioning on, an
    // email of an exact allowed domain, and a directory that asserts it verified that
    // domain (`xms_edov: true`; absent counts as not verified); checked before anything
    // else is asked of Entra, Graph or the platform.
    let admit = || -> Result<String, ApiError> {
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
        if !domain_verified {
            return Err(ApiError::bad_request_code(
                "domain_not_verified",
                "The directory does not assert that it verified the email's domain (the xms_edov claim)",
            ));
        }
        Ok(email)
    };
    // Who the identity belongs to: its linked user; the signed-in user who asked to link
    // it; or the platform account of its email.
    enum Owner {
        Linked(Box<store::IdentityRow>),
        Linking(UserId),
        ByEmail(String),
    }
    // A link asked by a session that has ended since (signed out, password reset,
    // deactivated) links nothing.
    let link_user = match &kept.link {
        Some(link) => {
            let revoked = app
                .revocations
                .is_revoked(cache::TokenRef {
                    jti: &link.jti.to_string(),
                    family: link.session.map(|s| s.to_string()).as_deref(),
                    user: &link.user.to_string(),
                    issued_at: link.issued_at,
                })
                .await
                .map_err(|e| ApiError::dependency("Revocation check", e))?;
            if revoked {
                return Err(ApiError::bad_request_code(
                    "invalid_state",
                    "The session that asked for this link has ended; sign in and start again",
                ));
            }
            Some(link.user)
        }
        None => None,
    };
    let owner = match (existing, link_user) {
        (Some(identity), Some(linking)) if identity.user_id != linking.into_uuid() => {
            return Err(ApiError::Conflict(
                "This directory account is already linked to another platform account".into(),
            ));
        }
        (Some(identity), _) => Owner::Linked(Box::new(identity)),
        (None, Some(linking)) => Owner::Linking(linking),
        (None, None) => Owner::ByEmail(admit()?),
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

    let known = matches!(owner, Owner::Linked(_));
    // The user as auth showed it, when this login resolved it.
    let mut resolved = None;
    // An existing account a directory identity was linked to now: its owner is told.
    let mut linked_to_existing = false;
    let (user_id, identity_id) = match owner {
        Owner::Linked(identity) => (UserId::from_uuid(identity.user_id), identity.id),
        Owner::Linking(user_id) => {
            // Still a member (the link was asked as one): nothing is linked otherwise.
            app.tenants
                .membership(tenant, user_id)
                .await
                .map_err(service)?
                .ok_or(ApiError::NotFound("Tenant"))?;
            let user = app
                .auth
                .users(&[user_id])
                .await
                .map_err(service)?
                .into_iter()
                .next()
                .filter(|u| u.is_active)
                .ok_or(ApiError::AccountInactive)?;
            let identity_id = link_identity(
                &app,
                tenant,
                &tid,
                &oid,
                &upn,
                &display_name,
                &tokens,
                user.id,
            )
            .await?;
            tracing::info!(tenant.id = %tenant, user.id = %user.id, "SSO identity linked from the profile");
            resolved = Some(user);
            linked_to_existing = true;
            (user_id, identity_id)
        }
        Owner::ByEmail(email) => {
            let (first, last) = split_name(display_name.as_deref());
            let (user, created) = app
                .auth
                .resolve_named(&email, first.as_deref(), last.as_deref(), domain_verified)
                .await
                .map_err(|e| match e {
                    clients::ClientError::Status { status: 400, .. } => ApiError::bad_request_code(
                        "invalid_id_token",
                        "The ID token's email or name is not acceptable",
                    ),
                    other => service(other),
                })?;
            if !created {
                // An account that exists is someone's: it is linked by its email only
                // when its owner proved the mailbox (a verified email) and the directory
                // asserts the domain. Otherwise whoever typed the address at
                // registration would share the account with its real owner.
                if !user.email_verified || !domain_verified {
                    tracing::warn!(tenant.id = %tenant, user.id = %user.id, "SSO link to an existing account refused: email not verified");
                    return Err(ApiError::LinkRequiresVerification);
                }
                // A password chosen before the mailbox was proven goes, with every
                // session, before the identity is linked.
                let removed = app
                    .auth
                    .secure_for_sso_link(user.id)
                    .await
                    .map_err(service)?;
                if removed {
                    tracing::info!(tenant.id = %tenant, user.id = %user.id, "unproven password removed before linking");
                }
            }
            let identity_id = link_identity(
                &app,
                tenant,
                &tid,
                &oid,
                &upn,
                &display_name,
                &tokens,
                user.id,
            )
            .await?;
            tracing::info!(tenant.id = %tenant, user.id = %user.id, created, "SSO identity linked");
            let id = user.id;
            resolved = Some(user);
            linked_to_existing = !created;
            (id, identity_id)
        }
    };

    // The membership: created when missing (admission rules), its role changed only when
    // the tenant syncs roles from groups and a group maps one; never demoted otherwise.
    match app
        .tenants
        .membership(tenant, user_id)
        .await
        .map_err(service)?
    {
        Some(m) => {
            if let Some(role) =
                from_groups.filter(|r| config.sync_attributes_on_login && *r != m.role)
            {
                if let Err(e) = app.tenants.set_membership(tenant, user_id, role).await {
                    tracing::warn!(tenant.id = %tenant, user.id = %user_id, error = %e, "role from groups not applied");
                }
            }
        }
        None => {
            admit()?;
            let role = from_groups.unwrap_or(default_role);
            app.tenants
                .set_membership(tenant, user_id, role)
                .await
                .map_err(service)?
                .ok_or(ApiError::NotFound("Tenant"))?;
            tracing::info!(tenant.id = %tenant, user.id = %user_id, role = %role, "SSO member added");
        }
    }
    let event = app.audit_event(
        tenant,
        Some(user_id),
        "sso.login",
        json!({"azure_tenant_id": tid, "azure_object_id": oid, "new_identity": !known}),
    )?;
    let notice = match resolved.as_ref().filter(|_| linked_to_existing) {
        Some(user) => Some(
            events::AccountEvent::SsoIdentityLinked {
                user_id: user.id,
                email: user.email.clone(),
                first_name: user.first_name.clone(),
                tenant_id: tenant,
                tenant_name: summary.name.clone(),
                directory_account: upn
                    .clone()
                    .or_else(|| email.clone())
                    .unwrap_or_else(|| oid.clone()),
            }
            .envelope(Some(user.id))
            .map_err(ApiError::internal)?
            .with_request_id(http_kit::request_id::current()),
        ),
        None => None,
    };
    let sealed = if known {
        Some(app.seal_tokens(identity_id, &tokens).await?)
    } else {
        None
    };
    let mut conn = app.conn().await?;
    diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        if let Some(sealed) = sealed {
            store::record_login(tx, identity_id, upn, display_name, sealed).await?;
        }
        if let Some(notice) = &notice {
            enqueue(tx, notice).await?;
        }
        enqueue(tx, &event).await
    })
    .await?;
    drop(conn);
    app.published();

    let client = clients::SessionClient {
        address: ClientIp::of(&request).0,
        user_agent: UserAgent::of(&request).0,
    };
    let issued = app
        .auth
        .issue_sso_tokens(user_id, tenant, &tid, &client)
        .await
        .map_err(|e| match e {
            clients::ClientError::Status { status: 403, .. } => ApiError::AccountInactive,
            other => service(other),
        })?;
    let user = match resolved {
        Some(user) => user,
        None => app
            .auth
            .users(&[user_id])
            .await
            .map_err(service)?
            .into_iter()
            .next()
            .ok_or(ApiError::NotFound("User"))?,
    };
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
                .cookie(removal)
                .insert_header((header::LOCATION, format!("{return_url}#{fragment}")))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::REFERRER_POLICY, "no-referrer"))
                .finish())
        }
        None => Ok(HttpResponse::Ok()
            .cookie(removal)
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

/// Stores a new identity of `user` with its sealed Azure tokens; the identity's id. A
/// concurrent login of the same identity that won the insert: its row. The user already
/// linked to another identity in this tenant: 409.
#[expect(clippy::too_many_arguments, reason = "the identity's fields, named")]
async fn link_identity(
    app: &App,
    tenant: TenantId,
    tid: &str,
    oid: &str,
    upn: &Option<String>,
    display_name: &Option<String>,
    tokens: &crate::azure::AzureTokens,
    user: UserId,
) -> Result<Uuid, ApiError> {
    let identity_id = Uuid::new_v4();
    let sealed = app.seal_tokens(identity_id, tokens).await?;
    let mut conn = app.conn().await?;
    let inserted = store::insert_identity(
        &mut conn,
        NewIdentity {
            id: identity_id,
            user_id: user,
            tenant_id: tenant,
            azure_tenant_id: tid.to_owned(),
            azure_object_id: oid.to_owned(),
            azure_upn: upn.clone(),
            azure_display_name: display_name.clone(),
            tokens: sealed,
        },
    )
    .await?;
    match inserted {
        Some(row) => Ok(row.id),
        None => store::identity_by_subject(&mut conn, tenant, tid, oid)
            .await
            .map_err(ApiError::internal)?
            .filter(|s| s.user_id == user.into_uuid())
            .map(|same| same.id)
            .ok_or_else(|| {
                ApiError::Conflict(
                    "This account is already linked to another directory account in this tenant"
                        .into(),
                )
            }),
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
