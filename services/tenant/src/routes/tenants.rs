//! `/api/tenants`: the caller's tenants, creating one (provisioning its database), one
//! tenant with its members, renaming, retrying a failed provisioning, deactivating.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use clients::{TenantSummary, UserSummary};
use domain::{Permission, Role, TenantName, TenantStatus, UserId};
use events::EventEnvelope;
use http_kit::identity::{Authenticated, TenantMember};
use http_kit::{success, ApiError, Json, Query, RequestId, ServiceInfo};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{App, TxError};
use crate::provisioning::ProvisionError;
use crate::routes::internal::summary;

/// A tenant with the caller's role in it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantWithRole {
    #[serde(flatten)]
    tenant: TenantSummary,
    role: Role,
}

/// A member: the user, the role and when they joined.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Member {
    #[serde(flatten)]
    user: UserSummary,
    role: Role,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    joined_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantDetail {
    #[serde(flatten)]
    tenant: TenantSummary,
    role: Role,
    members: Vec<Member>,
}

pub async fn health(info: web::Data<ServiceInfo>) -> HttpResponse {
    HttpResponse::Ok()
        .json(json!({"status": "healthy", "service": info.name, "version": info.version}))
}

/// The caller's active tenants, with role and join time, most recently joined first.
#[utoipa::path(get, path = "/api/tenants", tag = "tenants",
    responses((status = 200, description = "`data`: Tenant + role + joined_at", body = Vec<clients::UserTenant>),
              (status = 401, body = http_kit::ErrorBody)))]
pub async fn list(app: web::Data<App>, caller: Authenticated) -> Result<HttpResponse, ApiError> {
    let mut conn = app.conn().await?;
    let rows = crate::store::memberships::active_tenants_of(&mut conn, caller.user_id)
        .await
        .map_err(ApiError::internal)?;
    let tenants: Vec<clients::UserTenant> = rows
        .into_iter()
        .filter_map(|(tenant, m)| {
            let role = m.role.parse().ok()?;
            Some(clients::UserTenant {
                tenant: summary(tenant),
                role,
                joined_at: m.joined_at,
            })
        })
        .collect();
    Ok(success(StatusCode::OK, "Tenants retrieved", tenants))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    name: String,
}

/// Create a tenant; its database exists and is migrated when the answer comes.
#[utoipa::path(post, path = "/api/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, description = "`data`: Tenant + role", body = TenantWithRole),
              (status = 400, body = http_kit::ErrorBody), (status = 403, description = "tenant limit reached", body = http_kit::ErrorBody),
              (status = 503, description = "provisioning failed; the tenant is `failed` and can be retried", body = http_kit::ErrorBody)))]
pub async fn create(
    app: web::Data<App>,
    caller: Authenticated,
    body: Json<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    let name =
        TenantName::parse(&body.name).map_err(|e| ApiError::validation("name", e.to_string()))?;
    match app.provisioner.provision_limited(name, Some(caller.user_id), Some(app.limit_per_user)).await {
        Ok(tenant) => Ok(success(
            StatusCode::CREATED,
            "Tenant created successfully",
            TenantWithRole { tenant: summary(tenant), role: Role::Admin },
        )),
        Err(ProvisionError::Failed { tenant_id, .. }) => Err(ApiError::ServiceUnavailable(format!(
            "Provisioning tenant {tenant_id} failed; it is kept as failed: retry with POST /api/tenants/{tenant_id}/retry"
        ))),
        Err(ProvisionError::LimitReached(limit)) => {
            Err(ApiError::Forbidden(format!("You have reached the limit of {limit} tenants per user (deleted tenants count until they are purged: DELETE with ?purge=true)")))
        }
        Err(ProvisionError::NoCapacity(e)) => {
            tracing::error!(error = %e, "tenant refused: no database server can take it");
            Err(ApiError::ServiceUnavailable(
                "No database server can take a new tenant now; try again later".into(),
            ))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// A tenant, the caller's role and its members (any member).
#[utoipa::path(get, path = "/api/tenants/{id}", tag = "tenants", params(("id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: Tenant + role + members", body = TenantDetail),
              (status = 404, description = "no such tenant, or not a member", body = http_kit::ErrorBody)))]
pub async fn get(app: web::Data<App>, member: TenantMember) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ViewTenant)?;
    let (tenant, memberships) = {
        let mut conn = app.conn().await?;
        let tenant = crate::store::tenants::find(&mut conn, member.tenant_id)
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("Tenant"))?;
        let memberships = crate::store::memberships::members_of(&mut conn, member.tenant_id)
            .await
            .map_err(ApiError::internal)?;
        (tenant, memberships)
    };
    let ids: Vec<UserId> = memberships
        .iter()
        .map(|m| UserId::from_uuid(m.user_id))
        .collect();
    let users = app
        .auth
        .users(&ids)
        .await
        .map_err(|e| ApiError::dependency("Auth service", e))?;
    let members = memberships
        .into_iter()
        .filter_map(|m| {
            let user = users.iter().find(|u| u.id.as_uuid() == &m.user_id)?.clone();
            Some(Member {
                user,
                role: m.role.parse().ok()?,
                joined_at: m.joined_at,
            })
        })
        .collect();
    Ok(success(
        StatusCode::OK,
        "Tenant retrieved",
        TenantDetail {
            tenant: summary(tenant),
            role: member.role,
            members,
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    name: Option<String>,
}

/// Rename a tenant (admin).
#[utoipa::path(put, path = "/api/tenants/{id}", tag = "tenants", params(("id" = String, Path, format = Uuid)),
    request_body = UpdateTenant,
    responses((status = 200, description = "`data`: Tenant", body = TenantSummary), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn update(
    app: web::Data<App>,
    member: TenantMember,
    body: Json<UpdateTenant>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::UpdateTenant)?;
    let mut conn = app.conn().await?;
    let tenant = match &body.name {
        Some(name) => {
            let name =
                TenantName::parse(name).map_err(|e| ApiError::validation("name", e.to_string()))?;
            crate::store::tenants::rename(&mut conn, member.tenant_id, &name)
                .await
                .map_err(ApiError::internal)?
        }
        None => crate::store::tenants::find(&mut conn, member.tenant_id)
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("Tenant"))?,
    };
    Ok(success(
        StatusCode::OK,
        "Tenant updated successfully",
        summary(tenant),
    ))
}

/// Complete a failed provisioning (admin).
#[utoipa::path(post, path = "/api/tenants/{id}/retry", tag = "tenants", params(("id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: Tenant, now active", body = TenantSummary),
              (status = 400, description = "the tenant is not failed", body = http_kit::ErrorBody),
              (status = 403, body = http_kit::ErrorBody), (status = 503, body = http_kit::ErrorBody)))]
pub async fn retry(app: web::Data<App>, member: TenantMember) -> Result<HttpResponse, ApiError> {
    member.require(Permission::RetryProvisioning)?;
    match app.provisioner.retry(member.tenant_id).await {
        Ok(tenant) => Ok(success(
            StatusCode::OK,
            "Tenant provisioned successfully",
            summary(tenant),
        )),
        Err(ProvisionError::NotRetryable(status)) => Err(ApiError::BadRequest(format!(
            "Only a failed provisioning can be retried; the tenant is {status}"
        ))),
        Err(ProvisionError::NotFound) => Err(ApiError::NotFound("Tenant")),
        Err(ProvisionError::Failed { reason, .. }) => {
            tracing::warn!(tenant.id = %member.tenant_id, %reason, "retry failed");
            Err(ApiError::ServiceUnavailable(
                "Provisioning failed again; the tenant stays failed".into(),
            ))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

/// Deactivate a tenant (admin); `?purge=true` also destroys its database (and, through
/// `tenant.deleted` with `hard_delete`, its stored objects). A tenant already
/// deactivated answers 404 to everything else, but its admins can still purge it: its
/// database counts toward their tenant limit until then.
#[utoipa::path(delete, path = "/api/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, format = Uuid), ("purge" = Option<bool>, Query)),
    responses((status = 200, description = "`data`: {tenant_id, hard_delete}", body = TenantDeleted), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody),
              (status = 503, description = "A database unavailable (`service_unavailable`), or, with `purge`, the tenant's database is being moved to another server (`tenant_maintenance`, with `Retry-After`)", body = http_kit::ErrorBody)))]
pub async fn delete(
    app: web::Data<App>,
    caller: Authenticated,
    path: web::Path<domain::TenantId>,
    member: Result<TenantMember, actix_web::Error>,
    query: Query<DeleteQuery>,
    request_id: RequestId,
) -> Result<HttpResponse, actix_web::Error> {
    let purge = query.into_inner().purge;
    let member = match member {
        Ok(member) => member,
        Err(refused) if purge => {
            return purge_deactivated(&app, &caller, path.into_inner(), refused, request_id).await
        }
        Err(refused) => return Err(refused),
    };
    member.require(Permission::DeleteTenant)?;
    let tenant_id = member.tenant_id;
    let mut conn = app.conn().await?;
    if purge {
        purge_database(&app, &mut conn, tenant_id).await?;
    }
    let event = deleted_event(tenant_id, member.user_id, purge, request_id)?;
    let deactivated =
        diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
            let row = crate::store::tenants::deactivate(tx, tenant_id)
                .await
                .map_err(ApiError::internal)?;
            let Some(row) = row else {
                return Err(ApiError::NotFound("Tenant").into());
            };
            events::enqueue(tx, &event)
                .await
                .map_err(ApiError::internal)?;
            Ok(row)
        })
        .await
        .map_err(ApiError::from)?;
    app.relay.nudge(events::OutboxDb::Main);
    app.roles_changed(tenant_id, None).await;
    debug_assert_eq!(deactivated.status(), TenantStatus::Deleted);
    Ok(success(
        StatusCode::OK,
        "Tenant deleted successfully",
        json!({"tenant_id": tenant_id, "hard_delete": purge}),
    ))
}

/// `tenant.deleted` (`hard_delete` when the database goes too).
fn deleted_event(
    tenant_id: domain::TenantId,
    by: UserId,
    hard_delete: bool,
    request_id: RequestId,
) -> Result<EventEnvelope, ApiError> {
    let deleted = events::TenantDeleted {
        tenant_id,
        hard_delete,
    };
    Ok(EventEnvelope::of(&deleted, Some(tenant_id), Some(by))
        .map_err(ApiError::internal)?
        .with_request_id(Some(request_id.0)))
}

/// Drops a tenant's database, first moving the events still in its outbox to the main
/// one. Repeating it after a failure finishes it (the drop is then a no-op). It holds
/// the tenant's database lock throughout (on a connection of its own), so a move's
/// switch waits for it and then finds the tenant purged, or has switched already and
/// the copy on the new server is the one dropped.
async fn purge_database(
    app: &App,
    conn: &mut diesel_async::AsyncPgConnection,
    tenant_id: domain::TenantId,
) -> Result<(), ApiError> {
    let mut lock = app.conn().await?;
    diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *lock, async |held| {
        crate::store::tenants::lock_database(held, tenant_id)
            .await
            .map_err(ApiError::internal)?;
        purge_locked(app, conn, tenant_id)
            .await
            .map_err(TxError::from)
    })
    .await
    .map_err(ApiError::from)
}

async fn purge_locked(
    app: &App,
    conn: &mut diesel_async::AsyncPgConnection,
    tenant_id: domain::TenantId,
) -> Result<(), ApiError> {
    let tenant = crate::store::tenants::find(conn, tenant_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("Tenant"))?;
    if tenant.database_purged_at.is_some() {
        // A purge that ran meanwhile did it.
        return Ok(());
    }
    let database = tenant.database().map_err(ApiError::internal)?;
    // A database being copied is purged once the move is over (the copy would
    // otherwise outlive the purge).
    if crate::store::moves::open_of(conn, tenant_id)
        .await
        .map_err(ApiError::internal)?
        .is_some_and(|m| m.state == crate::store::moves::COPYING)
    {
        return Err(ApiError::TenantMaintenance {
            retry_after_secs: 30,
        });
    }
    let manager = app
        .servers
        .of_tenant(&tenant)
        .await
        .map_err(|e| ApiError::dependency("Database", e))?;
    // Events still in the tenant database's outbox would die with it: they move to
    // the main outbox first (a repeated purge moves nothing twice).
    if manager
        .exists(&database)
        .await
        .map_err(|e| ApiError::dependency("Database", e))?
    {
        let mut tenant_conn = manager
            .connection(&database)
            .await
            .map_err(|e| ApiError::dependency("Database", e))?;
        let moved = events::transfer(&mut tenant_conn, conn)
            .await
            .map_err(|e| match e {
                // A move began meanwhile: its database takes no writes now.
                events::OutboxError::Database(e) if tenant_db::read_only(&e) => {
                    ApiError::TenantMaintenance {
                        retry_after_secs: 30,
                    }
                }
                other => ApiError::internal(other),
            })?;
        drop(tenant_conn);
        if moved > 0 {
            app.relay.nudge(events::OutboxDb::Main);
            tracing::info!(tenant.id = %tenant_id, moved, "outbox events of the purged database moved to the main outbox");
        }
    }
    manager
        .drop_database(&database)
        .await
        .map_err(|e| ApiError::dependency("Database", e))?;
    crate::store::tenants::mark_purged(conn, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(tenant.id = %tenant_id, database = %database, "tenant database purged");
    Ok(())
}

/// `DELETE …?purge=true` of a tenant the membership check refused: allowed when the
/// tenant is deactivated (not purged yet) and the caller was one of its admins; any
/// other refusal stands. A tenant that admits only SSO tokens keeps that rule.
async fn purge_deactivated(
    app: &App,
    caller: &Authenticated,
    tenant_id: domain::TenantId,
    refused: actix_web::Error,
    request_id: RequestId,
) -> Result<HttpResponse, actix_web::Error> {
    let mut conn = app.conn().await?;
    let tenant = crate::store::tenants::find(&mut conn, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    let Some(tenant) = tenant.filter(|t| !t.is_active) else {
        return Err(refused);
    };
    let admin = crate::store::memberships::find(&mut conn, tenant_id, caller.user_id)
        .await
        .map_err(ApiError::internal)?
        .is_some_and(|m| m.role == Role::Admin.as_str());
    if !admin {
        return Err(ApiError::NotFound("Tenant").into());
    }
    if tenant.auth_method == "sso" && !caller.claims.platform_admin {
        return Err(ApiError::SsoRequired.into());
    }
    purge_database(app, &mut conn, tenant_id).await?;
    let event = deleted_event(tenant_id, caller.user_id, true, request_id)?;
    diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        events::enqueue(tx, &event)
            .await
            .map_err(ApiError::internal)?;
        Ok(())
    })
    .await
    .map_err(ApiError::from)?;
    app.relay.nudge(events::OutboxDb::Main);
    tracing::info!(tenant.id = %tenant_id, user.id = %caller.user_id, "deactivated tenant purged");
    Ok(success(
        StatusCode::OK,
        "Tenant deleted successfully",
        json!({"tenant_id": tenant_id, "hard_delete": true}),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of a deletion.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TenantDeleted {
    #[schema(format = Uuid)]
    tenant_id: String,
    /// The database was dropped too (`purge=true`).
    hard_delete: bool,
}
