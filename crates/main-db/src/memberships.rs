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
