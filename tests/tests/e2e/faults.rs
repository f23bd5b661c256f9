//! PostgreSQL restarted under upload and listing traffic (a private server): while it
//! is down every request answers 503 (never a 500, never a hang), the services recover
//! by themselves once it is back, and nothing is left half-written: every stored file
//! has its object and every object its file row.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use testkit::TestContext;

use crate::documents::platform_with;

/// When each request was answered, which kind, and how.
type Answers = Arc<Mutex<Vec<(Instant, &'static str, StatusCode)>>>;

#[tokio::test]
async fn postgresql_restarted_under_traffic_answers_503_then_recovers_with_nothing_half_written() {
    let pg = testkit::PrivatePostgres::start().expect("a private PostgreSQL");
    let ctx = TestContext::on_server(&pg.url).await.expect("databases");
    // Requests give up on the database after a second (the default is 5).
    let quick = [
        ("DATABASE_TIMEOUT_MS", "1000"),
        ("TENANT_POOL_TIMEOUT_MS", "1000"),
    ];
    let docs = Arc::new(platform_with(&ctx, &quick, &[]).await);
    let (token, _) = docs.auth.session("restart@example.com").await;
    let tenant = docs.tenant_of(&token, "Restarted").await;

    // Traffic: an upload and a listing after another, each answer recorded with when.
    let stop = Arc::new(AtomicBool::new(false));
    let answers: Answers = Arc::default();
    let traffic = {
        let (docs, stop, answers, token, tenant) = (
            docs.clone(),
            stop.clone(),
            answers.clone(),
            token.clone(),
            tenant.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u32;
            while !AtomicBool::load(&stop, Ordering::Relaxed) {
                n += 1;
                let (status, _) = docs
                    .upload(&token, &tenant, format!("upload {n}").into_bytes(), "r.txt")
                    .await;
                answers
                    .lock()
                    .expect("lock")
                    .push((Instant::now(), "upload", status));
                let status = docs
                    .auth
                    .client
                    .get(format!("{}/api/tenants/{tenant}/documents", docs.documents))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await
                    .map_or(StatusCode::GATEWAY_TIMEOUT, |r| r.status());
                answers
                    .lock()
                    .expect("lock")
                    .push((Instant::now(), "list", status));
            }
        })
    };
    let count = |what: &str, status: StatusCode, after: Instant| {
        answers
            .lock()
            .expect("lock")
            .iter()
            .filter(|(at, w, s)| *at > after && *w == what && *s == status)
            .count()
    };
    let wait = |what: &'static str, status: StatusCode, at_least: usize, after: Instant| async move {
        testkit::wait_until(Duration::from_secs(30), || async {
            count(what, status, after) >= at_least
        })
        .await
        .unwrap_or_else(|_| panic!("fewer than {at_least} {what} answered {status}"));
    };
    let start = Instant::now();
    wait("upload", StatusCode::CREATED, 5, start).await;

    pg.kill().expect("PostgreSQL killed");
    let down = Instant::now();
    wait("upload", StatusCode::SERVICE_UNAVAILABLE, 3, down).await;
    wait("list", StatusCode::SERVICE_UNAVAILABLE, 3, down).await;

    pg.resume().expect("PostgreSQL back");
    let up = Instant::now();
    wait("upload", StatusCode::CREATED, 3, up).await;
    wait("list", StatusCode::OK, 3, up).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.expect("traffic");

    let answers = answers.lock().expect("lock").clone();
    let unexpected: Vec<_> = answers
        .iter()
        .filter(|(_, _, s)| {
            ![
                StatusCode::OK,
                StatusCode::CREATED,
                StatusCode::SERVICE_UNAVAILABLE,
            ]
            .contains(s)
        })
        .collect();
    assert!(unexpected.is_empty(), "only 2xx and 503: {unexpected:?}");
    let first_ok = answers
        .iter()
        .filter(|(at, _, s)| *at > up && s.is_success())
        .map(|(at, _, _)| *at)
        .min()
        .expect("recovered");
    assert!(
        first_ok - up < Duration::from_secs(5),
        "recovered {:?} after PostgreSQL was back",
        first_ok - up
    );
    eprintln!(
        "down for {:?}; first success {:?} after PostgreSQL was back; {} answers in all",
        up - down,
        first_ok - up,
        answers.len()
    );

    // Nothing half-written: files rows and objects match one to one.
    let (_, mine) = docs.auth.get("/api/users/me/tenants", Some(&token)).await;
    let database = mine["data"][0]["database_name"]
        .as_str()
        .expect("database")
        .to_owned();
    let mut conn = AsyncPgConnection::establish(&ctx.url_of(&database))
        .await
        .expect("tenant database");
    use tenant_db::schema::{documents, files};
    let mut paths: Vec<String> = files::table
        .select(files::s3_path)
        .load(&mut conn)
        .await
        .expect("files");
    paths.sort();
    let objects = docs.s3.objects("documents");
    assert_eq!(
        paths, objects,
        "every file has its object and every object its file"
    );
    let orphans: i64 = documents::table
        .left_join(files::table)
        .filter(files::id.is_null())
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(orphans, 0);
    let stored = answers
        .iter()
        .filter(|(_, w, s)| *w == "upload" && *s == StatusCode::CREATED)
        .count();
    let rows: i64 = documents::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    // One document per 201, and at most one more: a commit PostgreSQL made whose
    // acknowledgement the kill cut off (that upload answered 503, its rows and object
    // are whole, as checked above).
    let stored = i64::try_from(stored).expect("count");
    assert!(
        (stored..=stored + 1).contains(&rows),
        "{rows} documents for {stored} answers 201"
    );
}
