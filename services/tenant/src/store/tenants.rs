//! Queries of the `tenants` table (written by the tenant service only).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{TenantDatabaseName, TenantId, TenantName, TenantStatus, UserId};
use uuid::Uuid;

use main_db::schema::tenants;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
pub struct TenantRow {
    pub id: Uuid,
    pub name: String,
    pub database_name: String,
    pub is_active: bool,
    pub status: String,
    pub status_reason: Option<String>,
    pub auth_method: String,
    pub sso_domain_whitelist: Vec<Option<String>>,
    pub sso_auto_provisioning: bool,
    pub sso_default_role: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: Option<Uuid>,
    /// The directory (Entra `tid`) of the tenant's SSO configuration, mirrored.
    pub sso_directory_id: Option<String>,
    /// The database server holding its database (`database_servers`).
    pub server_id: Uuid,
    /// When its purge dropped its database.
    pub database_purged_at: Option<DateTime<Utc>>,
}

impl TenantRow {
    pub fn tenant_id(&self) -> TenantId {
        TenantId::from_uuid(self.id)
    }

    /// The status; an unknown stored value (impossible under the check constraint)
    /// reads as failed, the state that is never used.
    pub fn status(&self) -> TenantStatus {
        self.status.parse().unwrap_or(TenantStatus::Failed)
    }

    /// The database name, validated again on the way out of storage.
    pub fn database(&self) -> Result<TenantDatabaseName, domain::DatabaseNameError> {
        TenantDatabaseName::parse(&self.database_name)
    }
}

/// Inserts a tenant in state `provisioning`, on database server `server`.
pub async fn insert_provisioning(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    name: &TenantName,
    database: &TenantDatabaseName,
    created_by: Option<UserId>,
    server: Uuid,
) -> QueryResult<TenantRow> {
    diesel::insert_into(tenants::table)
        .values((
            tenants::id.eq(id.into_uuid()),
            tenants::name.eq(name.as_str()),
            tenants::database_name.eq(database.as_str()),
            tenants::status.eq(TenantStatus::Provisioning.as_str()),
            tenants::created_by.eq(created_by.map(UserId::into_uuid)),
            tenants::server_id.eq(server),
        ))
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: TenantId) -> QueryResult<Option<TenantRow>> {
    tenants::table
        .find(id.into_uuid())
        .select(TenantRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Moves a tenant to `status`, recording `reason` (cleared when `None`).
pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    status: TenantStatus,
    reason: Option<&str>,
) -> QueryResult<TenantRow> {
    diesel::update(tenants::table.find(id.into_uuid()))
        .set((
            tenants::status.eq(status.as_str()),
            tenants::status_reason.eq(reason),
            tenants::updated_at.eq(diesel::dsl::now),
        ))
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .await
}

/// Tenants whose database should exist and be kept migrated: active and deactivated
/// (which can be reactivated), optionally only one.
pub async fn with_databases(
    conn: &mut AsyncPgConnection,
    only: Option<TenantId>,
) -> QueryResult<Vec<TenantRow>> {
    let mut query = tenants::table
        .filter(tenants::status.eq_any([
            TenantStatus::Active.as_str(),
            TenantStatus::Deleted.as_str(),
        ]))
        .filter(tenants::database_purged_at.is_null())
        .select(TenantRow::as_select())
        .order(tenants::created_at.asc())
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(tenants::id.eq(id.into_uuid()));
    }
    query.load(conn).await
}

/// Serialises what changes where a tenant's database is (its purge, a move's switch)
/// until the end of the transaction.
pub async fn lock_database(conn: &mut AsyncPgConnection, id: TenantId) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 21))")
        .bind::<diesel::sql_types::Text, _>(format!("tenant-database:{id}"))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Puts a tenant on server `to` if it is on `from` and not purged (a move's switch);
/// whether it was.
pub async fn set_server(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    from: Uuid,
    to: Uuid,
) -> QueryResult<bool> {
    diesel::update(
        tenants::table
            .find(id.into_uuid())
            .filter(tenants::server_id.eq(from))
            .filter(tenants::database_purged_at.is_null()),
    )
    .set((
        tenants::server_id.eq(to),
        tenants::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Records that a tenant's database was dropped by its purge.
pub async fn mark_purged(conn: &mut AsyncPgConnection, id: TenantId) -> QueryResult<()> {
    diesel::update(tenants::table.find(id.into_uuid()))
        .set(tenants::database_purged_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Moves a tenant from `from` to `to` only if it is still in `from` (a compare-and-set
/// that makes concurrent retries and activations safe). `None` if it was not.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    from: TenantStatus,
    to: TenantStatus,
) -> QueryResult<Option<TenantRow>> {
    diesel::update(
        tenants::table
            .find(id.into_uuid())
            .filter(tenants::status.eq(from.as_str())),
    )
    .set((
        tenants::status.eq(to.as_str()),
        tenants::status_reason.eq(None::<String>),
        tenants::updated_at.eq(diesel::dsl::now),
    ))
    .returning(TenantRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Tenants `user` created that still hold a database: not deleted, or deleted without
/// a purge (the per-user creation limit counts them).
pub async fn count_created_by(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    // A deleted tenant whose database was not purged still holds a database: it counts
    // until the database is gone (the limit bounds databases, not rows).
    diesel::sql_query(
        "SELECT count(*) AS count FROM tenants t WHERE t.created_by = $1 \
         AND (t.status <> $2 OR (t.database_purged_at IS NULL \
         AND (t.server_id <> '00000000-0000-0000-0000-000000000001' OR EXISTS \
         (SELECT 1 FROM pg_catalog.pg_database d WHERE d.datname = t.database_name))))",
    )
    .bind::<diesel::sql_types::Uuid, _>(user.into_uuid())
    .bind::<diesel::sql_types::Text, _>(TenantStatus::Deleted.as_str())
    .get_result::<Count>(conn)
    .await
    .map(|c| c.count)
}

pub async fn rename(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    name: &TenantName,
) -> QueryResult<TenantRow> {
    diesel::update(tenants::table.find(id.into_uuid()))
        .set((
            tenants::name.eq(name.as_str()),
            tenants::updated_at.eq(diesel::dsl::now),
        ))
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .await
}

/// Deactivates a tenant: `is_active` false, status `deleted`. `None` if it already was.
pub async fn deactivate(
    conn: &mut AsyncPgConnection,
    id: TenantId,
) -> QueryResult<Option<TenantRow>> {
    diesel::update(
        tenants::table
            .find(id.into_uuid())
            .filter(tenants::is_active.eq(true)),
    )
    .set((
        tenants::is_active.eq(false),
        tenants::status.eq(TenantStatus::Deleted.as_str()),
        tenants::updated_at.eq(diesel::dsl::now),
    ))
    .returning(TenantRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Tenants left in `provisioning` since before `older_than` (a process stopped
/// mid-way).
pub async fn stale_provisioning(
    conn: &mut AsyncPgConnection,
    older_than: DateTime<Utc>,
) -> QueryResult<Vec<TenantRow>> {
    tenants::table
        .filter(tenants::status.eq(TenantStatus::Provisioning.as_str()))
        .filter(tenants::updated_at.lt(older_than))
        .select(TenantRow::as_select())
        .load(conn)
        .await
}

/// Moves `provisioning` to `failed` with `reason` if it still is `provisioning`.
pub async fn fail_if_provisioning(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    reason: &str,
) -> QueryResult<bool> {
    let updated = diesel::update(
        tenants::table
            .find(id.into_uuid())
            .filter(tenants::status.eq(TenantStatus::Provisioning.as_str())),
    )
    .set((
        tenants::status.eq(TenantStatus::Failed.as_str()),
        tenants::status_reason.eq(reason),
        tenants::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Reactivates a deactivated tenant. `None` if it was not deactivated.
pub async fn reactivate(
    conn: &mut AsyncPgConnection,
    id: TenantId,
) -> QueryResult<Option<TenantRow>> {
    diesel::update(
        tenants::table
            .find(id.into_uuid())
            .filter(tenants::is_active.eq(false))
            .filter(tenants::status.eq(TenantStatus::Deleted.as_str())),
    )
    .set((
        tenants::is_active.eq(true),
        tenants::status.eq(TenantStatus::Active.as_str()),
        tenants::updated_at.eq(diesel::dsl::now),
    ))
    .returning(TenantRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// A tenant `creator` created with this exact name that is not deleted.
pub async fn find_by_creator_and_name(
    conn: &mut AsyncPgConnection,
    creator: UserId,
    name: &TenantName,
) -> QueryResult<Option<TenantRow>> {
    tenants::table
        .filter(tenants::created_by.eq(creator.into_uuid()))
        .filter(tenants::name.eq(name.as_str()))
        .filter(tenants::status.ne(TenantStatus::Deleted.as_str()))
        .select(TenantRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A tenant's SSO settings as the sso service reports them.
pub struct SsoMirror<'a> {
    /// `local`, `sso` or `both`.
    pub auth_method: &'a str,
    pub domains: &'a [String],
    pub auto_provisioning: bool,
    pub default_role: &'a str,
    /// The configured directory (Entra `tid`), if any.
    pub directory: Option<&'a str>,
}

/// The tenant's SSO settings as the sso service reports them (it owns the
/// configuration; these columns mirror it for docs/API.md's Tenant and for the SSO-only
/// rule of the tenant-role extractor). `None`: no such tenant.
pub async fn set_sso(
    conn: &mut AsyncPgConnection,
    id: TenantId,
    sso: &SsoMirror<'_>,
) -> QueryResult<Option<TenantRow>> {
    diesel::update(tenants::table.find(id.into_uuid()))
        .set((
            tenants::auth_method.eq(sso.auth_method),
            tenants::sso_domain_whitelist.eq(sso.domains),
            tenants::sso_auto_provisioning.eq(sso.auto_provisioning),
            tenants::sso_default_role.eq(sso.default_role),
            tenants::sso_directory_id.eq(sso.directory),
            tenants::updated_at.eq(diesel::dsl::now),
        ))
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}
