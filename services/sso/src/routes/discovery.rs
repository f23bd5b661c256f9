//! Public helpers of a login page: `POST /api/auth/sso/detect` (which tenants sign in
//! an email's exact domain with SSO) and `GET /api/auth/sso/check-availability/{id}`.

use actix_web::{web, HttpResponse};
use domain::{TenantId, TenantStatus};
use http_kit::{ApiError, Json};
use serde::Deserialize;
use serde_json::json;

use crate::app::{service, App};
use crate::store;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectRequest {
    pub email: String,
}

/// The tenants whose SSO admits this email's exact domain.
#[utoipa::path(post, path = "/api/auth/sso/detect", tag = "sso", request_body = DetectRequest,
    responses((status = 200, description = "{has_sso, tenants: [{tenant_id, tenant_name, provider, login_url}]}", body = Detected),
              (status = 400, body = http_kit::ErrorBody)))]
pub async fn detect(
    app: web::Data<App>,
    request: Json<DetectRequest>,
) -> Result<HttpResponse, ApiError> {
    let email = domain::Email::parse(&request.email)
        .map_err(|e| ApiError::validation("email", e.to_string()))?;
    let domain = email
        .as_str()
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let mut conn = app.conn().await?;
    let configs = store::enabled_for_domain(&mut conn, &domain)
        .await
        .map_err(ApiError::internal)?;
    drop(conn);
    let mut tenants = Vec::new();
    for config in configs {
        let id = TenantId::from_uuid(config.tenant_id);
        let Some(tenant) = app.tenants.tenant(id).await.map_err(service)? else {
            continue;
        };
        if !tenant.is_active
            || tenant.status != TenantStatus::Active
            || tenant.auth_method == "local"
        {
            continue;
        }
        tenants.push(json!({
            "tenant_id": id,
            "tenant_name": tenant.name,
            "provider": "azure_ad",
            "login_url": app.settings.login_url(id),
        }));
    }
    Ok(HttpResponse::Ok().json(json!({"has_sso": !tenants.is_empty(), "tenants": tenants})))
}

/// Whether a tenant offers SSO now.
#[utoipa::path(get, path = "/api/auth/sso/check-availability/{tenant_id}", tag = "sso",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "{available, auth_method, provider, auto_provisioning, sso_login_url}", body = Availability),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn check_availability(
    app: web::Data<App>,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let tenant = app
        .tenants
        .tenant(id)
        .await
        .map_err(service)?
        .filter(|t| t.is_active && t.status == TenantStatus::Active)
        .ok_or(ApiError::NotFound("Tenant"))?;
    let mut conn = app.conn().await?;
    let config = store::config(&mut conn, id)
        .await
        .map_err(ApiError::internal)?;
    let available = config.as_ref().is_some_and(|c| c.is_enabled) && tenant.auth_method != "local";
    Ok(HttpResponse::Ok().json(json!({
        "available": available,
        "auth_method": tenant.auth_method,
        "provider": config.as_ref().map(|_| "azure_ad"),
        "auto_provisioning": config.as_ref().is_some_and(|c| c.auto_provisioning),
        "sso_login_url": available.then(|| app.settings.login_url(id)),
    })))
}

/// A tenant offering SSO to an email's domain.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DetectedTenant {
    #[schema(format = Uuid)]
    tenant_id: String,
    tenant_name: String,
    /// `azure_ad`.
    provider: String,
    login_url: String,
}

/// The flat body of `POST /api/auth/sso/detect`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Detected {
    has_sso: bool,
    tenants: Vec<DetectedTenant>,
}

/// The flat body of `GET /api/auth/sso/check-availability/{tenant_id}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Availability {
    available: bool,
    /// `local`, `sso` or `both`.
    auth_method: String,
    /// `azure_ad` when the tenant has a configuration.
    provider: Option<String>,
    auto_provisioning: bool,
    /// When `available`.
    sso_login_url: Option<String>,
}
