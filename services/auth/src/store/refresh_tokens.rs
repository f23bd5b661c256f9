//! Queries of `refresh_tokens` (written by the auth service only). A token is used once:
//! `mark_used` is a compare-and-set, so of two concurrent refreshes only one wins. A
//! family is revoked with its session (`sessions.rs`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::UserId;
use uuid::Uuid;

use main_db::schema::refresh_tokens;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub struct RefreshTokenRow {
    pub jti: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub parent_jti: Option<Uuid>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

pub struct NewRefreshToken {
    pub jti: Uuid,
    pub user_id: UserId,
    pub family_id: Uuid,
    pub parent_jti: Option<Uuid>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, token: &NewRefreshToken) -> QueryResult<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::jti.eq(token.jti),
            refresh_tokens::user_id.eq(token.user_id.into_uuid()),
            refresh_tokens::family_id.eq(token.family_id),
            refresh_tokens::parent_jti.eq(token.parent_jti),
            refresh_tokens::issued_at.eq(token.issued_at),
            refresh_tokens::expires_at.eq(token.expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn find(conn: &mut AsyncPgConnection, jti: Uuid) -> QueryResult<Option<RefreshTokenRow>> {
    refresh_tokens::table
        .find(jti)
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks the token used if it was neither used nor revoked; false if it was.
pub async fn mark_used(conn: &mut AsyncPgConnection, jti: Uuid) -> QueryResult<bool> {
    let updated = diesel::update(
        refresh_tokens::table
            .find(jti)
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(diesel::dsl::now))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}
