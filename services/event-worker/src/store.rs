//! The SQL of the API this service serves, on the main database: the audit log it
//! writes (`audit`) and the webhook endpoints tenants register (`webhooks`). The
//! consumers' own writes stay beside their handlers (one transaction each with the
//! processed-event record).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{TenantId, UserId};
use main_db::schema::{audit_logs, webhook_endpoints};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// One audit entry.
#[derive(Debug, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = audit_logs)]
pub struct AuditEntry {
    pub id: Uuid,
    /// The event this entry records.
    pub event_id: Uuid,
    /// What happened: the event type, or the action of an `audit.events` record.
    #[serde(rename = "type")]
    pub action: String,
    pub tenant_id: Option<Uuid>,
    /// Who did it (none for system actions).
    pub actor_id: Option<Uuid>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub details: Value,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub occurred_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: DateTime<Utc>,
}

/// Which entries of a tenant's audit log.
pub struct AuditFilter<'a> {
    pub tenant: TenantId,
    /// An exact action (event type).
    pub action: Option<&'a str>,
    /// Occurred at or after.
    pub since: Option<DateTime<Utc>>,
}

/// How many entries match, and one page of them, newest first.
pub async fn audit_page(
    conn: &mut AsyncPgConnection,
    filter: &AuditFilter<'_>,
    offset: i64,
    limit: i64,
) -> QueryResult<(i64, Vec<AuditEntry>)> {
    let filtered = || {
        let mut q = audit_logs::table
            .filter(audit_logs::tenant_id.eq(filter.tenant.into_uuid()))
            .into_boxed();
        if let Some(action) = filter.action {
            q = q.filter(audit_logs::action.eq(action.to_owned()));
        }
        if let Some(since) = filter.since {
            q = q.filter(audit_logs::occurred_at.ge(since));
        }
        q
    };
    let total: i64 = filtered().count().get_result(conn).await?;
    let entries = filtered()
        .select(AuditEntry::as_select())
        .order((audit_logs::occurred_at.desc(), audit_logs::id.desc()))
        .offset(offset)
        .limit(limit)
        .load(conn)
        .await?;
    Ok((total, entries))
}

/// A webhook endpoint as its tenant's admins see it (never its secret).
#[derive(Debug, Serialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = webhook_endpoints)]
pub struct WebhookBody {
    pub id: Uuid,
    pub url: String,
    #[schema(value_type = Vec<String>)]
    #[serde(serialize_with = "flat")]
    pub event_types: Vec<Option<String>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
}

fn flat<S: serde::Serializer>(types: &[Option<String>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(types.iter().flatten())
}

/// A tenant's endpoints, oldest first.
pub async fn webhooks(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
) -> QueryResult<Vec<WebhookBody>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::tenant_id.eq(tenant.into_uuid()))
        .order(webhook_endpoints::created_at.asc())
        .select(WebhookBody::as_select())
        .load(conn)
        .await
}

pub async fn count_webhooks(conn: &mut AsyncPgConnection, tenant: TenantId) -> QueryResult<i64> {
    webhook_endpoints::table
        .filter(webhook_endpoints::tenant_id.eq(tenant.into_uuid()))
        .count()
        .get_result(conn)
        .await
}

/// A new endpoint; its secret sealed by the keyring (`key_id` names the key).
pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub tenant: TenantId,
    pub url: &'a str,
    pub event_types: &'a [String],
    pub sealed_secret: &'a str,
    pub key_id: &'a str,
    pub created_by: UserId,
}

pub async fn insert_webhook(
    conn: &mut AsyncPgConnection,
    endpoint: NewEndpoint<'_>,
) -> QueryResult<WebhookBody> {
    diesel::insert_into(webhook_endpoints::table)
        .values((
            webhook_endpoints::id.eq(endpoint.id),
            webhook_endpoints::tenant_id.eq(endpoint.tenant.into_uuid()),
            webhook_endpoints::url.eq(endpoint.url),
            webhook_endpoints::event_types.eq(endpoint.event_types),
            webhook_endpoints::secret.eq(endpoint.sealed_secret),
            webhook_endpoints::secret_key_id.eq(Some(endpoint.key_id)),
            webhook_endpoints::created_by.eq(endpoint.created_by.into_uuid()),
        ))
        .returning(WebhookBody::as_returning())
        .get_result(conn)
        .await
}

/// Deletes the tenant's endpoint `id`; whether there was one.
pub async fn delete_webhook(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    id: Uuid,
) -> QueryResult<bool> {
    let removed = diesel::delete(
        webhook_endpoints::table
            .filter(webhook_endpoints::id.eq(id))
            .filter(webhook_endpoints::tenant_id.eq(tenant.into_uuid())),
    )
    .execute(conn)
    .await?;
    Ok(removed > 0)
}
