//! Tenant databases on real PostgreSQL: create from template, drop under load, the
//! bounded pool cache, and the migration runner (dry-run, history, failures).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{TenantDatabaseName, TenantName};
use tenant_db::migrations::{self, Mode, Outcome, Target};
use tenant_db::{TenantDatabaseManager, TenantDbError, TenantDbSettings};
use testkit::TestContext;

fn settings(ctx: &TestContext) -> TenantDbSettings {
    TenantDbSettings::new(ctx.main_url.clone(), ctx.tenant_template.clone())
}

fn new_name(ctx: &TestContext, label: &str) -> TenantDatabaseName {
    let name = TenantDatabaseName::generate(&TenantName::parse(label).expect("valid"));
    ctx.track_database(name.as_str());
    name
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.expect("connect")
}

/// Everything a dry-run could change: relations (with kind) and the version table.
async fn snapshot(url: &str) -> Vec<String> {
    let mut conn = connect(url).await;
    let mut rows: Vec<Row> = diesel::sql_query(
        "SELECT c.relname::text || ':' || c.relkind::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .expect("relations");
    let has_versions: Vec<Row> = diesel::sql_query(
        "SELECT 'v' AS name WHERE to_regclass('public.__diesel_schema_migrations') IS NOT NULL",
    )
    .load(&mut conn)
    .await
    .expect("probe");
    if !has_versions.is_empty() {
        rows.extend(
            diesel::sql_query("SELECT version || '@' || run_on::text AS name FROM __diesel_schema_migrations ORDER BY 1")
                .load::<Row>(&mut conn)
                .await
                .expect("versions"),
        );
    }
    rows.into_iter().map(|r| r.name).collect()
}

async fn tables(url: &str) -> Vec<String> {
    let mut conn = connect(url).await;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .load(&mut conn)
    .await
    .expect("tables");
    rows.into_iter().map(|r| r.name).collect()
}

/// A database without the latest tenant migration, as if made by an older release
/// (the latest migration's down.sql, run on a fresh copy of the template).
async fn create_outdated(manager: &TenantDatabaseManager, name: &TenantDatabaseName) {
    manager.create_from_template(name).await.expect("create");
    let latest = migrations::known_versions().pop().expect("a migration");
    let down = testkit::latest_down_sql(&testkit::tenant_migrations_dir());
    let mut conn = connect(&manager.database_url(name)).await;
    conn.batch_execute(&format!(
        "{down}; DELETE FROM __diesel_schema_migrations WHERE version = '{latest}'"
    ))
    .await
    .expect("downgrade");
}

#[tokio::test]
async fn created_databases_are_migrated_copies_of_the_template() {
    let ctx = TestContext::new().await;
    let manager = TenantDatabaseManager::new(settings(&ctx)).expect("manager");
    let name = new_name(&ctx, "Acme");
    assert!(!manager.exists(&name).await.expect("exists"));
    manager.create_from_template(&name).await.expect("create");
    assert!(manager.exists(&name).await.expect("exists"));
    assert_eq!(
        tables(&manager.database_url(&name)).await,
        [
            "__diesel_schema_migrations",
            "documents",
            "files",
            "outbox",
            "pending_uploads",
            "processed_events"
        ]
    );
    assert!(
        migrations::pending(&manager.database_url(&name), Duration::from_secs(5))
            .await
            .expect("pending")
            .is_empty()
    );
    let err = manager
        .create_from_template(&name)
        .await
        .expect_err("twice");
    assert!(matches!(err, TenantDbError::AlreadyExists(_)), "{err:?}");
}

#[tokio::test]
async fn dropping_a_database_with_open_connections_works() {
    let ctx = TestContext::new().await;
    let manager = TenantDatabaseManager::new(settings(&ctx)).expect("manager");
    let name = new_name(&ctx, "Busy");
    manager.create_from_template(&name).await.expect("create");
    // A pooled connection, returned but kept open by the pool, and a foreign session
    // that stays connected.
    {
        let mut pooled = manager.connection(&name).await.expect("pooled");
        diesel::sql_query("SELECT 1")
            .execute(&mut *pooled)
            .await
            .expect("query");
    }
    let mut foreign = connect(&manager.database_url(&name)).await;
    diesel::sql_query("SELECT 1")
        .execute(&mut foreign)
        .await
        .expect("query");

    manager.drop_database(&name).await.expect("drop");
    assert!(!manager.exists(&name).await.expect("exists"));
    assert_eq!(manager.pools().stats().pools, 0, "its pool was closed");
    assert!(
        diesel::sql_query("SELECT 1")
            .execute(&mut foreign)
            .await
            .is_err(),
        "the foreign session was terminated"
    );
    manager
        .drop_database(&name)
        .await
        .expect("dropping again is a no-op");
}

#[tokio::test]
async fn ensure_template_creates_and_migrates_a_missing_template() {
    let ctx = TestContext::new().await;
    let template = format!("{}_fresh", ctx.tenant_template);
    ctx.track_database(&template);
    let manager = TenantDatabaseManager::new(TenantDbSettings::new(
        ctx.main_url.clone(),
        template.clone(),
    ))
    .expect("manager");
    let report = manager.ensure_template().await.expect("ensure");
    assert_eq!(report.applied, migrations::known_versions());
    assert!(manager
        .ensure_template()
        .await
        .expect("again")
        .applied
        .is_empty());
    let name = new_name(&ctx, "From fresh");
    manager
        .create_from_template(&name)
        .await
        .expect("create from the new template");
    assert!(tables(&manager.database_url(&name))
        .await
        .contains(&"documents".to_owned()));
}

#[tokio::test]
async fn the_pool_cache_never_exceeds_its_bound_under_a_burst() {
    let ctx = TestContext::new().await;
    let mut s = settings(&ctx);
    s.max_pools = 3;
    s.connections_per_pool = 2;
    s.timeout = Duration::from_secs(20);
    let bound = s.connection_bound();
    let manager = Arc::new(TenantDatabaseManager::new(s).expect("manager"));
    let mut names = Vec::new();
    for i in 0..8 {
        let name = new_name(&ctx, &format!("burst {i}"));
        manager.create_from_template(&name).await.expect("create");
        names.push(name);
    }
    let names = Arc::new(names);
    let peak_cache = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Sample what PostgreSQL itself sees, not only our counters.
    let sampler = {
        let (names, stop, url) = (names.clone(), stop.clone(), ctx.main_url.clone());
        let manager = manager.clone();
        let peak_cache = peak_cache.clone();
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let list: Vec<String> = names.iter().map(|n| n.as_str().to_owned()).collect();
            let mut peak = 0i64;
            while !std::sync::atomic::AtomicBool::load(&stop, Ordering::Relaxed) {
                let c: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = ANY($1)",
                )
                .bind::<diesel::sql_types::Array<Text>, _>(&list)
                .get_result(&mut conn)
                .await
                .expect("count");
                peak = peak.max(c.n);
                peak_cache.fetch_max(manager.pools().stats().open_connections, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };

    let mut tasks = Vec::new();
    for i in 0..60usize {
        let (manager, names) = (manager.clone(), names.clone());
        tasks.push(tokio::spawn(async move {
            let name = &names[(i * 7) % names.len()];
            let mut conn = manager.connection(name).await?;
            diesel::sql_query("SELECT pg_sleep(0.01)")
                .execute(&mut *conn)
                .await?;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await
            .expect("join")
            .expect("every request is served, some after waiting");
    }
    stop.store(true, Ordering::Relaxed);
    let peak_server = sampler.await.expect("sampler");
    let stats = manager.pools().stats();
    // Pools past max_pools exist only while every pool is in use, one per permit at
    // most; connections never pass the budget.
    assert!(stats.pools <= bound, "{stats:?}");
    assert!(
        AtomicUsize::load(&peak_cache, Ordering::Relaxed) <= bound,
        "cache peak {} > {bound}",
        AtomicUsize::load(&peak_cache, Ordering::Relaxed)
    );
    assert!(
        peak_server as usize <= bound,
        "server saw {peak_server} tenant connections > {bound}"
    );
    assert!(peak_server > 0, "the sampler saw the burst");
}

/// Tenant connections PostgreSQL itself has open to `names`.
async fn server_connections(url: &str, names: &[&TenantDatabaseName]) -> i64 {
    let list: Vec<String> = names.iter().map(|n| n.as_str().to_owned()).collect();
    let c: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = ANY($1)")
            .bind::<diesel::sql_types::Array<Text>, _>(&list)
            .get_result(&mut connect(url).await)
            .await
            .expect("count");
    c.n
}

#[tokio::test]
async fn a_busy_tenant_borrows_the_idle_budget_of_others_and_the_bound_holds() {
    let ctx = TestContext::new().await;
    let mut s = settings(&ctx);
    s.max_pools = 4;
    s.connections_per_pool = 2;
    s.timeout = Duration::from_millis(1500);
    s.quiet_after = Duration::from_millis(300);
    assert_eq!((s.connection_bound(), s.burst()), (8, 4));
    let manager = Arc::new(TenantDatabaseManager::new(s).expect("manager"));
    let mut names = Vec::new();
    for label in ["hot", "warm", "cool", "cold"] {
        let name = new_name(&ctx, label);
        manager.create_from_template(&name).await.expect("create");
        names.push(name);
    }
    let [hot, warm, cool, cold] = [&names[0], &names[1], &names[2], &names[3]];
    let all = [hot, warm, cool, cold];
    // Three tenants used two connections each, now idle: 6 of the 8 permits.
    for name in [warm, cool, cold] {
        let pair = (
            manager.connection(name).await.expect("first"),
            manager.connection(name).await.expect("second"),
        );
        drop(pair);
    }
    assert_eq!(manager.pools().stats().open_connections, 6);
    // Not yet quiet: the busy tenant would have to wait for their connections.
    let early = manager.connection(hot).await.expect("a free permit");
    let also = manager.connection(hot).await.expect("the last free permit");
    let third = manager.connection(hot);
    tokio::pin!(third);
    assert!(
        tokio::time::timeout(Duration::from_millis(150), &mut third)
            .await
            .is_err(),
        "the others' idle connections were taken before they were quiet"
    );
    // Once they are quiet (300 ms without a request) the waiting request is served
    // from one of them, though nothing was returned or freed meanwhile: well within
    // its 1.5 s timeout, not at the idle sweep (every 30 s here).
    let third = third
        .await
        .expect("served once the others went quiet, before the timeout");
    drop((early, also, third));

    // The busy tenant grows to its burst (4), two of them by closing idle ones of
    // others, without waiting for the timeout.
    let started = std::time::Instant::now();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(manager.connection(hot).await.expect("within the burst"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let stats = manager.pools().stats();
    assert_eq!(stats.largest_pool, 4, "{stats:?}");
    assert!(stats.open_connections <= 8, "{stats:?}");
    assert!(server_connections(&ctx.main_url, &all).await <= 8);
    // Past its burst it waits like any pool, and gives up with a clear error.
    let err = manager.connection(hot).await.err().expect("burst reached");
    assert!(matches!(err, TenantDbError::PoolExhausted(_)), "{err:?}");

    // A second busy tenant takes the rest: every permit is now in use.
    let mut warm_held = Vec::new();
    for _ in 0..4 {
        warm_held.push(
            manager
                .connection(warm)
                .await
                .expect("the rest of the budget"),
        );
    }
    assert_eq!(manager.pools().stats().open_connections, 8);
    // A third tenant waits; a connection returned by another (idle, not closed) is
    // closed for it at once rather than after the idle sweep.
    let waiting = {
        let manager = manager.clone();
        let cool = cool.clone();
        tokio::spawn(async move { manager.connection(&cool).await.map(drop) })
    };
    // Its pool is leased: it is acquiring.
    testkit::wait_until(Duration::from_secs(1), || async {
        manager.pools().stats().leased_pools == 3
    })
    .await
    .expect("the third tenant asks");
    assert!(!waiting.is_finished(), "the budget is spent: it must wait");
    held.pop();
    waiting
        .await
        .expect("join")
        .expect("served once a connection went back to its pool");
    assert!(manager.pools().stats().open_connections <= 8);
    assert!(server_connections(&ctx.main_url, &all).await <= 8);
}

#[tokio::test]
async fn busy_tenants_level_out_instead_of_taking_connections_from_each_other() {
    let ctx = TestContext::new().await;
    let mut s = settings(&ctx);
    s.max_pools = 4;
    s.connections_per_pool = 2;
    s.timeout = Duration::from_secs(20);
    let bound = s.connection_bound();
    let manager = Arc::new(TenantDatabaseManager::new(s).expect("manager"));
    let mut names = Vec::new();
    for i in 0..4 {
        let name = new_name(&ctx, &format!("level {i}"));
        manager.create_from_template(&name).await.expect("create");
        names.push(name);
    }
    // Four tenants, three clients each: 12 wanted, 8 in the budget, each tenant under
    // its burst of 4, so each is tempted to take another's idle connection.
    let mut tasks = Vec::new();
    for i in 0..12usize {
        let (manager, name) = (manager.clone(), names[i % 4].clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..100 {
                let mut conn = manager.connection(&name).await?;
                diesel::sql_query("SELECT pg_sleep(0.002)")
                    .execute(&mut *conn)
                    .await?;
                drop(conn);
                // A client's think time: the connection sits idle in its pool, as
                // between two HTTP requests.
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("every request served");
    }
    let stats = manager.pools().stats();
    assert!(stats.open_connections <= bound, "{stats:?}");
    // 1,200 requests. Leveling opened 8-9 here; taking the idle connections of any
    // pool between two of its requests opened 20-40, and of any pool at all (the first
    // version) far more.
    assert!(
        stats.opened <= 2 * bound,
        "{} connections opened for 1200 requests: churn ({stats:?})",
        stats.opened
    );
}

#[tokio::test]
async fn busy_tenants_holding_every_pool_do_not_lock_another_out() {
    let ctx = TestContext::new().await;
    let mut s = settings(&ctx);
    s.max_pools = 2;
    s.connections_per_pool = 2;
    s.timeout = Duration::from_millis(1500);
    let manager = TenantDatabaseManager::new(s).expect("manager");
    let (a, b, c) = (
        new_name(&ctx, "a"),
        new_name(&ctx, "b"),
        new_name(&ctx, "c"),
    );
    for name in [&a, &b, &c] {
        manager.create_from_template(name).await.expect("create");
    }
    // Both pools in use (their tenants busy), the budget not spent.
    let held = (
        manager.connection(&a).await.expect("a"),
        manager.connection(&b).await.expect("b"),
    );
    let started = std::time::Instant::now();
    manager
        .connection(&c)
        .await
        .expect("a third tenant gets a pool and a connection");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(manager.pools().stats().pools, 3);
    drop(held);
}

#[tokio::test]
async fn a_query_cut_off_by_a_dropped_database_reads_as_a_lost_connection() {
    let ctx = TestContext::new().await;
    let manager = TenantDatabaseManager::new(settings(&ctx)).expect("manager");
    let name = new_name(&ctx, "cut off");
    manager.create_from_template(&name).await.expect("create");
    let mut conn = manager.connection(&name).await.expect("connection");
    // What a purge does to the sessions of the database it drops.
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
        name.as_str()
    ))
    .execute(&mut connect(&ctx.main_url).await)
    .await
    .expect("terminate");
    let err = diesel::sql_query("SELECT 1")
        .execute(&mut *conn)
        .await
        .expect_err("the session was terminated");
    assert!(tenant_db::connection_lost(&err), "{err:?}");
    // A query's own failure is not one.
    let mut fresh = connect(&ctx.main_url).await;
    let err = diesel::sql_query("SELECT * FROM no_such_table")
        .execute(&mut fresh)
        .await
        .expect_err("no table");
    assert!(!tenant_db::connection_lost(&err), "{err:?}");
}

#[tokio::test]
async fn a_background_job_takes_no_connection_from_busy_tenants() {
    let ctx = TestContext::new().await;
    let mut s = settings(&ctx);
    s.max_pools = 2;
    s.connections_per_pool = 2;
    s.timeout = Duration::from_millis(500);
    let manager = TenantDatabaseManager::new(s).expect("manager");
    let (a, b, c) = (
        new_name(&ctx, "busy a"),
        new_name(&ctx, "busy b"),
        new_name(&ctx, "swept"),
    );
    for name in [&a, &b, &c] {
        manager.create_from_template(name).await.expect("create");
    }
    // Two busy tenants: each holds one connection and has just used another, idle now;
    // the budget of 4 is spent.
    let mut held = Vec::new();
    for name in [&a, &b] {
        held.push(manager.connection(name).await.expect("first"));
        drop(manager.connection(name).await.expect("second"));
    }
    let err = manager
        .pools()
        .get_background(&c)
        .await
        .err()
        .expect("a sweep waits rather than take a busy tenant's connection");
    assert!(matches!(err, TenantDbError::PoolExhausted(_)), "{err:?}");
    assert_eq!(
        manager.pools().stats().opened,
        4,
        "nothing closed and reopened"
    );
    // A request of the same tenant levels: it takes one.
    drop(manager.connection(&c).await.expect("a request levels"));
    assert_eq!(manager.pools().stats().opened, 5);
    drop(held);
}

#[tokio::test]
async fn a_full_cache_of_busy_pools_times_out_with_a_clear_error() {
    let ctx = TestContext::new().await;
    let mut s = settings(&ctx);
    s.max_pools = 1;
    s.connections_per_pool = 1;
    s.timeout = Duration::from_millis(300);
    let manager = TenantDatabaseManager::new(s).expect("manager");
    let (a, b) = (new_name(&ctx, "a"), new_name(&ctx, "b"));
    manager.create_from_template(&a).await.expect("create");
    manager.create_from_template(&b).await.expect("create");
    let held = manager.connection(&a).await.expect("a");
    let err = manager
        .connection(&b)
        .await
        .err()
        .expect("cache full of busy pools");
    assert!(matches!(err, TenantDbError::PoolExhausted(_)), "{err:?}");
    assert!(err.is_unavailable());
    drop(held);
    manager.connection(&b).await.expect("b once a is released");
    assert_eq!(manager.pools().stats().pools, 1);
}

#[tokio::test]
async fn idle_pools_are_closed() {
    let ctx = TestContext::new().await;
    let mut s = settings(&ctx);
    s.idle_timeout = Duration::from_millis(100);
    let manager = TenantDatabaseManager::new(s).expect("manager");
    let name = new_name(&ctx, "idle");
    manager.create_from_template(&name).await.expect("create");
    drop(manager.connection(&name).await.expect("connection"));
    assert_eq!(manager.pools().stats().pools, 1);
    testkit::wait_until(Duration::from_secs(5), || async {
        manager.pools().stats().pools == 0
    })
    .await
    .expect("the idle pool is evicted");
}

#[tokio::test]
async fn dry_run_and_history_change_nothing() {
    let ctx = TestContext::new().await;
    let manager = TenantDatabaseManager::new(settings(&ctx)).expect("manager");
    let outdated = new_name(&ctx, "outdated");
    create_outdated(&manager, &outdated).await;
    // An empty database: a dry-run must not even create the version table.
    let empty = new_name(&ctx, "empty");
    connect(&ctx.main_url)
        .await
        .batch_execute(&format!("CREATE DATABASE {}", empty.quoted()))
        .await
        .expect("create empty");

    let targets: Vec<Target> = [&outdated, &empty]
        .iter()
        .map(|n| Target {
            label: n.to_string(),
            url: manager.database_url(n),
        })
        .collect();
    let before = [
        snapshot(&targets[0].url).await,
        snapshot(&targets[1].url).await,
    ];
    let mut outcomes = Vec::new();
    let summary = migrations::run_many(
        targets.clone(),
        Mode::DryRun,
        2,
        Duration::from_secs(5),
        |r| {
            outcomes.push((r.target.label.clone(), r.outcome.clone()));
        },
    )
    .await;
    assert_eq!(summary.with_pending, 2, "{outcomes:?}");
    let latest = migrations::known_versions().pop().expect("a migration");
    for (label, outcome) in &outcomes {
        let expected = if *label == outdated.to_string() {
            vec![latest.clone()]
        } else {
            migrations::known_versions()
        };
        assert_eq!(outcome, &Ok(Outcome::Pending(expected)), "{label}");
    }
    let history = migrations::run_many(
        targets.clone(),
        Mode::History,
        2,
        Duration::from_secs(5),
        |_| {},
    )
    .await;
    assert_eq!(history.failed, 0);
    let after = [
        snapshot(&targets[0].url).await,
        snapshot(&targets[1].url).await,
    ];
    assert_eq!(
        before, after,
        "dry-run and history left the databases unchanged"
    );
    assert!(
        !after[1]
            .iter()
            .any(|r| r.contains("__diesel_schema_migrations")),
        "{:?}",
        after[1]
    );
}

#[tokio::test]
async fn migrating_all_continues_past_a_broken_database_and_reports_it() {
    let ctx = TestContext::new().await;
    let manager = TenantDatabaseManager::new(settings(&ctx)).expect("manager");
    let good_a = new_name(&ctx, "good a");
    let good_b = new_name(&ctx, "good b");
    let broken = new_name(&ctx, "broken");
    let missing = new_name(&ctx, "missing");
    for name in [&good_a, &good_b, &broken] {
        create_outdated(&manager, name).await;
    }
    // The database refuses every write (whatever the pending migration does, it cannot
    // apply).
    connect(&manager.database_url(&broken))
        .await
        .batch_execute(&format!(
            "ALTER DATABASE \"{broken}\" SET default_transaction_read_only = on"
        ))
        .await
        .expect("sabotage");

    let targets: Vec<Target> = [&good_a, &broken, &missing, &good_b]
        .iter()
        .map(|n| Target {
            label: n.to_string(),
            url: manager.database_url(n),
        })
        .collect();
    let mut failures = Vec::new();
    let summary = migrations::run_many(targets, Mode::Apply, 2, Duration::from_secs(5), |r| {
        if let Err(e) = &r.outcome {
            failures.push((r.target.label.clone(), e.clone()));
        }
    })
    .await;
    assert_eq!(
        (summary.total, summary.migrated, summary.failed),
        (4, 2, 2),
        "{summary:?} {failures:?}"
    );
    let failed: Vec<&str> = failures.iter().map(|(l, _)| l.as_str()).collect();
    assert!(
        failed.contains(&broken.as_str()) && failed.contains(&missing.as_str()),
        "{failures:?}"
    );
    for good in [&good_a, &good_b] {
        assert!(tables(&manager.database_url(good))
            .await
            .contains(&"outbox".to_owned()));
        assert!(
            migrations::pending(&manager.database_url(good), Duration::from_secs(5))
                .await
                .expect("pending")
                .is_empty()
        );
    }
    // The broken database kept its state: the failed migration rolled back.
    assert_eq!(
        migrations::pending(&manager.database_url(&broken), Duration::from_secs(5))
            .await
            .expect("pending"),
        [migrations::known_versions().pop().expect("a migration")]
    );
}

#[tokio::test]
async fn a_database_placed_on_another_server_is_reached_there_and_back() {
    let ctx = TestContext::new().await;
    let second = testkit::PrivatePostgres::start().expect("a second server");
    let name = new_name(&ctx, "Elsewhere");
    // The same name on both servers, told apart by a row only the second one has.
    for url in [ctx.server_url.as_str(), second.url.as_str()] {
        connect(url)
            .await
            .batch_execute(&format!("CREATE DATABASE {}", name.quoted()))
            .await
            .expect("create");
    }
    let second_db = TenantDbSettings::new(second.url.clone(), "unused").url_for(name.as_str());
    connect(&second_db)
        .await
        .batch_execute("CREATE TABLE marker (id int); INSERT INTO marker VALUES (2)")
        .await
        .expect("marker");
    let cache = tenant_db::TenantPoolCache::new(settings(&ctx));
    let markers = async |cache: &tenant_db::TenantPoolCache| -> i64 {
        let mut conn = cache.get(&name).await.expect("connection");
        diesel::sql_query(
            "SELECT count(*) AS n FROM pg_catalog.pg_tables WHERE tablename = 'marker'",
        )
        .get_result::<Count>(&mut *conn)
        .await
        .expect("count")
        .n
    };
    assert_eq!(markers(&cache).await, 0, "unplaced: the cache's own server");
    let server = uuid::Uuid::from_u128(2);
    cache.place(&name, server, &second.url);
    assert_eq!(markers(&cache).await, 1, "placed: the second server");
    assert_eq!(cache.stats().pools, 2, "one pool per server");
    cache.place(&name, tenant_db::MAIN_SERVER_ID, "");
    assert_eq!(markers(&cache).await, 0, "back on the main server");
    // Evicting (before a drop) closes its pools on both servers.
    assert!(cache.evict(&name));
    assert_eq!(cache.stats().pools, 0);
}

#[tokio::test]
async fn copies_of_a_verified_template_skip_the_check_and_a_remade_template_is_checked() {
    let ctx = TestContext::new().await;
    let manager = TenantDatabaseManager::new(settings(&ctx)).expect("manager");
    let first = new_name(&ctx, "First copy");
    manager.create_from_template(&first).await.expect("create");
    let report = manager.migrate_new(&first).await.expect("check");
    assert!(report.applied.is_empty(), "the template is migrated");
    // The template made again, empty (an operator dropped it; migrate-tenants has not
    // run yet): a new oid, so the copy is checked and migrated.
    let mut admin = connect(&ctx.server_url).await;
    for sql in ["DROP DATABASE", "CREATE DATABASE"] {
        admin
            .batch_execute(&format!("{sql} \"{}\"", ctx.tenant_template))
            .await
            .expect("remade template");
    }
    let second = new_name(&ctx, "Second copy");
    manager.create_from_template(&second).await.expect("create");
    let report = manager.migrate_new(&second).await.expect("migrate");
    assert_eq!(
        report.applied,
        migrations::known_versions(),
        "every migration applied to the copy of the empty template"
    );
    assert!(tables(&ctx.url_of(second.as_str()))
        .await
        .contains(&"documents".to_owned()));
}
