//! Moving a tenant's database to another server (`tenant move`; docs/OPERATIONS.md,
//! "Moving a tenant"; the choices in docs/DESIGN-NOTES.md, "Database servers and
//! placement"):
//!
//! 1. the move is recorded (`tenant_moves`, state `copying`), so an interrupted one is
//!    resumed or rolled back from the record;
//! 2. the source database goes read-only: a statement trigger on each table refuses
//!    writes with SQLSTATE 25006, which the services answer as 503
//!    `tenant_maintenance`; creating it waits for the writes in flight, so none is
//!    lost, and reads go on;
//! 3. `pg_dump | pg_restore` copies the database into a new one of the same name on
//!    the target, and the triggers are taken off the copy;
//! 4. rows and a checksum per table are compared between source and copy;
//! 5. in one transaction of the main database the tenant's server becomes the target,
//!    the move `switched`, and `tenant.moved` goes to the audit log;
//! 6. the services are told (Redis broadcast) and connect to the target from their
//!    next request; the source stays, read-only, for `MOVE_KEEP_SOURCE_SECS`, then is
//!    dropped (`done`).
//!
//! A failure before the switch rolls back: the copy dropped, the source writable again.
//! A process killed mid-way leaves the move `copying` without heartbeat: running the
//! same move again resumes it (after `MOVE_STALE_SECS`), `--rollback` or the tenant
//! service's sweep rolls it back. The tenant is never on two servers at once (its row
//! names one) nor left read-only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{TenantId, TenantStatus};
use main_db::DbPool;
use serde::Serialize;
use uuid::Uuid;

use crate::fleet::Fleet;
use crate::placement::ServerState;
use crate::store::moves::{self, MoveRow, COPYING, DONE, SWITCHED};
use crate::store::servers::{self, ServerRow};
use crate::store::tenants::{self, TenantRow};

/// The Redis broadcast channel on which a move is announced (the tenant id): services
/// that cache where a tenant's database is forget it.
pub const MOVED_CHANNEL: &str = clients::tenant::TENANT_MOVED_CHANNEL;

/// How moves run: `MOVE_KEEP_SOURCE_SECS`, `MOVE_TIMEOUT_SECS`, `MOVE_STALE_SECS`,
/// `MOVE_PG_DUMP`, `MOVE_PG_RESTORE` (the tenant service's settings).
#[derive(Debug, Clone)]
pub struct MoveSettings {
    /// The source is dropped this long after the switch.
    pub keep_source: Duration,
    /// The copy (dump and restore) gives up after this.
    pub timeout: Duration,
    /// A copying move without heartbeat for this long was interrupted.
    pub stale_after: Duration,
    pub pg_dump: String,
    pub pg_restore: String,
}

/// One table as verified on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCheck {
    pub table: String,
    pub rows: i64,
    pub checksum: String,
}

/// What a move did.
#[derive(Debug, Clone)]
pub struct MoveReport {
    pub tenant: TenantId,
    pub from: String,
    pub to: String,
    pub tables: Vec<TableCheck>,
    /// From the source going read-only to the switch.
    pub read_only: Duration,
    pub total: Duration,
    /// Whether the source is already dropped (else: after `drop_source_after`).
    pub source_dropped: bool,
    pub drop_source_after: Option<chrono::DateTime<chrono::Utc>>,
    /// This run finished a move an earlier run had left.
    pub resumed: bool,
}

impl MoveReport {
    pub fn rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

#[derive(Clone)]
pub struct Mover {
    db: DbPool,
    fleet: Arc<Fleet>,
    settings: MoveSettings,
    moved: Option<cache::Broadcast>,
    relay: events::RelayHandle,
}

/// Stops the heartbeat of a move when dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

const READ_ONLY_TRIGGER: &str = "platform_tenant_read_only";

impl Mover {
    pub fn new(db: DbPool, fleet: Arc<Fleet>, settings: MoveSettings) -> Self {
        Self {
            db,
            fleet,
            settings,
            moved: None,
            relay: events::RelayHandle::disabled(),
        }
    }

    /// Announces each switch on `broadcast` (the services' caches).
    pub fn with_broadcast(mut self, broadcast: cache::Broadcast) -> Self {
        self.moved = Some(broadcast);
        self
    }

    pub fn with_relay(mut self, relay: events::RelayHandle) -> Self {
        self.relay = relay;
        self
    }

    async fn conn(&self) -> anyhow::Result<main_db::DbConnection> {
        Ok(self.db.get().await.map_err(main_db::DbError::from)?)
    }

    /// Moves `tenant` to the server named `to`, or resumes its interrupted move there.
    pub async fn run(&self, tenant: TenantId, to: &str) -> anyhow::Result<MoveReport> {
        let started = Instant::now();
        let (row, record, resumed) = self.begin(tenant, to).await?;
        if record.state == SWITCHED {
            return self.finish_switched(&row, record, started).await;
        }
        let outcome = self.copy_and_switch(&row, &record, started, resumed).await;
        match outcome {
            Ok(report) => Ok(report),
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(tenant.id = %tenant, error = %reason, "tenant move failed; rolling back");
                if let Err(undo) = self.roll_back(&record, &reason).await {
                    tracing::error!(tenant.id = %tenant, error = format!("{undo:#}"), "rolling the move back failed: run `tenant move --rollback`");
                }
                Err(e)
            }
        }
    }

    /// Checks the move and records it (or claims the interrupted one): the tenant, its
    /// move record, and whether it resumes an earlier run. The source is read-only
    /// once this returns for a `copying` move.
    pub async fn begin(
        &self,
        tenant: TenantId,
        to: &str,
    ) -> anyhow::Result<(TenantRow, MoveRow, bool)> {
        let mut conn = self.conn().await?;
        let row = tenants::find(&mut conn, tenant)
            .await?
            .with_context(|| format!("no tenant {tenant}"))?;
        let target = servers::find_by_name(&mut conn, to)
            .await?
            .with_context(|| format!("no database server named {to:?} (tenant servers list)"))?;
        let mut open = moves::open_of(&mut conn, tenant).await?;
        if let Some(done) = open.take_if(|m| m.state == SWITCHED && m.to_server != target.id) {
            // The last move's source, kept for a while, goes now: the tenant moves on.
            self.drop_source(&done).await?;
        }
        if let Some(open) = open {
            anyhow::ensure!(
                open.to_server == target.id,
                "tenant {tenant} has an unfinished move to another server: resume it there, or roll it back (tenant move --tenant-id {tenant} --rollback)"
            );
            if open.state == SWITCHED {
                return Ok((row, open, true));
            }
            anyhow::ensure!(
                moves::claim_stalled(&mut conn, open.id, self.settings.stale_after).await?,
                "a move of tenant {tenant} is running (its heartbeat is younger than MOVE_STALE_SECS): wait for it, or roll it back once it has stopped"
            );
            drop(conn);
            tracing::warn!(tenant.id = %tenant, to = %to, "resuming an interrupted move");
            let record = {
                let _alive = self.heartbeat(open.id);
                self.make_read_only(&row, &open).await?
            };
            return Ok((row, record, true));
        }
        anyhow::ensure!(
            row.server_id != target.id,
            "tenant {tenant} is on {to:?} already"
        );
        anyhow::ensure!(
            matches!(row.status(), TenantStatus::Active | TenantStatus::Deleted)
                && row.database_purged_at.is_none(),
            "tenant {tenant} is {} and has no database to move",
            row.status
        );
        anyhow::ensure!(
            target.state() == ServerState::Active,
            "database server {to:?} is {}: only an active server takes tenants",
            target.state
        );
        if let Some(max) = target.max_tenants {
            anyhow::ensure!(
                target.tenants < i64::from(max),
                "database server {to:?} is full ({} of {max} tenants)",
                target.tenants
            );
        }
        // Two registrations of one server: "copying" would drop the tenant's database.
        let (source, destination) = (
            self.fleet.manager(row.server_id).await?,
            self.fleet.manager_of(&target).await?,
        );
        anyhow::ensure!(
            !source.same_cluster(&destination).await?,
            "database server {to:?} is the PostgreSQL server the tenant is on, registered under another name: nothing to move"
        );
        let record = moves::insert(&mut conn, tenant, row.server_id, target.id)
            .await?
            .with_context(|| format!("tenant {tenant} has an unfinished move already"))?;
        drop(conn);
        tracing::info!(tenant.id = %tenant, to = %to, "moving tenant");
        let made_read_only = {
            let _alive = self.heartbeat(record.id);
            self.make_read_only(&row, &record).await
        };
        let record = match made_read_only {
            Ok(record) => record,
            Err(e) => {
                let reason = format!("{e:#}");
                let _ = self.roll_back(&record, &reason).await;
                return Err(e);
            }
        };
        Ok((row, record, false))
    }

    /// Step 2: the source refuses writes (waiting for those in flight).
    async fn make_read_only(&self, row: &TenantRow, record: &MoveRow) -> anyhow::Result<MoveRow> {
        let source = self.fleet.manager(record.from_server).await?;
        let database = row.database()?;
        let mut conn = connect(
            &source.admin_database_url(&database),
            source.settings().timeout,
        )
        .await?;
        conn.batch_execute(&read_only_sql(true))
            .await
            .context("making the source read-only (writes in flight did not end in time?)")?;
        let mut main = self.conn().await?;
        Ok(moves::set_read_only(&mut main, record.id).await?)
    }

    /// Steps 3 to 6.
    async fn copy_and_switch(
        &self,
        row: &TenantRow,
        record: &MoveRow,
        started: Instant,
        resumed: bool,
    ) -> anyhow::Result<MoveReport> {
        let _heartbeat = self.heartbeat(record.id);
        let tenant = row.tenant_id();
        let database = row.database()?;
        let source = self.fleet.manager(record.from_server).await?;
        let target = self.fleet.manager(record.to_server).await?;
        let read_only_since = Instant::now()
            - (chrono::Utc::now() - record.read_only_at.unwrap_or_else(chrono::Utc::now))
                .to_std()
                .unwrap_or_default();

        // A copy an interrupted attempt left is not trusted: made again.
        target.drop_database(&database).await?;
        target
            .create_empty(&database)
            .await
            .context("creating the database on the target")?;
        self.copy(
            &source.admin_database_url(&database),
            &target.admin_database_url(&database),
        )
        .await?;
        let target_url = target.admin_database_url(&database);
        let mut copy = connect(&target_url, target.settings().timeout).await?;
        copy.batch_execute(&read_only_sql(false))
            .await
            .context("taking the read-only triggers off the copy")?;
        drop(copy);

        let before = checks(
            &source.admin_database_url(&database),
            source.settings().timeout,
        )
        .await?;
        anyhow::ensure!(
            before
                .iter()
                .any(|t| t.table == "__diesel_schema_migrations"),
            "the source database has no tenant schema: refusing to switch to its copy"
        );
        let after = checks(&target_url, target.settings().timeout).await?;
        anyhow::ensure!(
            before == after,
            "the copy differs from the source: {}",
            differences(&before, &after)
        );

        let names = self.server_names(record).await?;
        let drop_after =
            chrono::Utc::now() + chrono::Duration::from_std(self.settings.keep_source)?;
        let read_only = read_only_since.elapsed();
        let event = events::EventEnvelope::of(
            &events::AuditRecord::new(
                "tenant.moved",
                // Server and database names are the operator's: they stay in the logs.
                serde_json::json!({
                    "rows": before.iter().map(|t| t.rows).sum::<i64>(),
                    "tables": before.len(),
                    "read_only_ms": u64::try_from(read_only.as_millis()).unwrap_or(u64::MAX),
                }),
            ),
            Some(tenant),
            None,
        )?;
        let verified = serde_json::to_value(&before)?;
        let mut conn = self.conn().await?;
        let switched = conn
            .transaction::<_, anyhow::Error, _>(async |tx| {
                // A purge in progress finishes first (and this then finds it purged).
                tenants::lock_database(tx, tenant).await?;
                // The target may have been disabled or filled meanwhile: placement's
                // lock, as for new tenants.
                servers::lock_placement(tx).await?;
                let target = servers::find(tx, record.to_server)
                    .await?
                    .context("the target server is gone")?;
                anyhow::ensure!(
                    target.state() != ServerState::Disabled,
                    "database server {:?} was disabled during the move",
                    target.name
                );
                if let Some(max) = target.max_tenants {
                    anyhow::ensure!(
                        target.tenants < i64::from(max),
                        "database server {:?} filled up during the move ({} of {max} tenants)",
                        target.name,
                        target.tenants
                    );
                }
                anyhow::ensure!(
                    tenants::set_server(tx, tenant, record.from_server, record.to_server).await?,
                    "the tenant's server changed, or it was purged, meanwhile"
                );
                let switched = moves::switch(tx, record.id, &verified, drop_after)
                    .await?
                    .context("the move was rolled back meanwhile (its heartbeat had stopped)")?;
                events::enqueue(tx, &event).await?;
                Ok(switched)
            })
            .await?;
        drop(conn);
        self.relay.nudge(events::OutboxDb::Main);
        tracing::info!(tenant.id = %tenant, from = %names.0, to = %names.1, read_only_ms = read_only.as_millis() as u64, "tenant moved");
        self.announce(tenant).await;
        source.pools().evict(&database);
        let mut report = MoveReport {
            tenant,
            from: names.0,
            to: names.1,
            tables: before,
            read_only,
            total: started.elapsed(),
            source_dropped: false,
            drop_source_after: switched.drop_source_after,
            resumed,
        };
        if self.settings.keep_source.is_zero() {
            // The move is done either way: a source that cannot be dropped now is left
            // to the sweep.
            match self.drop_source(&switched).await {
                Ok(()) => report.source_dropped = true,
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, error = format!("{e:#}"), "the source could not be dropped yet; the sweep will")
                }
            }
        }
        Ok(report)
    }

    /// A move run again after its switch: the source dropped if it is due.
    async fn finish_switched(
        &self,
        row: &TenantRow,
        record: MoveRow,
        started: Instant,
    ) -> anyhow::Result<MoveReport> {
        let due = record
            .drop_source_after
            .is_none_or(|at| at <= chrono::Utc::now());
        if due {
            self.drop_source(&record).await?;
        }
        let names = self.server_names(&record).await?;
        let tables = record
            .verified
            .clone()
            .and_then(|v| serde_json::from_value::<Vec<VerifiedTable>>(v).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|t| TableCheck {
                table: t.table,
                rows: t.rows,
                checksum: t.checksum,
            })
            .collect();
        Ok(MoveReport {
            tenant: row.tenant_id(),
            from: names.0,
            to: names.1,
            tables,
            read_only: Duration::ZERO,
            total: started.elapsed(),
            source_dropped: due,
            drop_source_after: record.drop_source_after,
            resumed: true,
        })
    }

    /// Rolls back the unfinished (copying) move of `tenant`.
    pub async fn rollback(&self, tenant: TenantId) -> anyhow::Result<()> {
        let mut conn = self.conn().await?;
        let open = moves::open_of(&mut conn, tenant)
            .await?
            .with_context(|| format!("tenant {tenant} has no unfinished move"))?;
        anyhow::ensure!(
            open.state == COPYING,
            "the move of tenant {tenant} was switched already: the tenant is on its new server (its source is dropped when due)"
        );
        anyhow::ensure!(
            moves::claim_stalled(&mut conn, open.id, self.settings.stale_after).await?,
            "the move of tenant {tenant} is running (its heartbeat is younger than MOVE_STALE_SECS)"
        );
        drop(conn);
        self.roll_back(&open, "rolled back by an operator").await
    }

    /// Ends a copying move as `rolled_back` (first, so a switch racing it fails), then
    /// makes the source writable again and drops the copy. A move that switched
    /// meanwhile is left alone. A clean-up that fails (a server down) is tried again
    /// by the sweep: the move stays `rolled_back` without `finished_at`.
    async fn roll_back(&self, record: &MoveRow, reason: &str) -> anyhow::Result<()> {
        let mut conn = self.conn().await?;
        let tenant = TenantId::from_uuid(record.tenant_id);
        let claimed = conn
            .transaction::<_, anyhow::Error, _>(async |tx| {
                tenants::lock_database(tx, tenant).await?;
                Ok(moves::start_rollback(tx, record.id, reason).await?)
            })
            .await?;
        drop(conn);
        if !claimed {
            tracing::warn!(tenant.id = %tenant, "the move is no longer copying: nothing to roll back");
            return Ok(());
        }
        tracing::warn!(tenant.id = %tenant, %reason, "tenant move rolled back");
        self.clean_up_rollback(record).await
    }

    /// What a rollback undoes: the source's triggers first (the tenant must get its
    /// writes back even while the target is down), then the copy.
    async fn clean_up_rollback(&self, record: &MoveRow) -> anyhow::Result<()> {
        let mut conn = self.conn().await?;
        let tenant = TenantId::from_uuid(record.tenant_id);
        let row = tenants::find(&mut conn, tenant)
            .await?
            .context("the tenant is gone")?;
        // A newer move of the tenant owns its databases now.
        if moves::open_of(&mut conn, tenant).await?.is_some() {
            return moves::finished(&mut conn, record.id)
                .await
                .map_err(Into::into);
        }
        drop(conn);
        let database = row.database()?;
        if row.server_id == record.from_server {
            let source = self.fleet.manager(record.from_server).await?;
            if source.exists(&database).await? {
                let mut source_conn = connect(
                    &source.admin_database_url(&database),
                    source.settings().timeout,
                )
                .await?;
                source_conn
                    .batch_execute(&read_only_sql(false))
                    .await
                    .context("making the source writable again")?;
            }
        }
        // Never where the tenant lives.
        if row.server_id != record.to_server {
            let target = self.fleet.manager(record.to_server).await?;
            target.drop_database(&database).await?;
        }
        let mut conn = self.conn().await?;
        moves::finished(&mut conn, record.id).await?;
        Ok(())
    }

    /// Drops the source of a switched move; the move `done`. The move is claimed
    /// under the tenant's database lock first, so a sweep working from an old list
    /// never drops a database a newer move has made there since.
    async fn drop_source(&self, record: &MoveRow) -> anyhow::Result<()> {
        let tenant = TenantId::from_uuid(record.tenant_id);
        let mut conn = self.conn().await?;
        let mut lock = self.conn().await?;
        lock.transaction::<_, anyhow::Error, _>(async |held| {
            tenants::lock_database(held, tenant).await?;
            let Some(current) = moves::find(&mut conn, record.id).await? else {
                return Ok(());
            };
            if current.state != SWITCHED {
                // Dropped by another sweep, or by a newer move.
                return Ok(());
            }
            let row = tenants::find(&mut conn, tenant)
                .await?
                .context("the tenant is gone")?;
            anyhow::ensure!(
                row.server_id != record.from_server,
                "tenant {} is on the move's source again: its database there is kept",
                row.id
            );
            let source = self.fleet.manager(record.from_server).await?;
            let target = self.fleet.manager(record.to_server).await?;
            anyhow::ensure!(
                !target.same_cluster(&source).await?,
                "the move's source and target are one PostgreSQL server: its database there is the tenant's, kept"
            );
            source.drop_database(&row.database()?).await?;
            moves::finish(&mut conn, record.id, SWITCHED, DONE, None).await?;
            tracing::info!(tenant.id = %row.id, "the moved tenant's source database dropped");
            Ok(())
        })
        .await
    }

    /// Rolls back moves whose process stopped, and drops the sources that are due;
    /// answers how many of each.
    pub async fn sweep(&self) -> anyhow::Result<(usize, usize)> {
        let mut conn = self.conn().await?;
        let stale = self.settings.stale_after;
        let stalled = moves::stalled(&mut conn, stale).await?;
        let due = moves::sources_due(&mut conn).await?;
        for record in moves::unfinished_rollbacks(&mut conn).await? {
            if let Err(e) = self.clean_up_rollback(&record).await {
                tracing::warn!(tenant.id = %record.tenant_id, error = format!("{e:#}"), "a rolled-back move's clean-up failed again");
            }
        }
        let mut rolled_back = 0;
        for record in stalled {
            if !moves::claim_stalled(&mut conn, record.id, stale).await? {
                continue;
            }
            match self
                .roll_back(&record, "interrupted: its process stopped (no heartbeat)")
                .await
            {
                Ok(()) => rolled_back += 1,
                Err(e) => {
                    tracing::error!(tenant.id = %record.tenant_id, error = format!("{e:#}"), "could not roll back an interrupted move")
                }
            }
        }
        let mut dropped = 0;
        for record in due {
            match self.drop_source(&record).await {
                Ok(()) => dropped += 1,
                Err(e) => {
                    tracing::warn!(tenant.id = %record.tenant_id, error = format!("{e:#}"), "could not drop a moved tenant's source")
                }
            }
        }
        Ok((rolled_back, dropped))
    }

    /// Sweeps every `every` until `stop` is cancelled.
    pub async fn sweep_loop(self, every: Duration, stop: http_kit::lifecycle::CancellationToken) {
        http_kit::lifecycle::every(every, stop, || async {
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = format!("{e:#}"), "move sweep failed");
            }
        })
        .await;
    }

    fn heartbeat(&self, id: Uuid) -> Heartbeat {
        let db = self.db.clone();
        let every = (self.settings.stale_after / 4).max(Duration::from_millis(100));
        Heartbeat(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Ok(mut conn) = db.get().await {
                    if let Err(e) = moves::heartbeat(&mut conn, id).await {
                        tracing::warn!(error = %e, "move heartbeat failed");
                    }
                }
            }
        }))
    }

    async fn announce(&self, tenant: TenantId) {
        if let Some(broadcast) = &self.moved {
            if let Err(e) = broadcast.publish(&tenant.to_string()).await {
                // Services then follow within their cache's lifetime; the source stays
                // read-only (writes 503) meanwhile.
                tracing::warn!(tenant.id = %tenant, error = %e, "could not announce the move");
            }
        }
    }

    async fn server_names(&self, record: &MoveRow) -> anyhow::Result<(String, String)> {
        let mut conn = self.conn().await?;
        let list: Vec<ServerRow> = servers::list(&mut conn).await?;
        let name = |id: Uuid| {
            list.iter()
                .find(|s| s.id == id)
                .map_or_else(|| id.to_string(), |s| s.name.clone())
        };
        Ok((name(record.from_server), name(record.to_server)))
    }

    /// `pg_dump` of the source into `pg_restore` of the target, within the timeout;
    /// passwords go through `PGPASSWORD`, never the command line.
    async fn copy(&self, source_url: &str, target_url: &str) -> anyhow::Result<()> {
        use std::process::Stdio;
        use tokio::process::Command;
        let (source, source_password) = without_password(source_url)?;
        let (target, target_password) = without_password(target_url)?;
        let with_password = |command: &mut Command, password: Option<String>| {
            command.env_remove("PGPASSWORD");
            if let Some(password) = password {
                command.env("PGPASSWORD", password);
            }
        };
        let mut dump = Command::new(&self.settings.pg_dump);
        dump.args(["--format=custom", "--no-owner", "--no-privileges"])
            .arg(format!("--dbname={source}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        with_password(&mut dump, source_password);
        let mut dump = dump
            .spawn()
            .with_context(|| format!("running {} (MOVE_PG_DUMP)", self.settings.pg_dump))?;
        let piped: Stdio = dump
            .stdout
            .take()
            .context("pg_dump's output")?
            .try_into()
            .context("pg_dump's output")?;
        let mut restore = Command::new(&self.settings.pg_restore);
        restore
            .args([
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
            ])
            .arg(format!("--dbname={target}"))
            .stdin(piped)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        with_password(&mut restore, target_password);
        let restore = restore
            .spawn()
            .with_context(|| format!("running {} (MOVE_PG_RESTORE)", self.settings.pg_restore))?;
        let both = async { tokio::join!(dump.wait_with_output(), restore.wait_with_output()) };
        let (dumped, restored) = tokio::time::timeout(self.settings.timeout, both)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the copy took longer than MOVE_TIMEOUT_SECS ({:?})",
                    self.settings.timeout
                )
            })?;
        let (dumped, restored) = (dumped?, restored?);
        anyhow::ensure!(
            dumped.status.success(),
            "pg_dump failed ({}): {}",
            dumped.status,
            tail(&dumped.stderr)
        );
        anyhow::ensure!(
            restored.status.success(),
            "pg_restore failed ({}): {}",
            restored.status,
            tail(&restored.stderr)
        );
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct VerifiedTable {
    table: String,
    rows: i64,
    checksum: String,
}

/// The SQL that puts (`on`) or takes off the read-only trigger of every table. Only
/// where missing (or present): `CREATE TRIGGER` takes a lock that waits for writes and
/// lets reads through, while `DROP TRIGGER` (even `IF EXISTS`) locks reads out too.
fn read_only_sql(on: bool) -> String {
    let (wanted, statement, function) = if on {
        (
            "NOT EXISTS",
            format!(
                "CREATE TRIGGER {READ_ONLY_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE \
                 ON public.%I FOR EACH STATEMENT EXECUTE FUNCTION public.{READ_ONLY_TRIGGER}()"
            ),
            format!(
                "CREATE OR REPLACE FUNCTION public.{READ_ONLY_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $f$ \
                 BEGIN RAISE EXCEPTION 'tenant_maintenance: this tenant is being moved to another database server' \
                 USING ERRCODE = '25006'; END $f$;"
            ),
        )
    } else {
        (
            "EXISTS",
            format!("DROP TRIGGER {READ_ONLY_TRIGGER} ON public.%I"),
            String::new(),
        )
    };
    let drop_function = if on {
        String::new()
    } else {
        format!("DROP FUNCTION IF EXISTS public.{READ_ONLY_TRIGGER}();")
    };
    // Creating a trigger waits for the writes in flight on its table; a writer that
    // holds on for longer than the lock timeout fails the move rather than stalling
    // the tables' other writers behind the trigger's lock.
    format!(
        "BEGIN; SET LOCAL lock_timeout = '10s'; {function} \
         DO $d$ DECLARE t text; BEGIN \
           FOR t IN SELECT c.relname FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
               AND {wanted} (SELECT 1 FROM pg_catalog.pg_trigger g \
                   WHERE g.tgrelid = c.oid AND g.tgname = '{READ_ONLY_TRIGGER}') \
               ORDER BY 1 LOOP \
             EXECUTE format('{statement}', t); \
           END LOOP; END $d$; {drop_function} COMMIT;"
    )
}

/// Rows and checksum of every table of the database at `url`, by name.
async fn checks(url: &str, timeout: Duration) -> anyhow::Result<Vec<TableCheck>> {
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        tablename: String,
    }
    #[derive(diesel::QueryableByName)]
    struct Sum {
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = Text)]
        checksum: String,
    }
    let mut conn = connect(url, timeout).await?;
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT tablename::text AS tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .load(&mut conn)
    .await?;
    let mut checked = Vec::with_capacity(tables.len());
    for Name { tablename } in tables {
        let quoted = format!("\"{}\"", tablename.replace('"', "\"\""));
        let sum: Sum = diesel::sql_query(format!(
            "SELECT count(*)::bigint AS rows, \
             coalesce(md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))), '') AS checksum \
             FROM public.{quoted} t"
        ))
        .get_result(&mut conn)
        .await
        .with_context(|| format!("checking table {tablename}"))?;
        checked.push(TableCheck {
            table: tablename,
            rows: sum.rows,
            checksum: sum.checksum,
        });
    }
    Ok(checked)
}

fn differences(before: &[TableCheck], after: &[TableCheck]) -> String {
    let mut out = Vec::new();
    for b in before {
        match after.iter().find(|a| a.table == b.table) {
            None => out.push(format!("{} missing", b.table)),
            Some(a) if a.rows != b.rows => {
                out.push(format!("{}: {} rows, {} copied", b.table, b.rows, a.rows))
            }
            Some(a) if a.checksum != b.checksum => {
                out.push(format!("{}: contents differ", b.table))
            }
            Some(_) => {}
        }
    }
    for a in after {
        if !before.iter().any(|b| b.table == a.table) {
            out.push(format!("{} is not in the source", a.table));
        }
    }
    out.join("; ")
}

async fn connect(url: &str, timeout: Duration) -> anyhow::Result<AsyncPgConnection> {
    tokio::time::timeout(timeout, AsyncPgConnection::establish(url))
        .await
        .map_err(|_| anyhow::anyhow!("connecting timed out after {timeout:?}"))?
        .map_err(|e| anyhow::anyhow!("connecting failed: {e}"))
}

/// `url` without its password, and the password (percent-decoded).
fn without_password(url: &str) -> anyhow::Result<(String, Option<String>)> {
    let mut parsed = url::Url::parse(url).context("a database URL that does not parse")?;
    let password = parsed.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = parsed.set_password(None);
    // libpq also takes a password (and a key's) in the query string.
    let mut query_password = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(k, v)| match k.as_ref() {
            "password" => {
                query_password = Some(v.into_owned());
                None
            }
            "sslpassword" => None,
            _ => Some((k.into_owned(), v.into_owned())),
        })
        .collect();
    if parsed.query().is_some() {
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    Ok((parsed.to_string(), password.or(query_password)))
}

/// The end of a tool's error output, for the reason of a failure.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text.len().saturating_sub(500);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url_and_are_decoded() {
        let (url, password) = without_password(
            "postgres://app:p%40ss%3Aword@db.example:6543/tenant_a?sslmode=require",
        )
        .expect("parses");
        assert_eq!(
            url,
            "postgres://app@db.example:6543/tenant_a?sslmode=require"
        );
        assert_eq!(password.as_deref(), Some("p@ss:word"));
        let (_, none) = without_password("postgres://app@db/x").expect("parses");
        assert_eq!(none, None);
        let (url, password) =
            without_password("postgres://app@db/x?sslmode=require&password=s3cret&sslpassword=k")
                .expect("parses");
        assert_eq!(url, "postgres://app@db/x?sslmode=require");
        assert_eq!(password.as_deref(), Some("s3cret"));
    }

    #[test]
    fn differences_name_each_table() {
        let t = |table: &str, rows: i64, checksum: &str| TableCheck {
            table: table.to_owned(),
            rows,
            checksum: checksum.to_owned(),
        };
        let before = [
            t("documents", 10, "a"),
            t("files", 5, "b"),
            t("outbox", 0, ""),
        ];
        let after = [
            t("documents", 9, "a"),
            t("files", 5, "c"),
            t("extra", 1, "d"),
        ];
        assert_eq!(
            differences(&before, &after),
            "documents: 10 rows, 9 copied; files: contents differ; outbox missing; extra is not in the source"
        );
    }
}
