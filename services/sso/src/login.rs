//! An SSO login with a tenant's Entra ID directory, start to finish: the state kept
//! once in Redis between the two legs (nonce, PKCE verifier, the browser-binding
//! cookie, a profile's link intent), the authorization URL, and the callback's work
//! (state consumed, code redeemed, ID token checked, the identity found, linked or
//! provisioned (`crate::provisioning`), the login recorded, platform tokens issued);
//! and signing out. The routes (`routes/flow.rs`, `routes/session.rs`) only read the
//! request and shape the answer.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clients::auth::{IssuedTokens, UserSummary};
use domain::{TenantId, TenantStatus, UserId};
use http_kit::{ApiError, ClientIp, UserAgent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::app::{enqueue, provider, service, App, TxError};
use crate::azure::AzureTokens;
use crate::provisioning;
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
pub struct LinkIntent {
    pub user: UserId,
    pub session: Option<Uuid>,
    pub jti: Uuid,
    pub issued_at: i64,
}

/// How recently a user must have signed in to link a directory account: a token stolen
/// later cannot attach its thief's directory account to the victim's.
pub const LINK_RECENT_SIGN_IN_SECS: i64 = 600;

/// Where the browser-binding cookie is sent.
const COOKIE_PATH: &str = "/api/auth/sso/azure";

/// The browser-binding cookie of one login (one per login, so parallel logins work).
fn cookie_name(state: &str) -> String {
    format!("sso_{}", state.get(..16).unwrap_or(state))
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
pub struct Started {
    pub authorization_url: String,
    pub cookie: Cookie<'static>,
}

/// Starts a login (or a link, for `link`): state, nonce and PKCE verifier kept once
/// in Redis, and the browser-binding cookie.
pub async fn start_login(
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

/// The callback's query: the code (or Entra's error) and the state.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// A login completed: the platform tokens, whose they are, and where they go.
pub struct Completed {
    pub tenant: TenantId,
    pub issued: IssuedTokens,
    pub user: UserSummary,
    /// The allowed front-end URL kept at login (tokens in its fragment), if any.
    pub return_url: Option<String>,
    /// Clears the browser-binding cookie.
    pub removal: Cookie<'static>,
}

/// The callback's work, from the state to the issued tokens. The order of the checks
/// is part of the contract: nothing is asked of Graph or the platform for someone the
/// tenant would not admit.
pub async fn complete(
    app: &App,
    request: &HttpRequest,
    query: CallbackQuery,
) -> Result<Completed, ApiError> {
    let Taken {
        kept,
        code,
        removal,
    } = take_state(app, request, query).await?;
    let tenant = kept.tenant_id;
    let (config, summary) = enabled_config(app, tenant).await?;
    if config.id != kept.config_id {
        return Err(invalid_state());
    }
    let signed_in = redeem(app, &config, &kept, &code).await?;
    let mut conn = app.conn().await?;
    let existing = store::identity_by_subject(&mut conn, tenant, &signed_in.tid, &signed_in.oid)
        .await
        .map_err(ApiError::internal)?;
    drop(conn);
    // Admitting someone who is not (or no longer) a member needs provisioning on, an
    // email of an exact allowed domain, and a directory that asserts it verified that
    // domain (`xms_edov: true`; absent counts as not verified); checked before anything
    // else is asked of Entra, Graph or the platform.
    let admit =
        || provisioning::admission(&config, signed_in.email.clone(), signed_in.domain_verified);
    let link_user = link_requester(app, kept.link.as_ref()).await?;
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
    let groups = allowed_groups(app, &config, tenant, &signed_in).await?;
    let from_groups = provisioning::mapped_role(&config, &groups);

    let known = matches!(owner, Owner::Linked(_));
    let resolved = match owner {
        Owner::Linked(identity) => Resolved {
            user_id: UserId::from_uuid(identity.user_id),
            identity_id: identity.id,
            user: None,
            linked_to_existing: false,
        },
        Owner::Linking(user_id) => link_requested(app, tenant, &signed_in, user_id).await?,
        Owner::ByEmail(email) => link_by_email(app, tenant, &signed_in, &email).await?,
    };
    let user_id = resolved.user_id;
    provisioning::ensure_membership(app, &config, tenant, user_id, from_groups, admit).await?;
    record_login(app, tenant, &summary.name, &signed_in, known, &resolved).await?;

    let (issued, user) =
        issue(app, request, user_id, tenant, &signed_in.tid, resolved.user).await?;
    tracing::info!(tenant.id = %tenant, user.id = %user_id, "SSO login completed");
    Ok(Completed {
        tenant,
        issued,
        user,
        return_url: kept.return_url,
        removal,
    })
}

/// Who signed in, as the directory's ID token says.
struct SignedIn {
    tokens: AzureTokens,
    /// The directory (`tid`, lower-case), the tenant's configured one.
    tid: String,
    /// The user's object id in that directory.
    oid: String,
    /// The `email` claim, trimmed and lower-case. Only that claim: `preferred_username`
    /// is not an email Entra vouches for.
    email: Option<String>,
    display_name: Option<String>,
    upn: Option<String>,
    /// `xms_edov: true`: the directory verified the email's domain.
    domain_verified: bool,
    /// The token has more groups than it can carry: they are read from Graph.
    groups_overage: bool,
    groups: Vec<String>,
}

/// Redeems the code (with the login's PKCE verifier and nonce) at the tenant's
/// directory and reads the ID token: 400 `invalid_id_token` when it comes from another
/// directory or names no user.
async fn redeem(
    app: &App,
    config: &ConfigRow,
    kept: &LoginState,
    code: &str,
) -> Result<SignedIn, ApiError> {
    let mut registration = app.registration(config).await?;
    registration.redirect_uri = kept.redirect_uri.clone();
    let (tokens, claims) = app
        .azure
        .redeem(&registration, code, &kept.pkce_verifier, &kept.nonce)
        .await
        .map_err(provider)?;
    let azure = claims.additional_claims();
    let tid = azure.tid.clone().unwrap_or_default().to_ascii_lowercase();
    if tid != config.provider_tenant_id {
        tracing::warn!(tenant.id = %kept.tenant_id, "ID token from another directory refused");
        return Err(ApiError::bad_request_code(
            "invalid_id_token",
            "The ID token comes from another directory",
        ));
    }
    let oid =
        azure.oid.clone().filter(|o| !o.is_empty()).ok_or_else(|| {
            ApiError::bad_request_code("invalid_id_token", "The ID token has no oid")
        })?;
    Ok(SignedIn {
        email: claims
            .email()
            .map(|e| e.as_str().trim().to_ascii_lowercase()),
        display_name: claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned()),
        upn: claims.preferred_username().map(|u| u.as_str().to_owned()),
        domain_verified: azure.email_domain_verified() == Some(true),
        groups_overage: azure.groups_overage(),
        groups: azure.groups.clone().unwrap_or_default(),
        tokens,
        tid,
        oid,
    })
}

/// Whom the identity belongs to: its linked user; the signed-in user who asked to link
/// it; or the platform account of its email.
enum Owner {
    Linked(Box<store::IdentityRow>),
    Linking(UserId),
    ByEmail(String),
}

/// The user whose profile asked to link this identity. A link asked by a session that
/// has ended since (signed out, password reset, deactivated) links nothing: 400
/// `invalid_state`.
async fn link_requester(app: &App, link: Option<&LinkIntent>) -> Result<Option<UserId>, ApiError> {
    let Some(link) = link else {
        return Ok(None);
    };
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
    Ok(Some(link.user))
}

/// The user's groups (from Graph when the token has too many to carry); 400
/// `group_not_allowed` when the tenant admits only some groups and the user is in none.
async fn allowed_groups(
    app: &App,
    config: &ConfigRow,
    tenant: TenantId,
    signed_in: &SignedIn,
) -> Result<Vec<String>, ApiError> {
    let groups = if signed_in.groups_overage {
        app.graph
            .member_groups(&signed_in.tokens.access_token)
            .await
            .map_err(|e| match e {
                crate::graph::GraphError::Unavailable(d) => ApiError::dependency("Microsoft Graph", d),
                other => {
                    tracing::warn!(tenant.id = %tenant, error = %other, "groups overage could not be resolved");
                    ApiError::bad_request_code("azure_error", "The user's groups could not be read")
                }
            })?
    } else {
        signed_in.groups.clone()
    };
    let allowed = config.groups();
    if !allowed.is_empty() && !groups.iter().any(|g| allowed.contains(g)) {
        return Err(ApiError::bad_request_code(
            "group_not_allowed",
            "The user is in none of the groups allowed to sign in",
        ));
    }
    Ok(groups)
}

/// Whose the login is, and what it learnt on the way.
struct Resolved {
    user_id: UserId,
    identity_id: Uuid,
    /// The user as auth showed it, when this login resolved it.
    user: Option<UserSummary>,
    /// An existing account a directory identity was linked to now: its owner is told.
    linked_to_existing: bool,
}

/// Links the identity to the signed-in user who asked from their profile, if they are
/// still a member (404 otherwise) and active.
async fn link_requested(
    app: &App,
    tenant: TenantId,
    signed_in: &SignedIn,
    user_id: UserId,
) -> Result<Resolved, ApiError> {
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
    let identity_id = link_identity(app, tenant, signed_in, user.id).await?;
    tracing::info!(tenant.id = %tenant, user.id = %user.id, "SSO identity linked from the profile");
    Ok(Resolved {
        user_id,
        identity_id,
        user: Some(user),
        linked_to_existing: true,
    })
}

/// Links the identity to the platform account of `email`, created if there is none.
async fn link_by_email(
    app: &App,
    tenant: TenantId,
    signed_in: &SignedIn,
    email: &str,
) -> Result<Resolved, ApiError> {
    let (first, last) = split_name(signed_in.display_name.as_deref());
    let (user, created) = app
        .auth
        .resolve_named(
            email,
            first.as_deref(),
            last.as_deref(),
            signed_in.domain_verified,
        )
        .await
        .map_err(|e| match e {
            clients::ClientError::Status { status: 400, .. } => ApiError::bad_request_code(
                "invalid_id_token",
                "The ID token's email or name is not acceptable",
            ),
            other => service(other),
        })?;
    if !created {
        // An account that exists is someone's: it is linked by its email only when its
        // owner proved the mailbox (a verified email) and the directory asserts the
        // domain. Otherwise whoever typed the address at registration would share the
        // account with its real owner.
        if !user.email_verified || !signed_in.domain_verified {
            tracing::warn!(tenant.id = %tenant, user.id = %user.id, "SSO link to an existing account refused: email not verified");
            return Err(ApiError::LinkRequiresVerification);
        }
        // A password chosen before the mailbox was proven goes, with every session,
        // before the identity is linked.
        let removed = app
            .auth
            .secure_for_sso_link(user.id)
            .await
            .map_err(service)?;
        if removed {
            tracing::info!(tenant.id = %tenant, user.id = %user.id, "unproven password removed before linking");
        }
    }
    let identity_id = link_identity(app, tenant, signed_in, user.id).await?;
    tracing::info!(tenant.id = %tenant, user.id = %user.id, created, "SSO identity linked");
    Ok(Resolved {
        user_id: user.id,
        identity_id,
        user: Some(user),
        linked_to_existing: !created,
    })
}

/// Records the login in one transaction: a known identity's fresh tokens, sealed; the
/// owner's notice of a new link to their existing account; the `sso.login` audit
/// event. Then the relay publishes.
async fn record_login(
    app: &App,
    tenant: TenantId,
    tenant_name: &str,
    signed_in: &SignedIn,
    known: bool,
    resolved: &Resolved,
) -> Result<(), ApiError> {
    let event = app.audit_event(
        tenant,
        Some(resolved.user_id),
        "sso.login",
        json!({
            "azure_tenant_id": signed_in.tid,
            "azure_object_id": signed_in.oid,
            "new_identity": !known,
        }),
    )?;
    let notice = match resolved
        .user
        .as_ref()
        .filter(|_| resolved.linked_to_existing)
    {
        Some(user) => Some(
            events::AccountEvent::SsoIdentityLinked {
                user_id: user.id,
                email: user.email.clone(),
                first_name: user.first_name.clone(),
                tenant_id: tenant,
                tenant_name: tenant_name.to_owned(),
                directory_account: signed_in
                    .upn
                    .clone()
                    .or_else(|| signed_in.email.clone())
                    .unwrap_or_else(|| signed_in.oid.clone()),
            }
            .envelope(Some(user.id))
            .map_err(ApiError::internal)?
            .with_request_id(http_kit::request_id::current()),
        ),
        None => None,
    };
    let sealed = if known {
        Some(
            app.seal_tokens(resolved.identity_id, &signed_in.tokens)
                .await?,
        )
    } else {
        None
    };
    let (upn, display_name) = (signed_in.upn.clone(), signed_in.display_name.clone());
    let mut conn = app.conn().await?;
    diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        if let Some(sealed) = sealed {
            store::record_login(tx, resolved.identity_id, upn, display_name, sealed).await?;
        }
        if let Some(notice) = &notice {
            enqueue(tx, notice).await?;
        }
        enqueue(tx, &event).await
    })
    .await?;
    drop(conn);
    app.published();
    Ok(())
}

/// Signs `user` out of `tenant`: the platform session first (auth checks everything
/// before it revokes anything, so a refusal leaves nothing half done), then the stored
/// Azure tokens, cleared with the `sso.logout` audit event. An unknown tenant, or one
/// the user has neither a membership nor an SSO identity in, is a 404 before anything
/// changes; so is a deactivated tenant for a member without an identity (it is gone
/// for them, as on every tenant route; `/api/auth/logout` ends their session). Answers Entra's end-session URL of the user's own directory, if the user
/// signed in there.
pub async fn sign_out(
    app: &App,
    tenant: TenantId,
    user: UserId,
    access: &str,
    refresh_token: Option<&str>,
) -> Result<Option<String>, ApiError> {
    // An unknown tenant, or one the caller has neither a membership nor an SSO
    // identity in, is a 404 before anything changes (as on every tenant route).
    app.tenants
        .tenant(tenant)
        .await
        .map_err(service)?
        .ok_or(ApiError::NotFound("Tenant"))?;
    let mut conn = app.conn().await?;
    let identity = store::identity_of_user(&mut conn, tenant, user)
        .await
        .map_err(ApiError::internal)?;
    drop(conn);
    if identity.is_none()
        && app
            .tenants
            .membership(tenant, user)
            .await
            .map_err(service)?
            .is_none()
    {
        return Err(ApiError::NotFound("Tenant"));
    }
    // The platform session first (auth checks everything before it revokes anything):
    // if that fails, nothing is half done. Auth's refusals are the caller's.
    app.auth
        .logout(access, refresh_token)
        .await
        .map_err(|e| match e {
            clients::ClientError::Status { status: 400, .. } => {
                ApiError::validation("refresh_token", "is not a valid refresh token")
            }
            clients::ClientError::Status { status: 401, .. } => ApiError::Unauthorized,
            other => service(other),
        })?;
    let mut conn = app.conn().await?;
    let logout_url = match &identity {
        Some(identity) => {
            let event = app.audit_event(tenant, Some(user), "sso.logout", json!({}))?;
            diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
                store::clear_tokens(tx, identity.id).await?;
                enqueue(tx, &event).await
            })
            .await?;
            app.published();
            // Entra's end-session endpoint of the caller's own directory only.
            Some(format!(
                "{}/{}/oauth2/v2.0/logout",
                app.settings.authority_url, identity.azure_tenant_id
            ))
        }
        None => None,
    };
    drop(conn);
    Ok(logout_url)
}

/// The login state a callback names, taken once from Redis and checked to belong to
/// this browser; Entra's own refusal answered; the code required.
struct Taken {
    kept: LoginState,
    code: String,
    /// Clears the browser-binding cookie.
    removal: Cookie<'static>,
}

fn invalid_state() -> ApiError {
    ApiError::bad_request_code(
        "invalid_state",
        "The login state is missing, unknown, expired or already used; start the login again",
    )
}

async fn take_state(
    app: &App,
    request: &HttpRequest,
    query: CallbackQuery,
) -> Result<Taken, ApiError> {
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
    Ok(Taken {
        kept,
        code,
        removal,
    })
}

/// Platform tokens for `user_id` in `tenant` from auth (an SSO session of directory
/// `tid`), and the user as auth shows it (`resolved`, when the login already has it).
async fn issue(
    app: &App,
    request: &HttpRequest,
    user_id: UserId,
    tenant: TenantId,
    tid: &str,
    resolved: Option<UserSummary>,
) -> Result<(IssuedTokens, UserSummary), ApiError> {
    let client = clients::SessionClient {
        address: ClientIp::of(request).0,
        user_agent: UserAgent::of(request).0,
    };
    let issued = app
        .auth
        .issue_sso_tokens(user_id, tenant, tid, &client)
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
    Ok((issued, user))
}

/// Stores a new identity of `user` with its sealed Azure tokens; the identity's id. A
/// concurrent login of the same identity that won the insert: its row. The user already
/// linked to another identity in this tenant: 409.
async fn link_identity(
    app: &App,
    tenant: TenantId,
    signed_in: &SignedIn,
    user: UserId,
) -> Result<Uuid, ApiError> {
    let SignedIn {
        tokens,
        tid,
        oid,
        upn,
        display_name,
        ..
    } = signed_in;
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
