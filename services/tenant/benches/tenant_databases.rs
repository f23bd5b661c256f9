//! Tenant-database benchmark over two PostgreSQL servers (release build):
//!
//!   cargo bench -p tenant --bench tenant_databases
//!
//! The machine's PostgreSQL holds the main database and is the `main` server; a second
//! server is started by the benchmark (`testkit::PrivatePostgres`) and registered with
//! `servers add`, with the same weight.
//!
//! 1. Provisioning latency (p50/p95) through `Provisioner::provision` (placement
//!    included), each followed by a raw `CREATE DATABASE … TEMPLATE` on the server the
//!    tenant landed on, per server.
//! 2. The rest of TENANTS provisioned through the same path, PROVISION_CONCURRENCY at a
//!    time: the spread over the servers against their weights.
//! 3. Every tenant database set one migration behind, then the `migrate-tenants` code
//!    path over both servers: tenants per second.
//! 4. A sweep running one query on every tenant through one pool cache (as the
//!    document service's: 8 pools × 2 = bound 16), each database placed on its server,
//!    sampling `pg_stat_activity` on both servers for the peak of tenant connections.
//! 5. `tenant move` of a tenant holding MOVE_DOCUMENTS documents to the other server:
//!    read-only and total time, rows compared.
//!
//! Environment: TENANTS (3000), SAMPLES (200), PROVISION_CONCURRENCY (4),
//! SWEEP_CONCURRENCY (64), MOVE_DOCUMENTS (10000), and TEST_DATABASE_URL /
//! TEST_REDIS_URL as for the tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{TenantDatabaseName, TenantId, TenantName};
use futures_util::StreamExt;
use tenant::migrate_tenants::{self, MigrateTenantsArgs};
use tenant::provisioning::Provisioner;
use tenant::Settings;
use tenant_db::migrations;
use testkit::TestContext;

const SECOND: &str = "BENCH_SECOND_SERVER_URL";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Placed {
    #[diesel(sql_type = Text)]
    database: String,
    #[diesel(sql_type = Text)]
    server: String,
}

async fn connect(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.expect("connect")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// Every tenant's database and server name.
async fn placements(main: &mut AsyncPgConnection) -> Vec<Placed> {
    diesel::sql_query(
        "SELECT t.database_name::text AS database, s.name AS server FROM tenants t \
         JOIN database_servers s ON s.id = t.server_id ORDER BY t.created_at",
    )
    .load(main)
    .await
    .expect("placements")
}

async fn run() {
    let tenants = env_usize("TENANTS", 3000);
    let samples = env_usize("SAMPLES", 200).min(tenants);
    let provision_concurrency = env_usize("PROVISION_CONCURRENCY", 4);
    let sweep_concurrency = env_usize("SWEEP_CONCURRENCY", 64);
    let move_documents = env_usize("MOVE_DOCUMENTS", 10_000);
    let ctx = TestContext::new().await;
    let second = testkit::PrivatePostgres::start().expect("a second PostgreSQL server");
    let mut env = ctx.service_env();
    env.insert(SECOND.to_owned(), second.url.clone());
    env.insert("MOVE_KEEP_SOURCE_SECS".to_owned(), "0".to_owned());
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = Settings::read(&mut reader);
    let settings = reader.finish(settings).expect("settings");
    tenant::commands::servers_add(
        &settings,
        &tenant::commands::AddServerArgs {
            name: "second".to_owned(),
            admin_url_setting: SECOND.to_owned(),
            url_setting: None,
            weight: 100,
            max_tenants: None,
            draining: false,
        },
        |line| println!("{line}"),
    )
    .await
    .expect("servers add");
    let server_url = |server: &str| {
        if server == "main" {
            ctx.server_url.clone()
        } else {
            second.url.clone()
        }
    };
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )
    .expect("pool");
    let fleet =
        Arc::new(tenant::fleet::Fleet::new(db.clone(), settings.tenant_db.clone()).expect("fleet"));
    let provisioner = Provisioner::new(db.clone(), fleet.clone());
    let mut main = connect(&ctx.main_url).await;
    let mut raw_admin = [connect(&ctx.server_url).await, connect(&second.url).await];

    // Warm up both servers once.
    for i in 0..2 {
        provisioner
            .provision(
                TenantName::parse(&format!("warm up {i}")).expect("valid"),
                None,
            )
            .await
            .expect("provision");
    }

    // 1. Provisioning against raw CREATE DATABASE … TEMPLATE on the same server.
    let mut provision_times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut raw_times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut raw_names = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = TenantName::parse(&format!("Bench tenant {i}")).expect("valid");
        let started = Instant::now();
        let tenant = provisioner
            .provision(name.clone(), None)
            .await
            .expect("provision");
        let took = started.elapsed();
        let on = usize::from(tenant.server_id != tenant_db::MAIN_SERVER_ID);
        provision_times[on].push(took);
        let raw = TenantDatabaseName::generate(&name);
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE \"{}\"",
            raw.quoted(),
            ctx.tenant_template
        );
        let started = Instant::now();
        raw_admin[on].batch_execute(&sql).await.expect("raw create");
        raw_times[on].push(started.elapsed());
        raw_names.push((on, raw));
    }
    for (on, raw) in &raw_names {
        raw_admin[*on]
            .batch_execute(&format!("DROP DATABASE {}", raw.quoted()))
            .await
            .expect("drop raw");
    }
    println!("\n## Provisioning ({samples} tenants, one after another, placed over two servers)");
    println!("| server | tenants | provision p50 ms | p95 ms | raw CREATE … TEMPLATE p50 ms | p95 ms | p95 ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (on, server) in ["main", "second"].iter().enumerate() {
        let (p50, p95) = (
            percentile(&mut provision_times[on], 0.5),
            percentile(&mut provision_times[on], 0.95),
        );
        let (r50, r95) = (
            percentile(&mut raw_times[on], 0.5),
            percentile(&mut raw_times[on], 0.95),
        );
        println!(
            "| {server} | {} | {:.1} | **{:.1}** | {:.1} | {:.1} | **{:.2}** |",
            provision_times[on].len(),
            ms(p50),
            ms(p95),
            ms(r50),
            ms(r95),
            ms(p95) / ms(r95).max(0.001)
        );
    }
    println!("targets: p95 ≤ 250 ms and ≤ 2 × raw on the same server");

    // 2. The rest through the same path, a few at a time.
    let rest = tenants.saturating_sub(samples + 2);
    let started = Instant::now();
    let failures = futures_util::stream::iter(0..rest)
        .map(|i| {
            let provisioner = provisioner.clone();
            async move {
                provisioner
                    .provision(
                        TenantName::parse(&format!("Fleet tenant {i}")).expect("valid"),
                        None,
                    )
                    .await
                    .is_err()
            }
        })
        .buffer_unordered(provision_concurrency)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let provisioned_in = started.elapsed();
    assert_eq!(failures, 0, "provisioning failures");
    let placed = placements(&mut main).await;
    let on_main = placed.iter().filter(|p| p.server == "main").count();
    let total = placed.len();
    println!(
        "\n## Placement\n{rest} more tenants provisioned {provision_concurrency} at a time in {:.1} s ({:.1} tenants/s).",
        provisioned_in.as_secs_f64(),
        rest as f64 / provisioned_in.as_secs_f64()
    );
    println!(
        "{total} tenants: main {on_main} ({:.2} %), second {} ({:.2} %); weights 100:100, target 50 % each within 5 %",
        on_main as f64 * 100.0 / total as f64,
        total - on_main,
        (total - on_main) as f64 * 100.0 / total as f64
    );

    // 3. Every tenant database one migration behind, then migrate-tenants.
    // The latest tenant migration undone (its down.sql), as in a database the
    // previous release made.
    let latest = migrations::known_versions().pop().expect("a migration");
    let migration_dir = std::fs::read_dir(testkit::workspace_root().join("migrations/tenant"))
        .expect("migrations")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.replace('-', "").starts_with(&latest.replace('-', "")))
        })
        .expect("the latest migration's directory");
    let down = std::fs::read_to_string(migration_dir.join("down.sql")).expect("down.sql");
    let downgrade =
        format!("{down}; DELETE FROM __diesel_schema_migrations WHERE version = '{latest}'");
    let started = Instant::now();
    futures_util::stream::iter(placed.iter())
        .map(|p| {
            let url = tenant_db::TenantDbSettings::new(server_url(&p.server), "unused")
                .url_for(&p.database);
            let downgrade = downgrade.clone();
            async move {
                connect(&url)
                    .await
                    .batch_execute(&downgrade)
                    .await
                    .expect("downgrade");
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    println!(
        "\n## Fleet migration ({total} tenant databases over two servers)\ndowngraded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let args = MigrateTenantsArgs::default();
    let mut lines = Vec::new();
    let summary = migrate_tenants::run(&settings, &args, false, |line| {
        if line.starts_with("server ")
            || line.contains("tenant databases:")
            || line.contains("FAILED")
        {
            lines.push(line.to_owned());
        }
    })
    .await
    .expect("migrate-tenants");
    for line in lines.iter().take(20) {
        println!("{line}");
    }
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert_eq!(summary.migrated, total, "{summary:?}");
    println!(
        "migrate-tenants (concurrency {} per server): **{:.1} tenants/s** (target ≥ 100)",
        settings.migration_concurrency,
        summary.migrated as f64 / summary.elapsed.as_secs_f64()
    );

    // 4. The sweep through one pool cache over both servers.
    let mut cache_settings = settings.tenant_db.clone();
    cache_settings.max_pools = 8;
    let bound = cache_settings.connection_bound() as i64;
    let cache = tenant_db::TenantPoolCache::new(cache_settings.clone());
    let urls = tenant_db::ServerUrls::new(&cache_settings);
    let second_id = fleet_server_id(&mut main, "second").await;
    let stop = Arc::new(AtomicBool::new(false));
    let names: Vec<String> = placed.iter().map(|p| p.database.clone()).collect();
    let sampler = |url: String| {
        let (stop, names) = (stop.clone(), names.clone());
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let mut peak = 0i64;
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                let count: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = ANY($1)",
                )
                .bind::<Array<Text>, _>(&names)
                .get_result(&mut conn)
                .await
                .expect("pg_stat_activity");
                peak = peak.max(count.n);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            peak
        })
    };
    let samplers = [sampler(ctx.server_url.clone()), sampler(second.url.clone())];
    let started = Instant::now();
    let results: Vec<Result<i64, String>> = futures_util::stream::iter(placed.iter())
        .map(|p| {
            let (cache, urls) = (&cache, &urls);
            let server = if p.server == "main" {
                tenant_db::MAIN_SERVER_ID
            } else {
                second_id
            };
            async move {
                let name = urls
                    .place(cache, &p.database, server, SECOND)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut conn = cache.get(&name).await.map_err(|e| e.to_string())?;
                let count: Count = diesel::sql_query("SELECT count(*) AS n FROM documents")
                    .get_result(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(count.n)
            }
        })
        .buffer_unordered(sweep_concurrency)
        .collect()
        .await;
    let swept_in = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut peaks = Vec::new();
    for sampler in samplers {
        peaks.push(sampler.await.expect("sampler"));
    }
    let failed = results.iter().filter(|r| r.is_err()).count();
    println!("\n## Sweep through one pool cache over both servers");
    println!(
        "{} queries ({failed} failed) in {:.2} s = {:.0} tenants/s, {sweep_concurrency} at a time; peak tenant connections: main **{}**, second **{}**; bound {bound} (8 pools × {})",
        results.len(),
        swept_in.as_secs_f64(),
        results.len() as f64 / swept_in.as_secs_f64(),
        peaks[0],
        peaks[1],
        cache_settings.connections_per_pool
    );
    assert_eq!(failed, 0);
    drop(cache);

    // 5. Moving a tenant with MOVE_DOCUMENTS documents.
    let heavy = provisioner
        .provision(TenantName::parse("Heavy tenant").expect("valid"), None)
        .await
        .expect("provision");
    let heavy_server = if heavy.server_id == tenant_db::MAIN_SERVER_ID {
        "main"
    } else {
        "second"
    };
    let target = if heavy_server == "main" {
        "second"
    } else {
        "main"
    };
    let heavy_url = tenant_db::TenantDbSettings::new(server_url(heavy_server), "unused")
        .url_for(&heavy.database_name);
    connect(&heavy_url)
        .await
        .batch_execute(&format!(
            "INSERT INTO files (id, md5_hash, sha256_hash, file_size, s3_path) \
             SELECT gen_random_uuid(), md5(i::text), md5(i::text) || md5(i::text), i, \
                    'tenants/x/files/' || i FROM generate_series(1, {move_documents}) i; \
             INSERT INTO documents (id, filename, mime_type, file_id, user_id, created_by) \
             SELECT gen_random_uuid(), 'document ' || f.file_size || '.txt', 'text/plain', f.id, \
                    gen_random_uuid(), gen_random_uuid() FROM files f"
        ))
        .await
        .expect("documents");
    let mover = tenant::moving::Mover::new(db.clone(), fleet.clone(), settings.moves.clone());
    let report = mover
        .run(TenantId::from_uuid(heavy.id), target)
        .await
        .expect("move");
    let target_url = tenant_db::TenantDbSettings::new(server_url(target), "unused")
        .url_for(&heavy.database_name);
    let moved: Count = diesel::sql_query("SELECT count(*) AS n FROM documents")
        .get_result(&mut connect(&target_url).await)
        .await
        .expect("count");
    println!("\n## Move ({move_documents} documents, {heavy_server} → {target})");
    println!(
        "{} rows in {} tables verified by the move; documents on the target: {} (lost: {}); read-only **{:.2} s**, total **{:.2} s**; source dropped: {}",
        report.rows(),
        report.tables.len(),
        moved.n,
        move_documents as i64 - moved.n,
        report.read_only.as_secs_f64(),
        report.total.as_secs_f64(),
        report.source_dropped
    );
    assert_eq!(moved.n, move_documents as i64, "rows lost");

    println!("\ncleaning up {} databases…", placed.len() + 1);
    drop(second);
}

async fn fleet_server_id(main: &mut AsyncPgConnection, name: &str) -> uuid::Uuid {
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    diesel::sql_query("SELECT id FROM database_servers WHERE name = $1")
        .bind::<Text, _>(name)
        .get_result::<Id>(main)
        .await
        .expect("server")
        .id
}
