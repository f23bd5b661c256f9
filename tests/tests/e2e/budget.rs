//! The connection budget: every service started with its default pool sizes against a
//! stock PostgreSQL (`max_connections` 100, a private server), next to another
//! application holding 40 connections, serves tenant creations, uploads and listings
//! in parallel without a 503 for want of connections, and the platform never holds
//! more than its documented budget (under 60 at one replica each).

use std::time::Duration;

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use testkit::TestContext;

use crate::documents::platform_with;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Connections of the platform's databases (not the other application's, which uses
/// `postgres`).
async fn platform_connections(admin: &mut AsyncPgConnection) -> i64 {
    diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE backend_type = 'client backend' AND (datname LIKE 'testkit%' OR datname LIKE 'tenant%')",
    )
    .get_result::<Count>(admin)
    .await
    .expect("count")
    .n
}

#[tokio::test]
async fn every_service_with_its_defaults_fits_a_stock_postgresql_next_to_another_client() {
    let pg = testkit::PrivatePostgres::start().expect("a private PostgreSQL");
    let ctx = TestContext::on_server(&pg.url).await.expect("databases");
    let mut admin = AsyncPgConnection::establish(&pg.url)
        .await
        .expect("admin connection");
    let max: Count = diesel::sql_query("SELECT current_setting('max_connections')::bigint AS n")
        .get_result(&mut admin)
        .await
        .expect("max_connections");
    assert_eq!(max.n, 100, "a stock server");
    // Another application holds 40 connections throughout.
    let mut others = Vec::new();
    for _ in 0..40 {
        others.push(
            AsyncPgConnection::establish(&pg.url)
                .await
                .expect("another application's connection"),
        );
    }
    let docs = platform_with(&ctx, &[], &[]).await;
    // The other two services, with their defaults too.
    let auth = docs.auth.base.as_str();
    let worker = testkit::start_service::<event_worker::Service>(
        &ctx,
        &[
            ("TENANT_SERVICE_URL", docs.tenant.as_str()),
            ("AUTH_SERVICE_URL", auth),
        ],
    );
    let sso = testkit::start_service::<sso::Service>(
        &ctx,
        &[
            ("TENANT_SERVICE_URL", docs.tenant.as_str()),
            ("AUTH_SERVICE_URL", auth),
        ],
    );

    // Eight users at once: each creates two tenants, uploads five files to each and
    // lists them ten times; meanwhile the audit log and SSO configuration are read.
    let users = (0..8).map(|u| {
        let docs = &docs;
        let (worker, sso) = (worker.clone(), sso.clone());
        async move {
            let mut statuses = Vec::new();
            let (token, _) = docs.auth.session(&format!("budget{u}@example.com")).await;
            for t in 0..2 {
                let tenant = docs.tenant_of(&token, &format!("Budget {u} {t}")).await;
                let names: Vec<String> = (0..5).map(|f| format!("f{f}.txt")).collect();
                let uploads = names.iter().map(|name| {
                    docs.upload(
                        &token,
                        &tenant,
                        format!("file {u} {t} {name}").into_bytes(),
                        name,
                    )
                });
                for (status, body) in futures_util::future::join_all(uploads).await {
                    statuses.push((status, format!("upload: {body}")));
                }
                let lists = (0..10).map(|_| {
                    docs.auth
                        .client
                        .get(format!("{}/api/tenants/{tenant}/documents", docs.documents))
                        .bearer_auth(&token)
                        .send()
                });
                for response in futures_util::future::join_all(lists).await {
                    let response = response.expect("list");
                    statuses.push((response.status(), "list".to_owned()));
                }
                for url in [
                    format!("{worker}/api/tenants/{tenant}/audit-logs"),
                    format!("{sso}/api/tenants/{tenant}/sso/config"),
                ] {
                    let response = docs
                        .auth
                        .client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("get");
                    statuses.push((response.status(), url));
                }
            }
            statuses
        }
    });
    // The platform's connections, sampled every 50 ms for as long as the load runs.
    let done = std::sync::atomic::AtomicBool::new(false);
    let load = async {
        let results = futures_util::future::join_all(users).await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        results
    };
    let watcher = async {
        let mut most = 0;
        while !std::sync::atomic::AtomicBool::load(&done, std::sync::atomic::Ordering::Relaxed) {
            most = most.max(platform_connections(&mut admin).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    };
    let (results, most) = tokio::join!(load, watcher);
    let statuses: Vec<_> = results.into_iter().flatten().collect();
    let unavailable: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s == StatusCode::SERVICE_UNAVAILABLE || s.is_server_error())
        .collect();
    assert!(unavailable.is_empty(), "{unavailable:?}");
    let created = statuses
        .iter()
        .filter(|(s, what)| *s == StatusCode::CREATED && what.starts_with("upload"))
        .count();
    assert_eq!(created, 8 * 2 * 5, "every upload stored");
    eprintln!("the platform held at most {most} connections");
    assert!(
        most < 60,
        "the platform held {most} connections at once (budget: under 60)"
    );
    drop(others);
}
