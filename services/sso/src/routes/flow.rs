//! The login flow's routes: `GET /api/auth/sso/azure/login/{tenant_id}` (302 to Entra
//! ID), `POST /api/users/me/sso-identities/link/{tenant_id}` (the same, to link the
//! caller's account) and `GET /api/auth/sso/azure/callback` (the tokens, in the body
//! or a return URL's fragment). The work is in `crate::login`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use domain::TenantId;
use http_kit::identity::Authenticated;
use http_kit::{ApiError, ClientIp};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{service, App};
use crate::login::{self, start_login, CallbackQuery, LinkIntent, LINK_RECENT_SIGN_IN_SECS};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    return_url: Option<String>,
    login_hint: Option<String>,
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
    // The throttle first: a malformed request counts too.
    let body: LinkRequest = http_kit::extract::optional_json(&request, &body)?.unwrap_or_default();
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
    let login::Completed {
        tenant,
        issued,
        user,
        return_url,
        removal,
    } = login::complete(&app, &request, query.into_inner()).await?;
    match return_url {
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
