//! Queries of `database_servers`: the PostgreSQL servers that hold tenant databases.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::placement::{Candidate, ServerState};

/// The main database's own server, registered by the migration that made the table.
pub use tenant_db::MAIN_SERVER_ID;

/// A server with the number of tenants it holds (every state, deactivated included,
/// until purged).
#[derive(Debug, Clone, QueryableByName)]
pub struct ServerRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub name: String,
    /// The setting that holds its administration URL (never the URL itself).
    #[diesel(sql_type = Text)]
    pub admin_url_ref: String,
    /// The setting that holds its request-traffic URL.
    #[diesel(sql_type = Text)]
    pub url_ref: String,
    #[diesel(sql_type = Text)]
    pub state: String,
    #[diesel(sql_type = Integer)]
    pub weight: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    pub max_tenants: Option<i32>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub tenants: i64,
}

impl ServerRow {
    /// A server not registered yet (no tenants), for `servers add`.
    pub fn new_for(id: Uuid, name: &str, admin_url_ref: &str, url_ref: &str) -> Self {
        Self {
            id,
            name: name.to_owned(),
            admin_url_ref: admin_url_ref.to_owned(),
            url_ref: url_ref.to_owned(),
            state: ServerState::Draining.as_str().to_owned(),
            weight: 1,
            max_tenants: None,
            created_at: Utc::now(),
            tenants: 0,
        }
    }

    /// The state; an unknown stored value (impossible under the check constraint)
    /// reads as disabled, which receives nothing.
    pub fn state(&self) -> ServerState {
        self.state.parse().unwrap_or(ServerState::Disabled)
    }

    pub fn candidate(&self) -> Candidate {
        Candidate {
            id: self.id,
            name: self.name.clone(),
            state: self.state(),
            weight: u32::try_from(self.weight).unwrap_or(1),
            max_tenants: self.max_tenants.and_then(|m| u64::try_from(m).ok()),
            tenants: u64::try_from(self.tenants).unwrap_or(0),
        }
    }
}

/// A tenant counts while it holds a database: a deleted (deactivated) one counts until
/// it is purged, as for the per-creator limit. A purge sets `database_purged_at`; on
/// the main server `pg_database` is asked as well, for a replica of the previous
/// release purging during a rolling upgrade without setting it.
/// (A join, not a correlated `EXISTS` per row: 2 ms instead of 150–350 ms at 3,000
/// tenants, measured with psql on the CI machine kind.)
const SELECT_WITH_COUNTS: &str = "\
    SELECT s.id, s.name, s.admin_url_ref, s.url_ref, s.state, s.weight, s.max_tenants, \
           s.created_at, \
           count(t.id) FILTER (WHERE t.status <> 'deleted' OR (t.database_purged_at IS NULL \
               AND (t.server_id <> '00000000-0000-0000-0000-000000000001' OR d.oid IS NOT NULL))) \
               AS tenants \
    FROM database_servers s \
    LEFT JOIN tenants t ON t.server_id = s.id \
    LEFT JOIN pg_catalog.pg_database d ON d.datname = t.database_name::name";

/// Every server with its tenant count, by name.
pub async fn list(conn: &mut AsyncPgConnection) -> QueryResult<Vec<ServerRow>> {
    diesel::sql_query(format!(
        "{SELECT_WITH_COUNTS} GROUP BY s.id ORDER BY s.name"
    ))
    .load(conn)
    .await
}

/// One server by name, with its tenant count.
pub async fn find_by_name(
    conn: &mut AsyncPgConnection,
    name: &str,
) -> QueryResult<Option<ServerRow>> {
    diesel::sql_query(format!(
        "{SELECT_WITH_COUNTS} WHERE s.name = $1 GROUP BY s.id"
    ))
    .bind::<Text, _>(name)
    .get_result(conn)
    .await
    .optional()
}

/// One server by id, with its tenant count.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ServerRow>> {
    diesel::sql_query(format!(
        "{SELECT_WITH_COUNTS} WHERE s.id = $1 GROUP BY s.id"
    ))
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .optional()
}

/// Registers a server.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    row: &ServerRow,
    state: ServerState,
    weight: i32,
    max_tenants: Option<i32>,
) -> QueryResult<()> {
    use main_db::schema::database_servers as servers;
    diesel::insert_into(servers::table)
        .values((
            servers::id.eq(row.id),
            servers::name.eq(&row.name),
            servers::admin_url_ref.eq(&row.admin_url_ref),
            servers::url_ref.eq(&row.url_ref),
            servers::state.eq(state.as_str()),
            servers::weight.eq(weight),
            servers::max_tenants.eq(max_tenants),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Serialises placements until the end of the transaction, so concurrent tenants see
/// each other's server and a full server is never overfilled.
pub async fn lock_placement(conn: &mut AsyncPgConnection) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended('tenant-placement', 0))")
        .execute(conn)
        .await
        .map(|_| ())
}

/// Sets the state of the server `name`; whether there was such a server.
pub async fn set_state(
    conn: &mut AsyncPgConnection,
    name: &str,
    state: ServerState,
) -> QueryResult<bool> {
    use main_db::schema::database_servers as servers;
    diesel::update(servers::table.filter(servers::name.eq(name)))
        .set((
            servers::state.eq(state.as_str()),
            servers::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}
