//! Tenant-database benchmark (release build, real PostgreSQL):
//!
//!   cargo bench -p tenant --bench tenant_databases
//!
//! 1. Provisioning latency (p50/p95) through `Provisioner::provision`, against a raw
//!    `CREATE DATABASE … TEMPLATE` timed in the same run, interleaved.
//! 2. A fleet of TENANTS tenant databases at an older migration, then migrated by the
//!    `migrate-tenants` code path: tenants per second.
//! 3. A sweep running one query on every tenant through the pool cache (default bound
//!    25 pools × 2 connections = 50), sampling `pg_stat_activity` for the peak number
//!    of tenant connections.
//!
//! Environment: TENANTS (default 1000), SAMPLES (200), SWEEP_CONCURRENCY (64), and
//! TEST_DATABASE_URL / TEST_REDIS_URL as for the tests.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{TenantDatabaseName, TenantName};
use futures_util::StreamExt;
use tenant::migrate_tenants::{self, MigrateTenantsArgs};
use tenant::provisioning::Provisioner;
use tenant::Settings;
use tenant_db::{migrations, TenantDatabaseManager};
use testkit::TestContext;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
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

async fn run() {
    let tenants = env_usize("TENANTS", 1000);
    let samples = env_usize("SAMPLES", 200).min(tenants);
    let sweep_concurrency = env_usize("SWEEP_CONCURRENCY", 64);
    let ctx = TestContext::new().await;
    let env = ctx.service_env();
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = Settings::read(&mut reader);
    let settings = reader.finish(settings).expect("settings");
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )
    .expect("pool");
    let fleet =
        Arc::new(tenant::fleet::Fleet::new(db.clone(), settings.tenant_db.clone()).expect("fleet"));
    let manager = fleet.main().clone();
    let provisioner = Provisioner::new(db, fleet);
    let mut admin = connect(&ctx.main_url).await;

    // Warm up both paths once.
    provisioner
        .provision(TenantName::parse("warm up").expect("valid"), None)
        .await
        .expect("provision");

    // 1. Provisioning against raw CREATE DATABASE … TEMPLATE, interleaved.
    let mut provision_times = Vec::with_capacity(samples);
    let mut raw_times = Vec::with_capacity(samples);
    let mut raw_names = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = TenantName::parse(&format!("Bench tenant {i}")).expect("valid");
        let started = Instant::now();
        provisioner
            .provision(name.clone(), None)
            .await
            .expect("provision");
        provision_times.push(started.elapsed());

        let raw = TenantDatabaseName::generate(&name);
        ctx.track_database(raw.as_str());
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE \"{}\"",
            raw.quoted(),
            ctx.tenant_template
        );
        let started = Instant::now();
        admin.batch_execute(&sql).await.expect("raw create");
        raw_times.push(started.elapsed());
        raw_names.push(raw);
    }
    for raw in &raw_names {
        admin
            .batch_execute(&format!("DROP DATABASE {}", raw.quoted()))
            .await
            .expect("drop raw");
    }
    let (p50, p95) = (
        percentile(&mut provision_times, 0.5),
        percentile(&mut provision_times, 0.95),
    );
    let (raw50, raw95) = (
        percentile(&mut raw_times, 0.5),
        percentile(&mut raw_times, 0.95),
    );
    println!("## Provisioning ({samples} tenants, sequential)");
    println!("| path | p50 ms | p95 ms |");
    println!("|---|---|---|");
    println!(
        "| Provisioner::provision | {:.1} | {:.1} |",
        ms(p50),
        ms(p95)
    );
    println!(
        "| raw CREATE DATABASE … TEMPLATE | {:.1} | {:.1} |",
        ms(raw50),
        ms(raw95)
    );
    println!(
        "p50 ratio provision/raw = {:.2} (target ≤ 1.5)\n",
        ms(p50) / ms(raw50)
    );

    // 2. The fleet: the rest of TENANTS created from an outdated template (as if made
    // by the previous release); the provisioned ones are downgraded the same way.
    let latest = migrations::known_versions().pop().expect("a migration");
    let downgrade = format!(
        "DROP TABLE outbox; DELETE FROM __diesel_schema_migrations WHERE version = '{latest}'"
    );
    let old_template = format!("{}_old", ctx.tenant_template);
    ctx.track_database(&old_template);
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{old_template}\" TEMPLATE \"{}\"",
            ctx.tenant_template
        ))
        .await
        .expect("old template");
    connect(&ctx.url_of(&old_template))
        .await
        .batch_execute(&downgrade)
        .await
        .expect("downgrade template");
    let mut existing: Vec<String> = {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            name: String,
        }
        diesel::sql_query("SELECT database_name::text AS name FROM tenants")
            .load::<Name>(&mut admin)
            .await
            .expect("names")
            .into_iter()
            .map(|n| n.name)
            .collect()
    };
    for name in &existing {
        connect(&ctx.url_of(name))
            .await
            .batch_execute(&downgrade)
            .await
            .expect("downgrade");
    }
    let to_create = tenants.saturating_sub(existing.len());
    let started = Instant::now();
    for i in 0..to_create {
        let name = TenantName::parse(&format!("Fleet tenant {i}")).expect("valid");
        let database = TenantDatabaseName::generate(&name);
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE \"{old_template}\"",
                database.quoted()
            ))
            .await
            .expect("fleet create");
        diesel::sql_query("INSERT INTO tenants (id, name, database_name, status) VALUES (gen_random_uuid(), $1, $2, 'active')")
            .bind::<Text, _>(name.as_str())
            .bind::<Text, _>(database.as_str())
            .execute(&mut admin)
            .await
            .expect("fleet row");
        existing.push(database.as_str().to_owned());
    }
    let created_in = started.elapsed();
    println!("## Fleet migration ({} tenant databases)", existing.len());
    println!(
        "created {to_create} databases from the outdated template in {:.1} s",
        created_in.as_secs_f64()
    );
    for concurrency in [settings.migration_concurrency] {
        let args = MigrateTenantsArgs {
            concurrency: Some(concurrency as u16),
            ..MigrateTenantsArgs::default()
        };
        let summary = migrate_tenants::run(&settings, &args, false, |_| {})
            .await
            .expect("migrate-tenants");
        assert_eq!(summary.failed, 0, "{summary:?}");
        assert_eq!(summary.migrated, existing.len(), "{summary:?}");
        println!(
            "migrate-tenants --concurrency {concurrency}: {} migrated in {:.2} s = **{:.1} tenants/s** (target ≥ 50)",
            summary.migrated,
            summary.elapsed.as_secs_f64(),
            summary.migrated as f64 / summary.elapsed.as_secs_f64()
        );
        let args = MigrateTenantsArgs {
            dry_run: true,
            ..MigrateTenantsArgs::default()
        };
        let dry = migrate_tenants::run(&settings, &args, false, |_| {})
            .await
            .expect("dry run");
        println!(
            "migrate-tenants --dry-run afterwards: {} up to date in {:.2} s ({:.1} tenants/s)\n",
            dry.up_to_date,
            dry.elapsed.as_secs_f64(),
            dry.total as f64 / dry.elapsed.as_secs_f64()
        );
    }

    // 3. The sweep through the pool cache, with default bounds.
    let sweep_manager =
        Arc::new(TenantDatabaseManager::new(settings.tenant_db.clone()).expect("manager"));
    let bound = settings.tenant_db.connection_bound();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, url, names) = (stop.clone(), ctx.main_url.clone(), existing.clone());
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let (mut peak, mut polls) = (0i64, 0u64);
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                let count: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = ANY($1)",
                )
                .bind::<Array<Text>, _>(&names)
                .get_result(&mut conn)
                .await
                .expect("pg_stat_activity");
                peak = peak.max(count.n);
                polls += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (peak, polls)
        })
    };
    let started = Instant::now();
    let names: Vec<TenantDatabaseName> = existing
        .iter()
        .map(|n| TenantDatabaseName::parse(n).expect("valid"))
        .collect();
    let results: Vec<Result<i64, String>> = futures_util::stream::iter(names)
        .map(|name| {
            let manager = sweep_manager.clone();
            async move {
                let mut conn = manager.connection(&name).await.map_err(|e| e.to_string())?;
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
    let (peak, polls) = sampler.await.expect("sampler");
    let failures = results.iter().filter(|r| r.is_err()).count();
    println!(
        "## Sweep: one query on each of {} tenants through the pool cache",
        results.len()
    );
    println!(
        "{} queries ({failures} failed) in {:.2} s = {:.0} tenants/s with {sweep_concurrency} concurrent tasks",
        results.len(),
        swept_in.as_secs_f64(),
        results.len() as f64 / swept_in.as_secs_f64()
    );
    println!(
        "peak tenant connections in pg_stat_activity: **{peak}** ({polls} samples); bound {bound} = {} pools × {} connections",
        settings.tenant_db.max_pools, settings.tenant_db.connections_per_pool
    );
    assert_eq!(failures, 0);
    drop(sweep_manager);
    drop(manager);
    println!("\ncleaning up {} databases…", existing.len());
}
