//! Queries of `user_tenant_associations` (written by the tenant service only).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Role, TenantId, UserId};
use uuid::Uuid;

use main_db::schema::user_tenant_associations as memberships;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = memberships, check_for_backend(diesel::pg::Pg))]
pub struct MembershipRow {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    user: UserId,
    tenant: TenantId,
    role: Role,
) -> QueryResult<MembershipRow> {
    diesel::insert_into(memberships::table)
        .values((
            memberships::user_id.eq(user.into_uuid()),
            memberships::tenant_id.eq(tenant.into_uuid()),
            memberships::role.eq(role.as_str()),
        ))
        .returning(MembershipRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    user: UserId,
) -> QueryResult<Option<MembershipRow>> {
    memberships::table
        .find((user.into_uuid(), tenant.into_uuid()))
        .select(MembershipRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The active tenants `user` belongs to, with the membership, most recently joined first.
pub async fn active_tenants_of(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Vec<(crate::store::tenants::TenantRow, MembershipRow)>> {
    use main_db::schema::tenants;
    memberships::table
        .inner_join(tenants::table)
        .filter(memberships::user_id.eq(user.into_uuid()))
        .filter(tenants::is_active.eq(true))
        .filter(tenants::status.eq(domain::TenantStatus::Active.as_str()))
        .order((memberships::joined_at.desc(), tenants::created_at.desc()))
        .select((
            crate::store::tenants::TenantRow::as_select(),
            MembershipRow::as_select(),
        ))
        .load(conn)
        .await
}

/// The members of a tenant, longest-standing first.
pub async fn members_of(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
) -> QueryResult<Vec<MembershipRow>> {
    memberships::table
        .filter(memberships::tenant_id.eq(tenant.into_uuid()))
        .order((memberships::joined_at.asc(), memberships::user_id.asc()))
        .select(MembershipRow::as_select())
        .load(conn)
        .await
}

/// Locks the tenant's admin memberships until the transaction ends and returns their
/// user ids: two admins demoting each other serialise here, so one of them sees the
/// other's change.
pub async fn lock_admins(conn: &mut AsyncPgConnection, tenant: TenantId) -> QueryResult<Vec<Uuid>> {
    memberships::table
        .filter(memberships::tenant_id.eq(tenant.into_uuid()))
        .filter(memberships::role.eq(Role::Admin.as_str()))
        .select(memberships::user_id)
        .for_update()
        .load(conn)
        .await
}

pub async fn set_role(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    user: UserId,
    role: Role,
) -> QueryResult<Option<MembershipRow>> {
    diesel::update(memberships::table.find((user.into_uuid(), tenant.into_uuid())))
        .set(memberships::role.eq(role.as_str()))
        .returning(MembershipRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn remove(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    user: UserId,
) -> QueryResult<bool> {
    let removed = diesel::delete(memberships::table.find((user.into_uuid(), tenant.into_uuid())))
        .execute(conn)
        .await?;
    Ok(removed == 1)
}

/// Adds the membership or changes its role.
pub async fn upsert(
    conn: &mut AsyncPgConnection,
    user: UserId,
    tenant: TenantId,
    role: Role,
) -> QueryResult<MembershipRow> {
    diesel::insert_into(memberships::table)
        .values((
            memberships::user_id.eq(user.into_uuid()),
            memberships::tenant_id.eq(tenant.into_uuid()),
            memberships::role.eq(role.as_str()),
        ))
        .on_conflict((memberships::user_id, memberships::tenant_id))
        .do_update()
        .set(memberships::role.eq(role.as_str()))
        .returning(MembershipRow::as_returning())
        .get_result(conn)
        .await
}
