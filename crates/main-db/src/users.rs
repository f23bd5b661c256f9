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
}

pub struct NewUser<'a> {
    pub id: UserId,
    pub email: &'a Email,
    pub password_hash: Option<&'a str>,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

pub async fn insert(conn: &mut AsyncPgConnection, user: NewUser<'_>) -> QueryResult<UserRow> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(user.id.into_uuid()),
            users::email.eq(user.email.as_str()),
            users::password_hash.eq(user.password_hash),
            users::first_name.eq(user.first_name),
            users::last_name.eq(user.last_name),
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
