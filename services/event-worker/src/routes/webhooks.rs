//! `/api/tenants/{tenant_id}/webhooks` (tenant admins): list, register (the secret is
//! shown in that answer only), remove.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::{Permission, TenantId};
use events::Topic;
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, FieldErrors, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::app::App;
use crate::store;
use crate::webhooks::{check_target, new_secret};

/// At most this many endpoints per tenant.
pub const MAX_ENDPOINTS: i64 = 20;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries are POSTed: `https://`, a public address.
    pub url: String,
    /// Event types to deliver (from the topic catalog), e.g. `["document.uploaded"]`.
    pub event_types: Vec<String>,
}

/// A webhook endpoint. `secret` appears only in the answer that created it.
pub use crate::store::WebhookBody;

/// The tenant's webhook endpoints (secrets are never shown again).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/webhooks", tag = "webhooks",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: {webhooks: [WebhookBody]}", body = WebhookList),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn list(app: web::Data<App>, member: TenantMember) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageWebhooks)?;
    let mut conn = app.conn().await?;
    let webhooks = store::webhooks(&mut conn, member.tenant_id).await?;
    Ok(success(
        StatusCode::OK,
        "Webhooks retrieved",
        json!({"webhooks": webhooks}),
    ))
}

/// Register an endpoint. The answer holds its `whsec_` signing secret, shown once.
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/webhooks", tag = "webhooks",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = NewWebhook,
    responses((status = 201, description = "`data`: the endpoint with its `secret`", body = WebhookCreated),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody), (status = 409, body = http_kit::ErrorBody)))]
pub async fn create(
    app: web::Data<App>,
    member: TenantMember,
    body: Json<NewWebhook>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageWebhooks)?;
    let NewWebhook { url, event_types } = body.into_inner();
    let mut errors = FieldErrors::new();
    let url = url.trim().to_owned();
    if let Err(reason) = check_target(&url, app.allow_private_targets) {
        errors.add("url", reason);
    }
    let mut types: Vec<String> = Vec::new();
    if event_types.is_empty() {
        errors.add("event_types", "must name at least one event type");
    }
    for t in &event_types {
        if Topic::from_name(t).is_none() {
            errors.add("event_types", format!("unknown event type {t:?}"));
        } else if !types.contains(t) {
            types.push(t.clone());
        }
    }
    errors.into_result()?;
    let secret = new_secret().map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    let tenant: TenantId = member.tenant_id;
    let mut conn = app.conn().await?;
    let existing = store::count_webhooks(&mut conn, tenant).await?;
    if existing >= MAX_ENDPOINTS {
        return Err(ApiError::Conflict(format!(
            "A tenant has at most {MAX_ENDPOINTS} webhook endpoints"
        )));
    }
    let id = Uuid::new_v4();
    let sealed = app
        .keyring
        .encrypt(secret.as_bytes(), &crate::webhooks::secret_aad(id))
        .map_err(|e| ApiError::internal(anyhow::anyhow!("sealing a webhook secret: {e}")))?;
    let created = store::insert_webhook(
        &mut conn,
        store::NewEndpoint {
            id,
            tenant,
            url: &url,
            event_types: &types,
            sealed_secret: &sealed.ciphertext,
            key_id: &sealed.key_id,
            created_by: member.user_id,
        },
    )
    .await?;
    tracing::info!(tenant.id = %tenant, webhook = %created.id, "webhook endpoint registered");
    let mut body = serde_json::to_value(&created).map_err(ApiError::internal)?;
    body["secret"] = json!(secret);
    Ok(success(StatusCode::CREATED, "Webhook created", body))
}

/// Remove an endpoint (its pending deliveries go with it).
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(("tenant_id" = String, Path, format = Uuid), ("webhook_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "Removed", body = WebhookDeleted), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn delete(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageWebhooks)?;
    let (_, id) = path.into_inner();
    let mut conn = app.conn().await?;
    if !store::delete_webhook(&mut conn, member.tenant_id, id).await? {
        return Err(ApiError::NotFound("Webhook"));
    }
    Ok(success(
        StatusCode::OK,
        "Webhook deleted",
        json!({"id": id}),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of the webhook list.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct WebhookList {
    webhooks: Vec<WebhookBody>,
}

/// `data` of a registration: the endpoint and its signing secret, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct WebhookCreated {
    #[serde(flatten)]
    endpoint: WebhookBody,
    /// `whsec_…`: sign-checking key of the Standard Webhooks signatures.
    secret: String,
}

/// `data` of a removal.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct WebhookDeleted {
    #[schema(format = Uuid)]
    id: String,
}
