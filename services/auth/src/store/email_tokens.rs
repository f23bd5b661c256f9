//! Queries of `user_email_tokens` (written by the auth service only): single-use tokens
//! mailed to a user (email verification, password reset). Only the SHA-256 of a token
//! is stored; a token is found by its hash and used at most once.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::UserId;
use uuid::Uuid;

use main_db::schema::user_email_tokens as tokens;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tokens, check_for_backend(diesel::pg::Pg))]
pub struct EmailTokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub purpose: String,
    pub token_hash: Vec<u8>,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

pub struct NewEmailToken<'a> {
    pub id: Uuid,
    pub user_id: UserId,
    pub purpose: Purpose,
    pub token_hash: &'a [u8; 32],
    pub email: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// Stores a token, and forgets the user's tokens of any purpose that expired.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewEmailToken<'_>) -> QueryResult<()> {
    diesel::delete(
        tokens::table
            .filter(tokens::user_id.eq(new.user_id.into_uuid()))
            .filter(tokens::expires_at.lt(diesel::dsl::now)),
    )
    .execute(conn)
    .await?;
    diesel::insert_into(tokens::table)
        .values((
            tokens::id.eq(new.id),
            tokens::user_id.eq(new.user_id.into_uuid()),
            tokens::purpose.eq(new.purpose.as_str()),
            tokens::token_hash.eq(&new.token_hash[..]),
            tokens::email.eq(new.email),
            tokens::expires_at.eq(new.expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The token with this hash and purpose, its row locked until the transaction ends.
pub async fn lock_by_hash(
    conn: &mut AsyncPgConnection,
    purpose: Purpose,
    hash: &[u8; 32],
) -> QueryResult<Option<EmailTokenRow>> {
    tokens::table
        .filter(tokens::token_hash.eq(&hash[..]))
        .filter(tokens::purpose.eq(purpose.as_str()))
        .select(EmailTokenRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Uses up every unused token of the user for `purpose` (the one presented and any
/// other link still in a mailbox).
pub async fn use_all(
    conn: &mut AsyncPgConnection,
    user: UserId,
    purpose: Purpose,
) -> QueryResult<usize> {
    diesel::update(
        tokens::table
            .filter(tokens::user_id.eq(user.into_uuid()))
            .filter(tokens::purpose.eq(purpose.as_str()))
            .filter(tokens::used_at.is_null()),
    )
    .set(tokens::used_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}
