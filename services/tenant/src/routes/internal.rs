//! Internal API (never routed by the gateway; guarded by the internal service token):
//! a tenant, a membership, a user's active tenants.

use actix_web::{web, HttpResponse};
use clients::tenant::{DatabaseServer, Membership, TenantDatabase, TenantDatabases, UserTenants};
use clients::tenant::{SetMembership, SsoBypass, TenantSso};
use clients::{TenantSummary, UserTenant};
use domain::{Role, TenantId, UserId};
use events::EventEnvelope;
use http_kit::identity::InternalCaller;
use http_kit::{ApiError, Json, RequestId};
use serde_json::json;

use crate::app::{App, TxError};
use crate::store::memberships::MembershipRow;
use crate::store::tenants::TenantRow;
use main_db::DbPool;

pub fn summary(row: TenantRow) -> TenantSummary {
    TenantSummary {
        id: row.tenant_id(),
        status: row.status(),
        sso_default_role: row.sso_default_role.parse().unwrap_or(Role::Viewer),
        sso_domain_whitelist: row.sso_domain_whitelist.into_iter().flatten().collect(),
        name: row.name,
        database_name: row.database_name,
        is_active: row.is_active,
        auth_method: row.auth_method,
        sso_auto_provisioning: row.sso_auto_provisioning,
        created_at: row.created_at,
        updated_at: row.updated_at,
        created_by: row.created_by.map(UserId::from_uuid),
    }
}

fn role_of(membership: &MembershipRow) -> Result<Role, ApiError> {
    membership.role.parse().map_err(|_| {
        ApiError::internal(anyhow::anyhow!(
            "stored role {:?} is not a role",
            membership.role
        ))
    })
}

/// Every tenant database that exists: those of active and deactivated tenants (the
/// services that write events into tenant databases sweep their outboxes).
#[utoipa::path(get, path = "/internal/v1/tenant-databases", tag = "internal",
    responses((status = 200, body = TenantDatabases)))]
pub async fn tenant_databases(
    _caller: InternalCaller,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = app.conn().await?;
    let rows = crate::store::tenants::with_databases(&mut conn, None)
        .await
        .map_err(ApiError::internal)?;
    let servers = server_refs(&mut conn).await?;
    drop(conn);
    // A server that cannot answer leaves its databases out: the sweeps go on with
    // the others.
    let existing = app
        .servers
        .existing(&rows, false)
        .await
        .map_err(|e| ApiError::dependency("Database", e))?;
    let databases = rows
        .into_iter()
        .filter(|r| existing.contains(&r.database_name))
        .filter_map(|r| {
            Some(TenantDatabase {
                tenant_id: r.tenant_id(),
                server: servers.get(&r.server_id)?.clone(),
                database_name: r.database_name,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(TenantDatabases { databases }))
}

/// Every database server as other services reach it, by id.
async fn server_refs(
    conn: &mut diesel_async::AsyncPgConnection,
) -> Result<std::collections::HashMap<uuid::Uuid, DatabaseServer>, ApiError> {
    Ok(crate::store::servers::list(conn)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(|s| {
            (
                s.id,
                DatabaseServer {
                    id: s.id,
                    name: s.name,
                    url_ref: s.url_ref,
                },
            )
        })
        .collect())
}

/// A tenant's database and the server holding it, for the services that connect to
/// it (any status); 404 when there is no such tenant or its database is gone.
#[utoipa::path(get, path = "/internal/v1/tenants/{tenant_id}/database", tag = "internal",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, body = TenantDatabase), (status = 404, body = http_kit::ErrorBody)))]
pub async fn tenant_database(
    _caller: InternalCaller,
    app: web::Data<App>,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = app.conn().await?;
    let row = crate::store::tenants::find(&mut conn, path.into_inner())
        .await
        .map_err(ApiError::internal)?
        .filter(|r| r.database_purged_at.is_none())
        .ok_or(ApiError::NotFound("Tenant database"))?;
    let servers = server_refs(&mut conn).await?;
    drop(conn);
    let server = servers.get(&row.server_id).cloned().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!("tenant {} on an unknown server", row.id))
    })?;
    let manager = app
        .servers
        .of_tenant(&row)
        .await
        .map_err(|e| ApiError::dependency("Database", e))?;
    let database = row.database().map_err(ApiError::internal)?;
    if !manager
        .exists(&database)
        .await
        .map_err(|e| ApiError::dependency("Database", e))?
    {
        return Err(ApiError::NotFound("Tenant database"));
    }
    Ok(HttpResponse::Ok().json(TenantDatabase {
        tenant_id: row.tenant_id(),
        database_name: row.database_name,
        server,
    }))
}

/// A tenant by id (any status).
#[utoipa::path(get, path = "/internal/v1/tenants/{tenant_id}", tag = "internal",
    params(("tenant_id" = String, Path, format = Uuid)),
    responses((status = 200, body = TenantSummary), (status = 404, body = http_kit::ErrorBody)))]
pub async fn tenant(
    _caller: InternalCaller,
    db: web::Data<DbPool>,
    path: web::Path<TenantId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db.get().await?;
    let row = crate::store::tenants::find(&mut conn, path.into_inner())
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("Tenant"))?;
    Ok(HttpResponse::Ok().json(summary(row)))
}

/// A user's membership of an active tenant; 404 when there is none.
#[utoipa::path(get, path = "/internal/v1/tenants/{tenant_id}/members/{user_id}", tag = "internal",
    params(("tenant_id" = String, Path, format = Uuid), ("user_id" = String, Path, format = Uuid)),
    responses((status = 200, body = Membership), (status = 404, body = http_kit::ErrorBody)))]
pub async fn membership(
    _caller: InternalCaller,
    db: web::Data<DbPool>,
    path: web::Path<(TenantId, UserId)>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, user_id) = path.into_inner();
    let mut conn = db.get().await?;
    let tenant = crate::store::tenants::find(&mut conn, tenant_id)
        .await
        .map_err(ApiError::internal)?;
    // Deactivated or unfinished tenants have no usable members.
    let Some(tenant) = tenant.filter(|t| t.is_active && t.status() == domain::TenantStatus::Active)
    else {
        return Err(ApiError::NotFound("Membership"));
    };
    let row = crate::store::memberships::find(&mut conn, tenant_id, user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("Membership"))?;
    Ok(HttpResponse::Ok().json(Membership {
        tenant_id,
        user_id,
        role: role_of(&row)?,
        joined_at: row.joined_at,
        sso_only_directory: crate::app::sso_only_directory(&tenant),
    }))
}

/// The active tenants of a user, with role and join time, most recently joined first.
#[utoipa::path(get, path = "/internal/v1/users/{user_id}/tenants", tag = "internal",
    params(("user_id" = String, Path, format = Uuid)),
    responses((status = 200, body = UserTenants)))]
pub async fn tenants_of_user(
    _caller: InternalCaller,
    db: web::Data<DbPool>,
    path: web::Path<UserId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = db.get().await?;
    let rows = crate::store::memberships::active_tenants_of(&mut conn, path.into_inner())
        .await
        .map_err(ApiError::internal)?;
    let tenants = rows
        .into_iter()
        .map(|(tenant, membership)| {
            Ok(UserTenant {
                role: role_of(&membership)?,
                joined_at: membership.joined_at,
                tenant: summary(tenant),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(HttpResponse::Ok().json(UserTenants { tenants }))
}

/// Add a member or set its role (SSO auto-provisioning). The last admin cannot be
/// demoted; 404 for a tenant that is not active or an unknown user.
#[utoipa::path(put, path = "/internal/v1/tenants/{tenant_id}/members/{user_id}", tag = "internal",
    params(("tenant_id" = String, Path, format = Uuid), ("user_id" = String, Path, format = Uuid)),
    request_body = SetMembership,
    responses((status = 200, body = Membership), (status = 400, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn set_membership(
    _caller: InternalCaller,
    app: web::Data<App>,
    path: web::Path<(TenantId, UserId)>,
    request_id: RequestId,
    body: Json<SetMembership>,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, user_id) = path.into_inner();
    let role = body.role;
    let change = events::MembershipChanged {
        tenant_id,
        user_id,
        action: events::MembershipAction::Set,
        role: Some(role),
        added_by: None,
        invitation_id: None,
    };
    let event = EventEnvelope::of(&change, Some(tenant_id), None)
        .map_err(ApiError::internal)?
        .with_request_id(Some(request_id.0));
    let mut conn = app.conn().await?;
    let row = diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        let tenant = crate::store::tenants::find(tx, tenant_id)
            .await?
            .filter(|t| t.is_active && t.status() == domain::TenantStatus::Active)
            .ok_or(ApiError::NotFound("Tenant"))?;
        let admins = crate::store::memberships::lock_admins(tx, tenant_id).await?;
        if role != Role::Admin && admins == [user_id.into_uuid()] {
            return Err(ApiError::BadRequest(
                "The last admin of a tenant cannot be demoted".into(),
            )
            .into());
        }
        let row = crate::store::memberships::upsert(tx, user_id, tenant_id, role)
            .await
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _,
                ) => TxError::Api(ApiError::NotFound("User")),
                other => TxError::from(other),
            })?;
        events::enqueue(tx, &event)
            .await
            .map_err(ApiError::internal)?;
        crate::invitations::revoke_after_membership_change(
            tx,
            tenant_id,
            user_id,
            crate::invitations::MembershipChange::RoleSet(role),
            None,
        )
        .await?;
        Ok((row, crate::app::sso_only_directory(&tenant)))
    })
    .await?;
    let (row, sso_only_directory) = row;
    app.relay.nudge(events::OutboxDb::Main);
    app.roles_changed(tenant_id, Some(user_id)).await;
    Ok(HttpResponse::Ok().json(Membership {
        tenant_id,
        user_id,
        role: role_of(&row)?,
        joined_at: row.joined_at,
        sso_only_directory,
    }))
}

/// Mirror the tenant's SSO settings (auth method, allowed domains, auto-provisioning,
/// default role) from the sso service, which owns the configuration. 404 for an
/// unknown tenant.
#[utoipa::path(put, path = "/internal/v1/tenants/{tenant_id}/sso", tag = "internal",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = TenantSso,
    responses((status = 200, body = TenantSummary), (status = 400, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn set_sso(
    _caller: InternalCaller,
    db: web::Data<DbPool>,
    app: web::Data<App>,
    path: web::Path<TenantId>,
    body: Json<TenantSso>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    if !["local", "sso", "both"].contains(&body.auth_method.as_str()) {
        return Err(ApiError::validation(
            "auth_method",
            "must be one of local, sso, both",
        ));
    }
    let domain_ok = |d: &String| {
        !d.is_empty()
            && d.len() <= 253
            && d.contains('.')
            && d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    };
    if body.sso_domain_whitelist.len() > 500 || !body.sso_domain_whitelist.iter().all(domain_ok) {
        return Err(ApiError::validation(
            "sso_domain_whitelist",
            "at most 500 lowercase domain names",
        ));
    }
    let directory_ok = |d: &String| {
        !d.is_empty() && d.len() <= 64 && d.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    };
    if body
        .sso_directory_id
        .as_ref()
        .is_some_and(|d| !directory_ok(d))
    {
        return Err(ApiError::validation(
            "sso_directory_id",
            "must be a directory id (a GUID)",
        ));
    }
    let mut conn = db.get().await?;
    let row = crate::store::tenants::set_sso(
        &mut conn,
        path.into_inner(),
        &crate::store::tenants::SsoMirror {
            auth_method: &body.auth_method,
            domains: &body.sso_domain_whitelist,
            auto_provisioning: body.sso_auto_provisioning,
            default_role: body.sso_default_role.as_str(),
            directory: body.sso_directory_id.as_deref(),
        },
    )
    .await
    .map_err(ApiError::internal)?
    .ok_or(ApiError::NotFound("Tenant"))?;
    // Every member's access follows the tenant's sign-in rule.
    app.roles_changed(TenantId::from(row.id), None).await;
    Ok(HttpResponse::Ok().json(summary(row)))
}

/// Record in the tenant's audit log that a platform administrator entered this
/// SSO-only tenant with a token of another sign-in (the other services' tenant-role
/// extractor calls it). 404 for an unknown tenant.
#[utoipa::path(post, path = "/internal/v1/tenants/{tenant_id}/sso-bypass", tag = "internal",
    params(("tenant_id" = String, Path, format = Uuid)), request_body = SsoBypass,
    responses((status = 200, description = "Recorded"), (status = 404, body = http_kit::ErrorBody)))]
pub async fn sso_bypass(
    _caller: InternalCaller,
    app: web::Data<App>,
    path: web::Path<TenantId>,
    body: Json<SsoBypass>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    let mut conn = app.conn().await?;
    crate::store::tenants::find(&mut conn, tenant)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("Tenant"))?;
    drop(conn);
    crate::app::record_sso_bypass(&app.db, &app.relay, tenant, body.user_id, body.session_id)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"recorded": true})))
}
