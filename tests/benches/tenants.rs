//! Tenant API benchmark (release build, real PostgreSQL and Redis, auth beside tenant):
//!
//!   cargo bench -p platform-tests --bench tenants
//!
//! 1. `POST /api/tenants` end to end (HTTP, token check, row, `CREATE DATABASE …
//!    TEMPLATE`, migration check, activation and outbox) for SAMPLES tenants, against a
//!    raw `CREATE DATABASE … TEMPLATE` of the same template timed in the same run,
//!    interleaved.
//! 2. `GET /api/tenants` for a user who belongs to MEMBERSHIPS tenants (rows made
//!    directly: listing reads the main database only).
//!
//! Environment: SAMPLES (200), MEMBERSHIPS (1000), and TEST_DATABASE_URL /
//! TEST_REDIS_URL as for the tests.

use std::time::{Duration, Instant};

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{TenantDatabaseName, TenantName};
use serde_json::{json, Value};
use testkit::TestContext;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let samples = env_usize("SAMPLES", 200);
    let memberships = env_usize("MEMBERSHIPS", 1000);
    let ctx = TestContext::new().await;
    let pem = auth::keys::generate_pem().expect("key");
    let (auth_listener, auth) = testkit::free_listeners();
    let (tenant_listener, tenant) = testkit::free_listeners();
    testkit::start_service_on::<tenant::Service>(
        &ctx,
        &[
            ("AUTH_SERVICE_URL", auth.as_str()),
            ("TENANT_LIMIT_PER_USER", "1000000"),
            ("RUST_LOG", "warn"),
            ("DATABASE_POOL_SIZE", "8"),
        ],
        tenant_listener,
    );
    testkit::start_service_on::<auth::Service>(
        &ctx,
        &[
            ("JWT_PRIVATE_KEY", pem.as_str()),
            ("TENANT_SERVICE_URL", tenant.as_str()),
            ("BCRYPT_COST", "4"),
            ("RUST_LOG", "warn"),
        ],
        auth_listener,
    );
    let http = reqwest::Client::new();
    let user: Value = http
        .post(format!("{auth}/api/auth/register"))
        .json(&json!({"first_name": "Bench", "last_name": "Admin", "email": "bench@example.com", "password": "password1"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let user_id = user["user"]["id"].as_str().expect("id").to_owned();
    let login: Value = http
        .post(format!("{auth}/api/auth/login"))
        .json(&json!({"email": "bench@example.com", "password": "password1"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token").to_owned();
    let mut admin = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");

    // 1. POST /api/tenants against raw CREATE DATABASE … TEMPLATE, interleaved.
    let create = |name: String| {
        let request = http
            .post(format!("{tenant}/api/tenants"))
            .bearer_auth(&token)
            .json(&json!({"name": name}));
        async move {
            let response = request.send().await.expect("create");
            assert_eq!(response.status(), 201, "{:?}", response.text().await);
        }
    };
    create("warm up".into()).await;
    let (mut api, mut raw) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for i in 0..samples {
        let started = Instant::now();
        create(format!("Bench {i}")).await;
        api.push(started.elapsed());
        let name =
            TenantDatabaseName::generate(&TenantName::parse(&format!("raw {i}")).expect("valid"));
        ctx.track_database(name.as_str());
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE \"{}\"",
            name.quoted(),
            ctx.tenant_template
        );
        let started = Instant::now();
        admin.batch_execute(&sql).await.expect("raw create");
        raw.push(started.elapsed());
        admin
            .batch_execute(&format!("DROP DATABASE {}", name.quoted()))
            .await
            .expect("drop raw");
    }
    let (api50, api95) = (percentile(&mut api, 0.5), percentile(&mut api, 0.95));
    let (raw50, raw95) = (percentile(&mut raw, 0.5), percentile(&mut raw, 0.95));
    println!("## POST /api/tenants ({samples} tenants, sequential, end to end over HTTP)");
    println!("| path | p50 ms | p95 ms |");
    println!("|---|---|---|");
    println!("| POST /api/tenants | {api50:.1} | {api95:.1} |");
    println!("| raw CREATE DATABASE … TEMPLATE | {raw50:.1} | {raw95:.1} |");
    println!(
        "p95 = {api95:.1} ms (target ≤ 250), p95 ratio to raw = {:.2} (target ≤ 2)\n",
        api95 / raw95
    );

    // 2. GET /api/tenants for a user in MEMBERSHIPS tenants.
    let existing = samples + 1;
    let extra = memberships.saturating_sub(existing);
    diesel::sql_query(
        "INSERT INTO tenants (id, name, database_name, status, created_by) \
         SELECT gen_random_uuid(), 'Listed ' || n, 'tenant_listed_' || n || '_' || lpad(to_hex(n), 8, '0'), 'active', $1::uuid \
         FROM generate_series(1, $2) AS n",
    )
    .bind::<Text, _>(&user_id)
    .bind::<diesel::sql_types::Integer, _>(i32::try_from(extra).expect("fits"))
    .execute(&mut admin)
    .await
    .expect("tenant rows");
    diesel::sql_query(
        "INSERT INTO user_tenant_associations (user_id, tenant_id, role) \
         SELECT $1::uuid, id, 'user' FROM tenants WHERE name LIKE 'Listed %'",
    )
    .bind::<Text, _>(&user_id)
    .execute(&mut admin)
    .await
    .expect("memberships");
    // These rows name no real databases; the test context's clean-up drops "IF EXISTS".
    let mut listing = Vec::with_capacity(200);
    let mut count = 0;
    for _ in 0..220 {
        let started = Instant::now();
        let response = http
            .get(format!("{tenant}/api/tenants"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("list");
        let body: Value = response.json().await.expect("json");
        listing.push(started.elapsed());
        count = body["data"].as_array().map(Vec::len).unwrap_or(0);
    }
    let mut listing = listing.split_off(20);
    println!("## GET /api/tenants for a user in {count} tenants (200 requests after 20 warm-up)");
    println!(
        "p50 {:.1} ms, p95 **{:.1} ms** (target ≤ 50), p99 {:.1} ms",
        percentile(&mut listing, 0.5),
        percentile(&mut listing, 0.95),
        percentile(&mut listing, 0.99)
    );
    println!("\ncleaning up…");
}
