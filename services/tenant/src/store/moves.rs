//! Queries of `tenant_moves`: the record of each move of a tenant's database between
//! servers (`crate::moving`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::TenantId;
use main_db::schema::tenant_moves as moves;
use uuid::Uuid;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = moves, check_for_backend(diesel::pg::Pg))]
pub struct MoveRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub from_server: Uuid,
    pub to_server: Uuid,
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub read_only_at: Option<DateTime<Utc>>,
    pub switched_at: Option<DateTime<Utc>>,
    pub drop_source_after: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub verified: Option<serde_json::Value>,
    pub error: Option<String>,
}

pub const COPYING: &str = "copying";
pub const SWITCHED: &str = "switched";
pub const DONE: &str = "done";
pub const ROLLED_BACK: &str = "rolled_back";

/// The unfinished move of a tenant (copying or switched), if any.
pub async fn open_of(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
) -> QueryResult<Option<MoveRow>> {
    moves::table
        .filter(moves::tenant_id.eq(tenant.into_uuid()))
        .filter(moves::state.eq_any([COPYING, SWITCHED]))
        .select(MoveRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records a new move in state `copying`; `None` when the tenant has an unfinished one
/// (the partial unique index).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    tenant: TenantId,
    from: Uuid,
    to: Uuid,
) -> QueryResult<Option<MoveRow>> {
    diesel::insert_into(moves::table)
        .values((
            moves::id.eq(Uuid::new_v4()),
            moves::tenant_id.eq(tenant.into_uuid()),
            moves::from_server.eq(from),
            moves::to_server.eq(to),
        ))
        .on_conflict_do_nothing()
        .returning(MoveRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Keeps a running move alive (and clears the error of an earlier attempt).
pub async fn heartbeat(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(moves::table.find(id))
        .set(moves::heartbeat_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Records that the source is read-only (since the first time, on a resumed move).
pub async fn set_read_only(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<MoveRow> {
    use diesel::sql_types::{Nullable, Timestamptz};
    diesel::update(moves::table.find(id))
        .set((
            moves::read_only_at.eq(diesel::dsl::sql::<Nullable<Timestamptz>>(
                "coalesce(read_only_at, now())",
            )),
            moves::heartbeat_at.eq(diesel::dsl::now),
            moves::error.eq(None::<String>),
        ))
        .returning(MoveRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn set_error(conn: &mut AsyncPgConnection, id: Uuid, error: &str) -> QueryResult<()> {
    diesel::update(moves::table.find(id))
        .set(moves::error.eq(error))
        .execute(conn)
        .await
        .map(|_| ())
}

/// `copying` → `switched`, with what was verified and when the source may go.
pub async fn switch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    verified: &serde_json::Value,
    drop_source_after: DateTime<Utc>,
) -> QueryResult<Option<MoveRow>> {
    diesel::update(moves::table.find(id).filter(moves::state.eq(COPYING)))
        .set((
            moves::state.eq(SWITCHED),
            moves::switched_at.eq(diesel::dsl::now),
            moves::verified.eq(verified),
            moves::drop_source_after.eq(drop_source_after),
        ))
        .returning(MoveRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Ends a move in `state` (`done` or `rolled_back`) if it is still in `from`.
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    from: &str,
    state: &str,
    error: Option<&str>,
) -> QueryResult<bool> {
    diesel::update(moves::table.find(id).filter(moves::state.eq(from)))
        .set((
            moves::state.eq(state),
            moves::finished_at.eq(diesel::dsl::now),
            moves::error.eq(error),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// `now() - stale` as SQL: the database's clock, as `heartbeat_at`'s.
fn older_than(
    stale: std::time::Duration,
) -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "heartbeat_at < now() - interval '{} milliseconds'",
        stale.as_millis()
    ))
}

/// Claims a copying move without heartbeat for `stale` (its process stopped): false
/// when it is alive or another process claimed it first.
pub async fn claim_stalled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    stale: std::time::Duration,
) -> QueryResult<bool> {
    diesel::update(
        moves::table
            .find(id)
            .filter(moves::state.eq(COPYING))
            .filter(older_than(stale)),
    )
    .set(moves::heartbeat_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(|n| n > 0)
}

/// Copying moves without heartbeat for `stale`.
pub async fn stalled(
    conn: &mut AsyncPgConnection,
    stale: std::time::Duration,
) -> QueryResult<Vec<MoveRow>> {
    moves::table
        .filter(moves::state.eq(COPYING))
        .filter(older_than(stale))
        .select(MoveRow::as_select())
        .load(conn)
        .await
}

/// Switched moves whose source may now be dropped.
pub async fn sources_due(conn: &mut AsyncPgConnection) -> QueryResult<Vec<MoveRow>> {
    moves::table
        .filter(moves::state.eq(SWITCHED))
        .filter(moves::drop_source_after.le(diesel::dsl::now))
        .select(MoveRow::as_select())
        .load(conn)
        .await
}

/// One move.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<MoveRow>> {
    moves::table
        .find(id)
        .select(MoveRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// `copying` → `rolled_back` (its clean-up still to do: no `finished_at`); false when
/// the move is no longer copying (it switched, or another rollback claimed it).
pub async fn start_rollback(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
) -> QueryResult<bool> {
    diesel::update(moves::table.find(id).filter(moves::state.eq(COPYING)))
        .set((moves::state.eq(ROLLED_BACK), moves::error.eq(reason)))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Records that a rolled-back move's clean-up is done.
pub async fn finished(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::update(moves::table.find(id))
        .set(moves::finished_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Rolled-back moves whose clean-up failed (a server was down): tried again.
pub async fn unfinished_rollbacks(conn: &mut AsyncPgConnection) -> QueryResult<Vec<MoveRow>> {
    moves::table
        .filter(moves::state.eq(ROLLED_BACK))
        .filter(moves::finished_at.is_null())
        .select(MoveRow::as_select())
        .load(conn)
        .await
}

/// How many moves into or out of `server` are copying.
pub async fn copying_on(conn: &mut AsyncPgConnection, server: Uuid) -> QueryResult<i64> {
    moves::table
        .filter(moves::state.eq(COPYING))
        .filter(
            moves::from_server
                .eq(server)
                .or(moves::to_server.eq(server)),
        )
        .count()
        .get_result(conn)
        .await
}
