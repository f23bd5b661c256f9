//! `/api/tenants/{id}/users`: adding members, changing roles, removing members (admin).
//! The last admin can be neither removed nor demoted: the admin rows are locked in the
//! same transaction, so two admins demoting each other at once cannot both succeed.
//! Each change records `membership.changed` in the same transaction; an addition by
//! user id says so (`added_by: user_id`): invitations (`routes::invitations`) are the
//! documented way, this route stays for the clients that used it.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use clients::tenant::Membership;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use domain::{Permission, Role, TenantId, UserId};
use events::{EventEnvelope, MembershipAction, MembershipChanged};
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, Json, RequestId};
use serde::Deserialize;
use serde_json::json;

use crate::app::{App, TxError};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    #[schema(value_type = String, format = Uuid)]
    user_id: UserId,
    role: Role,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    role: Role,
}

fn changed(
    tenant: TenantId,
    actor: UserId,
    user: UserId,
    action: MembershipAction,
    role: Option<Role>,
    request_id: String,
) -> Result<EventEnvelope, ApiError> {
    let change = MembershipChanged {
        tenant_id: tenant,
        user_id: user,
        action,
        role,
        added_by: None,
        invitation_id: None,
    };
    Ok(EventEnvelope::of(&change, Some(tenant), Some(actor))
        .map_err(ApiError::internal)?
        .with_request_id(Some(request_id)))
}

/// How a member was added: `added_by` (and `invitation_id`) of `membership.changed`.
pub(crate) enum AddedBy {
    /// An admin named the user's id (`POST /api/tenants/{id}/users`).
    UserId,
    /// The user accepted this invitation.
    Invitation(uuid::Uuid),
}

/// `membership.changed` of an addition (`action: added`) and how the member came in.
pub(crate) fn added(
    tenant: TenantId,
    actor: UserId,
    user: UserId,
    role: Role,
    request_id: Option<String>,
    by: AddedBy,
) -> Result<EventEnvelope, ApiError> {
    let (added_by, invitation_id) = match by {
        AddedBy::UserId => (events::AddedBy::UserId, None),
        AddedBy::Invitation(id) => (events::AddedBy::Invitation, Some(id)),
    };
    let change = MembershipChanged {
        tenant_id: tenant,
        user_id: user,
        action: MembershipAction::Added,
        role: Some(role),
        added_by: Some(added_by),
        invitation_id,
    };
    Ok(EventEnvelope::of(&change, Some(tenant), Some(actor))
        .map_err(ApiError::internal)?
        .with_request_id(request_id))
}

fn db_error(e: diesel::result::Error) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match &e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            ApiError::Conflict("The user is already a member of this tenant".into())
        }
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _) => {
            ApiError::NotFound("User")
        }
        _ => ApiError::internal(e),
    }
}

async fn enqueue(tx: &mut AsyncPgConnection, event: &EventEnvelope) -> Result<(), ApiError> {
    events::enqueue(tx, event).await.map_err(ApiError::internal)
}

/// Add a member by user id (admin; invitations are the documented way). 409 if already
/// a member; 404 for an unknown user.
#[utoipa::path(post, path = "/api/tenants/{id}/users", tag = "tenants", params(("id" = String, Path, format = Uuid)),
    request_body = AddMember,
    responses((status = 201, description = "`data`: the membership", body = Membership),
              (status = 404, body = http_kit::ErrorBody), (status = 409, body = http_kit::ErrorBody)))]
pub async fn add(
    app: web::Data<App>,
    member: TenantMember,
    request_id: RequestId,
    body: Json<AddMember>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageMembers)?;
    let AddMember { user_id, role } = body.into_inner();
    let event = added(
        member.tenant_id,
        member.user_id,
        user_id,
        role,
        Some(request_id.0),
        AddedBy::UserId,
    )?;
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, TxError, _>(async |tx| {
            let row = crate::store::memberships::insert(tx, user_id, member.tenant_id, role)
                .await
                .map_err(db_error)?;
            enqueue(tx, &event).await?;
            Ok(row)
        })
        .await?;
    app.relay.nudge(events::OutboxDb::Main);
    app.roles_changed(member.tenant_id, Some(user_id)).await;
    let body = Membership {
        tenant_id: member.tenant_id,
        user_id,
        role,
        joined_at: row.joined_at,
        sso_only_directory: None,
    };
    Ok(success(
        StatusCode::CREATED,
        "User added to tenant successfully",
        body,
    ))
}

/// Change a member's role (admin); demoting the last admin is refused with 400.
#[utoipa::path(put, path = "/api/tenants/{id}/users/{user_id}", tag = "tenants",
    params(("id" = String, Path, format = Uuid), ("user_id" = String, Path, format = Uuid)),
    request_body = ChangeRole,
    responses((status = 200, description = "`data`: the membership", body = Membership),
              (status = 400, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn change_role(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, UserId)>,
    request_id: RequestId,
    body: Json<ChangeRole>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageMembers)?;
    let (_, user_id) = path.into_inner();
    let role = body.role;
    let event = changed(
        member.tenant_id,
        member.user_id,
        user_id,
        MembershipAction::RoleChanged,
        Some(role),
        request_id.0,
    )?;
    let mut conn = app.conn().await?;
    let row = conn
        .transaction::<_, TxError, _>(async |tx| {
            let admins = crate::store::memberships::lock_admins(tx, member.tenant_id)
                .await
                .map_err(ApiError::internal)?;
            // The caller's role was read before the lock: it must still be admin.
            if !admins.contains(&member.user_id.into_uuid()) {
                return Err(ApiError::Forbidden(
                    "You are no longer an admin of this tenant".into(),
                )
                .into());
            }
            if role != Role::Admin && admins == [user_id.into_uuid()] {
                return Err(ApiError::BadRequest(
                    "The last admin of a tenant cannot be demoted".into(),
                )
                .into());
            }
            let row = crate::store::memberships::set_role(tx, member.tenant_id, user_id, role)
                .await
                .map_err(ApiError::internal)?
                .ok_or(ApiError::NotFound("Membership"))?;
            enqueue(tx, &event).await?;
            crate::invitations::revoke_after_membership_change(
                tx,
                member.tenant_id,
                user_id,
                crate::invitations::MembershipChange::RoleSet(role),
                Some(member.user_id),
            )
            .await?;
            Ok(row)
        })
        .await?;
    app.relay.nudge(events::OutboxDb::Main);
    app.roles_changed(member.tenant_id, Some(user_id)).await;
    let body = Membership {
        tenant_id: member.tenant_id,
        user_id,
        role,
        joined_at: row.joined_at,
        sso_only_directory: None,
    };
    Ok(success(
        StatusCode::OK,
        "User role updated successfully",
        body,
    ))
}

/// Remove a member (admin); removing the last admin is refused with 400.
#[utoipa::path(delete, path = "/api/tenants/{id}/users/{user_id}", tag = "tenants",
    params(("id" = String, Path, format = Uuid), ("user_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "Removed", body = MemberRemoved), (status = 400, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody)))]
pub async fn remove(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, UserId)>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ManageMembers)?;
    let (_, user_id) = path.into_inner();
    let event = changed(
        member.tenant_id,
        member.user_id,
        user_id,
        MembershipAction::Removed,
        None,
        request_id.0,
    )?;
    let mut conn = app.conn().await?;
    conn.transaction::<_, TxError, _>(async |tx| {
        let admins = crate::store::memberships::lock_admins(tx, member.tenant_id)
            .await
            .map_err(ApiError::internal)?;
        if !admins.contains(&member.user_id.into_uuid()) {
            return Err(
                ApiError::Forbidden("You are no longer an admin of this tenant".into()).into(),
            );
        }
        if admins == [user_id.into_uuid()] {
            return Err(ApiError::BadRequest(
                "The last admin of a tenant cannot be removed".into(),
            )
            .into());
        }
        if !crate::store::memberships::remove(tx, member.tenant_id, user_id)
            .await
            .map_err(ApiError::internal)?
        {
            return Err(ApiError::NotFound("Membership").into());
        }
        enqueue(tx, &event).await?;
        crate::invitations::revoke_after_membership_change(
            tx,
            member.tenant_id,
            user_id,
            crate::invitations::MembershipChange::Removed,
            Some(member.user_id),
        )
        .await?;
        Ok(())
    })
    .await?;
    app.relay.nudge(events::OutboxDb::Main);
    app.roles_changed(member.tenant_id, Some(user_id)).await;
    Ok(success(
        StatusCode::OK,
        "User removed from tenant successfully",
        json!({"tenant_id": member.tenant_id, "user_id": user_id}),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of a removal.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct MemberRemoved {
    #[schema(format = Uuid)]
    tenant_id: String,
    #[schema(format = Uuid)]
    user_id: String,
}
