//! Queries of `user_tenant_associations` (written by the tenant service only).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Role, TenantId, UserId};
use uuid::Uuid;

use crate::schema::user_tenant_associations as memberships;

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
) -> QueryResult<Vec<(crate::tenants::TenantRow, MembershipRow)>> {
    use crate::schema::tenants;
    memberships::table
        .inner_join(tenants::table)
        .filter(memberships::user_id.eq(user.into_uuid()))
        .filter(tenants::is_active.eq(true))
        .filter(tenants::status.eq(domain::TenantStatus::Active.as_str()))
        .order((memberships::joined_at.desc(), tenants::created_at.desc()))
        .select((
            crate::tenants::TenantRow::as_select(),
            MembershipRow::as_select(),
        ))
        .load(conn)
        .await
}
