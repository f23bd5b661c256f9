//! Auth benchmark (release build, real PostgreSQL and Redis, the tenant service beside
//! auth, as in production):
//!
//!   cargo bench -p platform-tests --bench auth      (needs `wrk`: apt-get install wrk)
//!
//! 1. The bcrypt bound: bcrypt verifications per second at BCRYPT_COST (12) on as many
//!    threads as the machine has cores.
//! 2. Login throughput with LOGIN_CLIENTS concurrent clients, against that bound.
//! 3. `GET /api/users/me` with wrk (2 threads, 64 connections, 10 s) cycling through
//!    TOKENS access tokens of LOGIN_CLIENTS users (as many clients would, so the
//!    verified-claims cache holds many entries): requests per second and p99, alone and
//!    while a login storm runs, and the logins per second the storm achieved during
//!    that flood, against the bcrypt bound (bcrypt runs at nice 10, so a read flood
//!    may starve it: a p99 ratio is only meaningful next to the storm's rate).
//!
//! Environment: BCRYPT_COST (12), LOGIN_CLIENTS (16), SECONDS (10), TOKENS (1024),
//! AUTH_HTTP_WORKERS (1: on a 2-core machine wrk, PostgreSQL and Redis share the cores,
//! and one worker gave the most requests per second; 2 and 4 were measured too), and
//! TEST_DATABASE_URL / TEST_REDIS_URL as for the tests.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::{start_service, TestContext};

const PASSWORD: &str = "correct horse 1";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

struct Wrk {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn to_ms(value: &str) -> f64 {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| c.is_alphabetic())
            .unwrap_or(value.len()),
    );
    let n: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

/// A wrk script that sends each request with the next of `tokens`.
fn token_script(tokens: &[String]) -> std::path::PathBuf {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("auth-bench-{}.lua", std::process::id()));
    let mut script = std::fs::File::create(&path).expect("wrk script");
    let list: Vec<String> = tokens.iter().map(|t| format!("{t:?}")).collect();
    write!(
        script,
        "local tokens = {{ {} }}\n\
         local i = 0\n\
         request = function()\n\
         \x20 i = i + 1\n\
         \x20 return wrk.format(\"GET\", nil, {{ [\"Authorization\"] = \"Bearer \" .. tokens[(i % #tokens) + 1] }})\n\
         end\n",
        list.join(", ")
    )
    .expect("write the wrk script");
    path
}

fn wrk(url: &str, script: &std::path::Path, seconds: u64) -> Wrk {
    let output = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let find = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let non_2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Wrk {
        requests_per_sec: find("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
        p50_ms: find("50%").map(|v| to_ms(&v)).unwrap_or(f64::NAN),
        p99_ms: find("99%").map(|v| to_ms(&v)).unwrap_or(f64::NAN),
        non_2xx,
    }
}

async fn run() {
    let cost = env_u64("BCRYPT_COST", 12) as u32;
    let clients = env_u64("LOGIN_CLIENTS", 16) as usize;
    let seconds = env_u64("SECONDS", 10);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let ctx = TestContext::new().await;
    let pem = auth::keys::generate_pem().expect("key");
    let tenant = start_service::<tenant::Service>(&ctx, &[("HTTP_WORKERS", "0")]);
    let cost_text = cost.to_string();
    let workers = std::env::var("AUTH_HTTP_WORKERS").unwrap_or_else(|_| "1".to_owned());
    let auth = start_service::<auth::Service>(
        &ctx,
        &[
            ("JWT_PRIVATE_KEY", pem.as_str()),
            ("TENANT_SERVICE_URL", tenant.as_str()),
            ("BCRYPT_COST", cost_text.as_str()),
            ("LOGIN_RATE_LIMIT_PER_IP", "1000000000"),
            ("LOGIN_RATE_LIMIT_PER_ACCOUNT", "1000000000"),
            ("REGISTER_RATE_LIMIT_PER_IP", "1000000000/1h"),
            ("HTTP_WORKERS", workers.as_str()),
            ("DATABASE_POOL_SIZE", "16"),
            ("RUST_LOG", "warn"),
        ],
    );
    let http = reqwest::Client::new();
    let users = clients.max(4);
    for i in 0..users {
        let response = http
            .post(format!("{auth}/api/auth/register"))
            .json(&json!({"first_name": "Bench", "last_name": "User", "email": format!("bench{i}@example.com"), "password": PASSWORD}))
            .send()
            .await
            .expect("register");
        assert_eq!(response.status(), 201);
    }
    // Many access tokens without many bcrypt logins: one login per user, then each
    // session refreshed until TOKENS tokens are in hand (each rotation issues a new
    // access token; the earlier ones stay valid until they expire).
    let wanted = env_u64("TOKENS", 1024).max(1) as usize;
    let mut tokens = Vec::with_capacity(wanted);
    let mut refresh_tokens = Vec::with_capacity(users);
    for i in 0..users {
        let login: Value = http
            .post(format!("{auth}/api/auth/login"))
            .json(&json!({"email": format!("bench{i}@example.com"), "password": PASSWORD}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        tokens.push(login["access_token"].as_str().expect("token").to_owned());
        refresh_tokens.push(login["refresh_token"].as_str().expect("refresh").to_owned());
    }
    'refreshing: loop {
        for refresh in &mut refresh_tokens {
            if tokens.len() >= wanted {
                break 'refreshing;
            }
            let pair: Value = http
                .post(format!("{auth}/api/auth/refresh"))
                .bearer_auth(&*refresh)
                .json(&json!({}))
                .send()
                .await
                .expect("refresh")
                .json()
                .await
                .expect("json");
            tokens.push(pair["access_token"].as_str().expect("token").to_owned());
            *refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();
        }
    }
    let script_path = token_script(&tokens);

    // 1. The bcrypt bound on this machine.
    let hash = bcrypt::hash(PASSWORD, cost).expect("hash");
    let started = Instant::now();
    let counted: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while started.elapsed() < Duration::from_secs(seconds.min(5)) {
                        assert!(bcrypt::verify(PASSWORD, &hash).expect("verify"));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    let bound = counted as f64 / started.elapsed().as_secs_f64();

    // 2. Login throughput.
    let storm = |duration: Duration| {
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..clients)
            .map(|i| {
                let (http, auth, done, failed, stop) = (http.clone(), auth.clone(), done.clone(), failed.clone(), stop.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    while started.elapsed() < duration && !AtomicBool::load(&stop, Ordering::Relaxed) {
                        let ok = http
                            .post(format!("{auth}/api/auth/login"))
                            .json(&json!({"email": format!("bench{}@example.com", i % users), "password": PASSWORD}))
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == 200);
                        if ok { done.fetch_add(1, Ordering::Relaxed) } else { failed.fetch_add(1, Ordering::Relaxed) };
                    }
                })
            })
            .collect();
        (tasks, done, failed, stop)
    };
    let started = Instant::now();
    let (tasks, done, failed, _) = storm(Duration::from_secs(seconds));
    for task in tasks {
        task.await.expect("join");
    }
    let logins = AtomicU64::load(&done, Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let login_failures = AtomicU64::load(&failed, Ordering::Relaxed);

    // 3. /api/users/me alone, then during a login storm.
    let me = format!("{auth}/api/users/me");
    let alone = tokio::task::spawn_blocking({
        let (me, script_path) = (me.clone(), script_path.clone());
        move || wrk(&me, &script_path, seconds)
    })
    .await
    .expect("wrk");
    let (tasks, storm_done, _, stop) = storm(Duration::from_secs(seconds + 30));
    // Measure only once the storm is under way: its first logins have completed.
    testkit::wait_until(Duration::from_secs(30), || async {
        AtomicU64::load(&storm_done, Ordering::Relaxed) > 0
    })
    .await
    .expect("the login storm is running");
    // The logins completed while wrk ran, and only those.
    let (flood_started, logins_before) = (
        Instant::now(),
        AtomicU64::load(&storm_done, Ordering::Relaxed),
    );
    let during = tokio::task::spawn_blocking({
        let script_path = script_path.clone();
        move || wrk(&me, &script_path, seconds)
    })
    .await
    .expect("wrk");
    let storm_rate = (AtomicU64::load(&storm_done, Ordering::Relaxed) - logins_before) as f64
        / flood_started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("join");
    }
    let _ = std::fs::remove_file(&script_path);

    println!("## Auth (cost {cost}, {cores} cores, {clients} login clients, {seconds} s runs, {workers} auth HTTP worker(s))");
    println!("| measure | value |");
    println!("|---|---|");
    println!("| bcrypt bound ({cores} threads) | {bound:.2} verifications/s |");
    println!("| login throughput | {logins:.2} logins/s = **{:.0}%** of the bound (target ≥ 90%); {login_failures} failed |", 100.0 * logins / bound);
    println!("| GET /api/users/me alone, {} tokens | **{:.0} req/s** (target ≥ 20,000), p50 {:.2} ms, p99 {:.2} ms, non-2xx {} |", tokens.len(), alone.requests_per_sec, alone.p50_ms, alone.p99_ms, alone.non_2xx);
    println!("| GET /api/users/me during a login storm | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, non-2xx {} |", during.requests_per_sec, during.p50_ms, during.p99_ms, during.non_2xx);
    println!(
        "| logins during that flood | {storm_rate:.2} logins/s = **{:.0}%** of the bound |",
        100.0 * storm_rate / bound
    );
    println!(
        "p99 during storm / p99 alone = **{:.2}** (target ≤ 3)",
        during.p99_ms / alone.p99_ms
    );
}
