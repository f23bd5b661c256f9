//! Queries of the `users` table (written by the auth service only).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{Email, UserId};
use uuid::Uuid;

use crate::schema::users;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub is_platform_admin: bool,
    /// The password was set by someone who proved control of the mailbox.
    pub password_proven: bool,
    pub password_changed_at: Option<DateTime<Utc>>,
    /// Tokens issued before this are refused.
    pub tokens_valid_after: Option<DateTime<Utc>>,
}

pub struct NewUser<'a> {
    pub id: UserId,
    pub email: &'a Email,
    pub password_hash: Option<&'a str>,
    pub first_name: &'a str,
    pub last_name: &'a str,
    /// Verified at creation (an SSO directory that asserts the domain, `tenant init`).
    pub email_verified: bool,
}

pub async fn insert(conn: &mut AsyncPgConnection, user: NewUser<'_>) -> QueryResult<UserRow> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(user.id.into_uuid()),
            users::email.eq(user.email.as_str()),
            users::password_hash.eq(user.password_hash),
            users::first_name.eq(user.first_name),
            users::last_name.eq(user.last_name),
            users::email_verified_at.eq(user.email_verified.then(Utc::now)),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &Email,
) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = ")
                .bind::<diesel::sql_types::Text, _>(email.as_str()),
        )
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id.into_uuid())
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Changes the names given (`None` keeps the current one).
pub async fn update_names(
    conn: &mut AsyncPgConnection,
    id: UserId,
    first_name: Option<&str>,
    last_name: Option<&str>,
) -> QueryResult<Option<UserRow>> {
    diesel::update(users::table.find(id.into_uuid()))
        .set((
            first_name.map(|n| users::first_name.eq(n)),
            last_name.map(|n| users::last_name.eq(n)),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[UserId]) -> QueryResult<Vec<UserRow>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.into_uuid()).collect();
    users::table
        .filter(users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(conn)
        .await
}

/// The users with these (normalised) addresses.
pub async fn find_many_by_email(
    conn: &mut AsyncPgConnection,
    emails: &[Email],
) -> QueryResult<Vec<UserRow>> {
    let emails: Vec<&str> = emails.iter().map(Email::as_str).collect();
    users::table
        .filter(users::email.eq_any(emails))
        .select(UserRow::as_select())
        .load(conn)
        .await
}

/// `email_verified_at`, set to now unless it already is (a first verification stays).
fn verified_now(
) -> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>> {
    diesel::dsl::sql("coalesce(email_verified_at, now())")
}

/// The user, its row locked until the transaction ends: password, activity and session
/// changes of one user are serialised on it.
pub async fn lock(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id.into_uuid())
        .select(UserRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Marks `email` verified, if it is still the user's address. `None` when it is not (or
/// the user is gone).
pub async fn mark_email_verified(
    conn: &mut AsyncPgConnection,
    id: UserId,
    email: &str,
) -> QueryResult<Option<UserRow>> {
    diesel::update(
        users::table
            .find(id.into_uuid())
            .filter(users::email.eq(email)),
    )
    .set((
        users::email_verified_at.eq(verified_now()),
        users::updated_at.eq(diesel::dsl::now),
    ))
    .returning(UserRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Sets the password hash (`None` removes the password); `proven` says whether its
/// holder proved control of the mailbox.
pub async fn set_password(
    conn: &mut AsyncPgConnection,
    id: UserId,
    hash: Option<&str>,
    proven: bool,
) -> QueryResult<Option<UserRow>> {
    diesel::update(users::table.find(id.into_uuid()))
        .set((
            users::password_hash.eq(hash),
            users::password_proven.eq(proven && hash.is_some()),
            users::password_changed_at.eq(diesel::dsl::now),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Activates or deactivates the user.
pub async fn set_active(
    conn: &mut AsyncPgConnection,
    id: UserId,
    active: bool,
) -> QueryResult<Option<UserRow>> {
    diesel::update(users::table.find(id.into_uuid()))
        .set((
            users::is_active.eq(active),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Makes the user a platform administrator with a verified email (`tenant init`).
pub async fn make_platform_admin(
    conn: &mut AsyncPgConnection,
    id: UserId,
) -> QueryResult<Option<UserRow>> {
    diesel::update(users::table.find(id.into_uuid()))
        .set((
            users::is_platform_admin.eq(true),
            users::email_verified_at.eq(verified_now()),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Refuses every token issued before now (the transaction's start): returns the cut-off.
pub async fn cut_tokens(
    conn: &mut AsyncPgConnection,
    id: UserId,
) -> QueryResult<Option<DateTime<Utc>>> {
    diesel::update(users::table.find(id.into_uuid()))
        .set(users::tokens_valid_after.eq(diesel::dsl::now))
        .returning(users::tokens_valid_after)
        .get_result::<Option<DateTime<Utc>>>(conn)
        .await
        .optional()
        .map(Option::flatten)
}
