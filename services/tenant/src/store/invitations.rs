//! Queries of `tenant_invitations` (written by the tenant service only): invitations to
//! join a tenant, sent by email. Only the SHA-256 of an invitation's token is stored; a
//! token is found by its hash. An invitation is pending while it is neither accepted nor
//! revoked (an expired one stays pending, and unusable, until it is sent again, revoked
//! or cleared away); a tenant has at most one pending invitation per address.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Email, Role, TenantId, UserId};
use uuid::Uuid;

use main_db::schema::tenant_invitations as invitations;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = invitations, check_for_backend(diesel::pg::Pg))]
pub struct InvitationRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub role: String,
    pub token_hash: Vec<u8>,
    pub invited_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<Uuid>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl InvitationRow {
    /// Neither accepted nor revoked (it may have expired).
    pub fn is_pending(&self) -> bool {
        self.accepted_at.is_none() && self.revoked_at.is_none()
    }

    pub fn has_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}

/// A new invitation, or what a new sending of a pending one changes.
pub struct NewInvitation<'a> {
    pub id: Uuid,
    pub tenant: TenantId,
    pub email: &'a Email,
    pub role: Role,
    pub token_hash: &'a [u8; 32],
    pub invited_by: UserId,
    pub expires_at: DateTime<Utc>,
}

/// Holds, until the transaction ends, the lock that serialises the invitations sent by
/// a tenant: the pending limit is counted, and a pending invitation found or inserted,
/// under it.
pub async fn lock_tenant(conn: &mut AsyncPgConnection, tenant: TenantId) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 15))")
        .bind::<diesel::sql_types::Text, _>(format!("tenant_invitations:{tenant}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// The pending invitation of `email` to `tenant`, its row locked until the transaction
/// ends.
pub async fn lock_pending_for(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    email: &Email,
) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .filter(invitations::tenant_id.eq(tenant.into_uuid()))
        .filter(invitations::email.eq(email.as_str()))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .select(InvitationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewInvitation<'_>,
) -> QueryResult<InvitationRow> {
    diesel::insert_into(invitations::table)
        .values((
            invitations::id.eq(new.id),
            invitations::tenant_id.eq(new.tenant.into_uuid()),
            invitations::email.eq(new.email.as_str()),
            invitations::role.eq(new.role.as_str()),
            invitations::token_hash.eq(&new.token_hash[..]),
            invitations::invited_by.eq(new.invited_by.into_uuid()),
            invitations::expires_at.eq(new.expires_at),
        ))
        .returning(InvitationRow::as_returning())
        .get_result(conn)
        .await
}

/// Sends the pending invitation `id` again: a new token (the old link stops working),
/// expiry, role and inviter; `created_at` becomes now. `None` if it is not pending.
pub async fn refresh(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    again: &NewInvitation<'_>,
) -> QueryResult<Option<InvitationRow>> {
    diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set((
        invitations::role.eq(again.role.as_str()),
        invitations::token_hash.eq(&again.token_hash[..]),
        invitations::invited_by.eq(again.invited_by.into_uuid()),
        invitations::created_at.eq(diesel::dsl::now),
        invitations::expires_at.eq(again.expires_at),
    ))
    .returning(InvitationRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// How many invitations of the tenant are pending and not expired.
pub async fn count_open(conn: &mut AsyncPgConnection, tenant: TenantId) -> QueryResult<i64> {
    invitations::table
        .filter(invitations::tenant_id.eq(tenant.into_uuid()))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(diesel::dsl::now))
        .count()
        .get_result(conn)
        .await
}

/// The tenant's pending, unexpired invitations, most recently sent first.
pub async fn list_open(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<InvitationRow>> {
    invitations::table
        .filter(invitations::tenant_id.eq(tenant.into_uuid()))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(diesel::dsl::now))
        .order((invitations::created_at.desc(), invitations::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(InvitationRow::as_select())
        .load(conn)
        .await
}

/// Forgets the tenant's pending invitations that expired before `before` (their links
/// then answer 404 instead of 410).
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(
        invitations::table
            .filter(invitations::tenant_id.eq(tenant.into_uuid()))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .filter(invitations::expires_at.lt(before)),
    )
    .execute(conn)
    .await
}

/// The invitation whose token has this hash.
pub async fn find_by_hash(
    conn: &mut AsyncPgConnection,
    hash: &[u8; 32],
) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .filter(invitations::token_hash.eq(&hash[..]))
        .select(InvitationRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The invitation whose token has this hash, its row locked until the transaction ends.
pub async fn lock_by_hash(
    conn: &mut AsyncPgConnection,
    hash: &[u8; 32],
) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .filter(invitations::token_hash.eq(&hash[..]))
        .select(InvitationRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Revokes the tenant's pending invitation `id`; `None` if there is none.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    id: Uuid,
) -> QueryResult<Option<InvitationRow>> {
    diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::tenant_id.eq(tenant.into_uuid()))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(diesel::dsl::now))
    .returning(InvitationRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Marks the pending invitation `id` accepted by `user`; `None` if it is not pending.
pub async fn accept(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user: UserId,
) -> QueryResult<Option<InvitationRow>> {
    diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set((
        invitations::accepted_at.eq(diesel::dsl::now),
        invitations::accepted_by.eq(user.into_uuid()),
    ))
    .returning(InvitationRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Revokes the tenant's pending invitations sent by `inviter` (removed, or no longer an
/// admin: what they sent must not outlive their right to send it).
pub async fn revoke_sent_by(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    inviter: UserId,
) -> QueryResult<Vec<InvitationRow>> {
    diesel::update(
        invitations::table
            .filter(invitations::tenant_id.eq(tenant.into_uuid()))
            .filter(invitations::invited_by.eq(inviter.into_uuid()))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(diesel::dsl::now))
    .returning(InvitationRow::as_returning())
    .get_results(conn)
    .await
}

/// Revokes the tenant's pending invitation to `email` (its holder was removed: an old
/// link must not bring them back).
pub async fn revoke_addressed_to(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    email: &str,
) -> QueryResult<Vec<InvitationRow>> {
    diesel::update(
        invitations::table
            .filter(invitations::tenant_id.eq(tenant.into_uuid()))
            .filter(invitations::email.eq(email))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(diesel::dsl::now))
    .returning(InvitationRow::as_returning())
    .get_results(conn)
    .await
}
