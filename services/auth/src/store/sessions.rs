//! Queries of `user_sessions` (written by the auth service only). A session is a
//! refresh-token family: its id is the `fam` claim of every token of the login. Every
//! change to a session (rotation, revocation) happens with its row locked
//! ([`lock`]), so a revocation cannot miss a successor token a concurrent rotation is
//! storing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{TenantId, UserId};
use uuid::Uuid;

use main_db::schema::{refresh_tokens, user_sessions as sessions};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub client_address: Option<String>,
    pub amr: String,
    pub sso_tenant_id: Option<Uuid>,
    pub sso_directory_id: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

/// How a session was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOrigin {
    /// A password login.
    Password,
    /// A tenant's SSO login, through the directory `directory` (Entra's `tid`).
    Sso { tenant: TenantId, directory: String },
}

impl SessionOrigin {
    /// The `amr` value: `pwd` or `sso`.
    pub fn amr(&self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::Sso { .. } => "sso",
        }
    }
}

impl SessionRow {
    pub fn origin(&self) -> SessionOrigin {
        match (
            self.amr.as_str(),
            self.sso_tenant_id,
            &self.sso_directory_id,
        ) {
            ("sso", Some(tenant), Some(directory)) => SessionOrigin::Sso {
                tenant: TenantId::from_uuid(tenant),
                directory: directory.clone(),
            },
            _ => SessionOrigin::Password,
        }
    }
}

pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<&'a str>,
    pub client_address: Option<&'a str>,
    pub origin: &'a SessionOrigin,
}

/// What a password login read of the account before checking the password: the session
/// is created only if none of it changed meanwhile (a password reset or "sign out
/// everywhere" that ran during the login wins).
pub struct AccountState<'a> {
    pub password_hash: Option<&'a str>,
    pub tokens_valid_after: Option<DateTime<Utc>>,
}

/// Creates a session for an active user; with `unchanged`, only if the account is still
/// as the caller read it. `false` when the user is inactive, gone or changed.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    new: &NewSession<'_>,
    unchanged: Option<&AccountState<'_>>,
) -> QueryResult<bool> {
    let (tenant, directory) = match new.origin {
        SessionOrigin::Password => (None, None),
        SessionOrigin::Sso { tenant, directory } => {
            (Some(tenant.into_uuid()), Some(directory.as_str()))
        }
    };
    let inserted = diesel::sql_query(
        "INSERT INTO user_sessions \
           (id, user_id, expires_at, user_agent, client_address, amr, sso_tenant_id, sso_directory_id) \
         SELECT $1, id, $3, $4, $5, $6, $7, $8 FROM users \
         WHERE id = $2 AND is_active \
           AND (NOT $9 OR (password_hash IS NOT DISTINCT FROM $10 \
                           AND tokens_valid_after IS NOT DISTINCT FROM $11))",
    )
    .bind::<SqlUuid, _>(new.id)
    .bind::<SqlUuid, _>(new.user_id.into_uuid())
    .bind::<Timestamptz, _>(new.expires_at)
    .bind::<Nullable<Text>, _>(new.user_agent)
    .bind::<Nullable<Text>, _>(new.client_address)
    .bind::<Text, _>(new.origin.amr())
    .bind::<Nullable<SqlUuid>, _>(tenant)
    .bind::<Nullable<Text>, _>(directory)
    .bind::<Bool, _>(unchanged.is_some())
    .bind::<Nullable<Text>, _>(unchanged.and_then(|u| u.password_hash))
    .bind::<Nullable<Timestamptz>, _>(unchanged.and_then(|u| u.tokens_valid_after))
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// The session, its row locked until the transaction ends.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(id)
        .select(SessionRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Records a use (a refresh): last use now, expiry that of the new refresh token.
pub async fn touch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(sessions::table.find(id))
        .set((
            sessions::last_used_at.eq(diesel::dsl::now),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The user's sessions that can still be used, most recently used first.
pub async fn live_of_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Vec<SessionRow>> {
    sessions::table
        .filter(sessions::user_id.eq(user.into_uuid()))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(diesel::dsl::now))
        .order((sessions::last_used_at.desc(), sessions::id.asc()))
        .select(SessionRow::as_select())
        .load(conn)
        .await
}

/// A revoked session: its id and when its newest refresh token would have expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    pub id: Uuid,
    pub expires_at: DateTime<Utc>,
}

/// Revokes the user's live sessions (only `only`, all but `except`, or those of
/// `sso_tenant`'s SSO login) and their refresh tokens; returns them.
async fn revoke_where(
    conn: &mut AsyncPgConnection,
    user: UserId,
    only: Option<Uuid>,
    except: Option<Uuid>,
    sso_tenant: Option<TenantId>,
    reason: &str,
) -> QueryResult<Vec<Revoked>> {
    let mut query = diesel::update(sessions::table)
        .filter(sessions::user_id.eq(user.into_uuid()))
        .filter(sessions::revoked_at.is_null())
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(sessions::id.eq(id));
    }
    if let Some(id) = except {
        query = query.filter(sessions::id.ne(id));
    }
    if let Some(tenant) = sso_tenant {
        query = query
            .filter(sessions::amr.eq("sso"))
            .filter(sessions::sso_tenant_id.eq(tenant.into_uuid()));
    }
    let revoked: Vec<(Uuid, DateTime<Utc>)> = query
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .returning((sessions::id, sessions::expires_at))
        .get_results(conn)
        .await?;
    let ids: Vec<Uuid> = revoked.iter().map(|(id, _)| *id).collect();
    if !ids.is_empty() {
        diesel::update(
            refresh_tokens::table
                .filter(refresh_tokens::family_id.eq_any(&ids))
                .filter(refresh_tokens::revoked_at.is_null()),
        )
        .set((
            refresh_tokens::revoked_at.eq(diesel::dsl::now),
            refresh_tokens::revoked_reason.eq(reason),
        ))
        .execute(conn)
        .await?;
    }
    Ok(revoked
        .into_iter()
        .map(|(id, expires_at)| Revoked { id, expires_at })
        .collect())
}

/// Revokes one session of `user`; `None` when it is not a live session of theirs.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: Uuid,
    reason: &str,
) -> QueryResult<Option<Revoked>> {
    Ok(revoke_where(conn, user, Some(id), None, None, reason)
        .await?
        .into_iter()
        .next())
}

/// Revokes every live session of `user` but `except`.
pub async fn revoke_all(
    conn: &mut AsyncPgConnection,
    user: UserId,
    except: Option<Uuid>,
    reason: &str,
) -> QueryResult<Vec<Revoked>> {
    revoke_where(conn, user, None, except, None, reason).await
}

/// Revokes the live sessions `user` obtained through `tenant`'s SSO login.
pub async fn revoke_sso(
    conn: &mut AsyncPgConnection,
    user: UserId,
    tenant: TenantId,
    reason: &str,
) -> QueryResult<Vec<Revoked>> {
    revoke_where(conn, user, None, None, Some(tenant), reason).await
}
