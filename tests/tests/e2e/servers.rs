//! Tenants over two PostgreSQL servers (docs/OPERATIONS.md, "Database servers"): a
//! second private server registered with `tenant servers add`, new tenants spread by
//! weight, a tenant of the second server used through the gateway, a drained server
//! given no tenants, `migrate-tenants` over both, and a purge on the second; moving a
//! tenant under read traffic, resuming and rolling back interrupted moves.

use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use testkit::TestContext;

use crate::documents::platform_with;

/// The setting holding the second server's URL, in every service's settings.
const SECOND: &str = "TENANT_DB_2_URL";

#[derive(QueryableByName)]
struct Placed {
    #[diesel(sql_type = Text)]
    server: String,
    #[diesel(sql_type = BigInt)]
    tenants: i64,
}

/// Tenants per server name, from the main database.
async fn placement(main_url: &str) -> Vec<(String, i64)> {
    let mut conn = AsyncPgConnection::establish(main_url).await.expect("main");
    let rows: Vec<Placed> = diesel::sql_query(
        "SELECT s.name AS server, count(t.id) AS tenants FROM database_servers s \
         LEFT JOIN tenants t ON t.server_id = s.id GROUP BY s.name ORDER BY s.name",
    )
    .load(&mut conn)
    .await
    .expect("placement");
    rows.into_iter().map(|r| (r.server, r.tenants)).collect()
}

/// The server (name) and database of tenant `id`.
async fn home_of(main_url: &str, id: &str) -> (String, String) {
    #[derive(QueryableByName)]
    struct Home {
        #[diesel(sql_type = Text)]
        server: String,
        #[diesel(sql_type = Text)]
        database_name: String,
    }
    let mut conn = AsyncPgConnection::establish(main_url).await.expect("main");
    let home: Home = diesel::sql_query(
        "SELECT s.name AS server, t.database_name::text AS database_name FROM tenants t \
         JOIN database_servers s ON s.id = t.server_id WHERE t.id = $1::uuid",
    )
    .bind::<Text, _>(id)
    .get_result(&mut conn)
    .await
    .expect("tenant row");
    (home.server, home.database_name)
}

/// Whether the server of `server_url` has the database `name`.
async fn has_database(server_url: &str, name: &str) -> bool {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let mut conn = AsyncPgConnection::establish(server_url)
        .await
        .expect("server");
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found")
        .bind::<Text, _>(name)
        .get_result::<Found>(&mut conn)
        .await
        .expect("pg_database")
        .found
}

/// Runs `sql` on the database of `url`.
async fn run_sql(url: &str, sql: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

fn tenant_settings(ctx: &TestContext, extra: &[(&str, &str)]) -> tenant::Settings {
    let mut env = ctx.service_env();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = tenant::Settings::read(&mut reader);
    reader.finish(settings).expect("settings")
}

#[tokio::test]
async fn tenants_spread_over_two_servers_and_work_on_either_through_the_gateway() {
    let ctx = TestContext::new().await;
    let second = testkit::PrivatePostgres::start().expect("a second PostgreSQL server");
    let shared = [
        (SECOND, second.url.as_str()),
        ("TENANT_LIMIT_PER_USER", "20"),
    ];
    let settings = tenant_settings(&ctx, &shared);

    // Registering: refused while the setting is missing, named; then added.
    let without = tenant_settings(&ctx, &[]);
    let add = |weight: i32| tenant::commands::AddServerArgs {
        name: "second".to_owned(),
        admin_url_setting: SECOND.to_owned(),
        url_setting: None,
        weight,
        max_tenants: None,
        draining: false,
    };
    let refused = tenant::commands::servers_add(&without, &add(300), |_| {})
        .await
        .expect_err("no such setting here");
    assert!(
        refused.to_string().contains(SECOND) && refused.to_string().contains("not set"),
        "{refused:#}"
    );
    let said = std::cell::RefCell::new(Vec::new());
    tenant::commands::servers_add(&settings, &add(300), |line| {
        said.borrow_mut().push(line.to_owned())
    })
    .await
    .expect("server added");
    let said = said.into_inner();
    assert!(
        said.iter()
            .any(|l| l.contains("template") && l.contains("on second")),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|l| l.contains("\"second\" added: active, weight 300")),
        "{said:?}"
    );
    let twice = tenant::commands::servers_add(&settings, &add(300), |_| {})
        .await
        .expect_err("a name is registered once");
    assert!(twice.to_string().contains("exists already"), "{twice:#}");
    assert!(
        has_database(&second.url, &ctx.tenant_template).await,
        "the second server has the tenant template"
    );

    // The platform, every service knowing the second server's setting, behind nginx.
    let direct = platform_with(&ctx, &shared, &[]).await;
    let (gateway, docs) = crate::gateway::through_gateway(&ctx, direct, &shared).await;
    let gw = gateway.base.clone();

    // Weights 100 (main) and 300 (second): 8 tenants go 2 and 6.
    let (admin, _) = docs.auth.session("servers@example.com").await;
    let mut tenants = Vec::new();
    for i in 0..8 {
        tenants.push(docs.tenant_of(&admin, &format!("Spread {i}")).await);
    }
    assert_eq!(
        placement(&ctx.main_url).await,
        vec![("main".to_owned(), 2), ("second".to_owned(), 6)]
    );
    // Each database is on its own server, and only there.
    let mut on_second = Vec::new();
    for id in &tenants {
        let (server, database) = home_of(&ctx.main_url, id).await;
        let (here, elsewhere) = if server == "second" {
            on_second.push((id.clone(), database.clone()));
            (second.url.as_str(), ctx.server_url.as_str())
        } else {
            (ctx.server_url.as_str(), second.url.as_str())
        };
        assert!(has_database(here, &database).await);
        assert!(!has_database(elsewhere, &database).await);
    }

    // A tenant of the second server, used through the gateway: members, documents.
    let (tenant, database) = on_second[0].clone();
    let (member, _) = docs.auth.session("second-member@example.com").await;
    docs.add_member(&admin, &tenant, &member, "viewer").await;
    let (status, uploaded) = docs
        .upload(
            &admin,
            &tenant,
            b"kept on the second server".to_vec(),
            "two.txt",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let id = uploaded["data"]["id"].as_str().expect("id");
    let client = reqwest::Client::new();
    let listed: serde_json::Value = client
        .get(format!("{gw}/api/tenants/{tenant}/documents"))
        .bearer_auth(&member)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["data"]["pagination"]["total"], 1, "{listed}");
    let download = client
        .get(format!("{gw}/api/tenants/{tenant}/documents/{id}/download"))
        .bearer_auth(&member)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.bytes().await.expect("bytes").as_ref(),
        b"kept on the second server"
    );
    // The row is in the tenant's database on the second server.
    {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let url = tenant_db::TenantDbSettings::new(second.url.clone(), "unused").url_for(&database);
        let mut conn = AsyncPgConnection::establish(&url).await.expect("tenant db");
        let count: Count = diesel::sql_query("SELECT count(*) AS n FROM documents")
            .get_result(&mut conn)
            .await
            .expect("count");
        assert_eq!(count.n, 1);
    }

    // Drained: no new tenants there, its own keep working.
    tenant::commands::servers_set_state(
        &settings,
        "second",
        tenant::placement::ServerState::Draining,
        |_| {},
    )
    .await
    .expect("drain");
    for i in 0..3 {
        tenants.push(docs.tenant_of(&admin, &format!("After drain {i}")).await);
    }
    assert_eq!(
        placement(&ctx.main_url).await,
        vec![("main".to_owned(), 5), ("second".to_owned(), 6)]
    );
    let listed = client
        .get(format!("{gw}/api/tenants/{tenant}/documents"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.status(), StatusCode::OK);

    // migrate-tenants visits both servers, templates and tenants, with a line each.
    let mut lines = Vec::new();
    let summary = tenant::migrate_tenants::run(
        &settings,
        &tenant::migrate_tenants::MigrateTenantsArgs::default(),
        false,
        |line| lines.push(line.to_owned()),
    )
    .await
    .expect("migrate-tenants");
    assert_eq!(
        (summary.total, summary.failed),
        (11, 0),
        "{}",
        lines.join("\n")
    );
    for expected in [
        format!("template {}: up to date", ctx.tenant_template),
        format!("template {} on second: up to date", ctx.tenant_template),
        "server main: 5 tenant databases".to_owned(),
        "server second: 6 tenant databases".to_owned(),
        "11 tenant databases: 0 migrated, 11 up to date, 0 failed".to_owned(),
    ] {
        assert!(
            lines.iter().any(|l| l.contains(&expected)),
            "{expected:?} in:\n{}",
            lines.join("\n")
        );
    }

    // Deleted with its database: dropped on the second server, no longer counted.
    let purged = client
        .delete(format!("{gw}/api/tenants/{tenant}?purge=true"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("purge");
    assert_eq!(purged.status(), StatusCode::OK, "{:?}", purged.text().await);
    assert!(!has_database(&second.url, &database).await);
    let listed = std::cell::RefCell::new(Vec::new());
    tenant::commands::servers_list(&settings, |line| listed.borrow_mut().push(line.to_owned()))
        .await
        .expect("list");
    let listed = listed.into_inner();
    let second_line = listed
        .iter()
        .find(|l| l.starts_with("second "))
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert!(
        second_line.split_whitespace().nth(4) == Some("5"),
        "the purged tenant no longer counts: {second_line}"
    );
}

/// A mover as `tenant move` builds it, announcing on the services' Redis.
fn mover_for(ctx: &TestContext, settings: &tenant::Settings) -> tenant::moving::Mover {
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )
    .expect("pool");
    let fleet = tenant::fleet::Fleet::new(db.clone(), settings.tenant_db.clone()).expect("fleet");
    let redis = cache::connect(&ctx.redis_url, Duration::from_secs(2)).expect("redis");
    tenant::moving::Mover::new(db, std::sync::Arc::new(fleet), settings.moves.clone())
        .with_broadcast(cache::Broadcast::new(
            &redis,
            &cache::Keys::new(ctx.redis_prefix.clone()),
            tenant::moving::MOVED_CHANNEL,
        ))
}

/// The state of the tenant's last move.
async fn move_state(main_url: &str, tenant: &str) -> String {
    #[derive(QueryableByName)]
    struct State {
        #[diesel(sql_type = Text)]
        state: String,
    }
    let mut conn = AsyncPgConnection::establish(main_url).await.expect("main");
    diesel::sql_query(
        "SELECT state FROM tenant_moves WHERE tenant_id = $1::uuid ORDER BY started_at DESC LIMIT 1",
    )
    .bind::<Text, _>(tenant)
    .get_result::<State>(&mut conn)
    .await
    .expect("a move")
    .state
}

/// Waits until the tenant's copying move has had no heartbeat for `MOVE_STALE_SECS` (1
/// here), as after its process was killed.
async fn wait_stale(main_url: &str, tenant: &str) {
    #[derive(QueryableByName)]
    struct Stale {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        stale: bool,
    }
    let url = main_url.to_owned();
    let tenant = tenant.to_owned();
    testkit::wait_until(Duration::from_secs(10), || {
        let (url, tenant) = (url.clone(), tenant.clone());
        async move {
            let mut conn = AsyncPgConnection::establish(&url).await.expect("main");
            diesel::sql_query(
                "SELECT bool_and(heartbeat_at < now() - interval '1 second') AS stale \
                 FROM tenant_moves WHERE tenant_id = $1::uuid AND state = 'copying'",
            )
            .bind::<Text, _>(&tenant)
            .get_result::<Stale>(&mut conn)
            .await
            .is_ok_and(|s| s.stale)
        }
    })
    .await
    .expect("the move's heartbeat stops");
}

async fn count_documents(server_url: &str, database: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let url = tenant_db::TenantDbSettings::new(server_url.to_owned(), "unused").url_for(database);
    let mut conn = AsyncPgConnection::establish(&url).await.expect("tenant db");
    diesel::sql_query("SELECT count(*) AS n FROM documents")
        .get_result::<Count>(&mut conn)
        .await
        .expect("count")
        .n
}

#[tokio::test]
async fn a_tenant_moves_under_read_traffic_and_an_interrupted_move_resumes_or_rolls_back() {
    let ctx = TestContext::new().await;
    let second = testkit::PrivatePostgres::start().expect("a second PostgreSQL server");
    let shared = [(SECOND, second.url.as_str())];
    // The services' own sweep keeps its default (60 s): it would otherwise roll back
    // the interrupted move before this test resumes it.
    let settings = tenant_settings(
        &ctx,
        &[
            (SECOND, second.url.as_str()),
            ("MOVE_STALE_SECS", "1"),
            ("MOVE_KEEP_SOURCE_SECS", "600"),
        ],
    );
    let docs = platform_with(&ctx, &shared, &[]).await;
    let (admin, _) = docs.auth.session("mover@example.com").await;
    // Both on main (the only server), then a second server joins.
    let tenant = docs.tenant_of(&admin, "Moving").await;
    let other = docs.tenant_of(&admin, "Staying").await;
    let (_, database) = home_of(&ctx.main_url, &tenant).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let (status, body) = docs
            .upload(
                &admin,
                &tenant,
                format!("document {i}").into_bytes(),
                &format!("d{i}.txt"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["data"]["id"].as_str().expect("id").to_owned());
    }
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
        |_| {},
    )
    .await
    .expect("second server");

    // Readers all along: a list and a download, again and again; none may fail.
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reader = {
        let (client, base, tenant, token, id) = (
            reqwest::Client::new(),
            docs.documents.clone(),
            tenant.clone(),
            admin.clone(),
            ids[0].clone(),
        );
        let reading = reading.clone();
        tokio::spawn(async move {
            let (mut reads, mut failures) = (0_u32, Vec::new());
            while std::sync::atomic::AtomicBool::load(
                &reading,
                std::sync::atomic::Ordering::Relaxed,
            ) || reads < 10
            {
                for path in [
                    format!("/api/tenants/{tenant}/documents"),
                    format!("/api/tenants/{tenant}/documents/{id}/download"),
                ] {
                    let response = client
                        .get(format!("{base}{path}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .expect("read");
                    reads += 1;
                    if response.status() != StatusCode::OK {
                        failures.push(format!("{path}: {}", response.status()));
                    }
                }
            }
            (reads, failures)
        })
    };

    // The move begins (the source read-only), and its process dies before the switch.
    let mover = mover_for(&ctx, &settings);
    let tenant_id: domain::TenantId = tenant.parse().expect("id");
    mover.begin(tenant_id, "second").await.expect("begin");
    assert_eq!(move_state(&ctx.main_url, &tenant).await, "copying");
    // Writes wait: 503 tenant_maintenance with Retry-After; reads go on.
    let (status, body) = docs
        .upload(&admin, &tenant, b"during the move".to_vec(), "late.txt")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("tenant_maintenance")),
        "{body}"
    );
    let client = reqwest::Client::new();
    let rename = client
        .put(format!(
            "{}/api/tenants/{tenant}/documents/{}",
            docs.documents, ids[1]
        ))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"filename": "renamed.txt"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(rename.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(rename.headers().contains_key("retry-after"));
    let delete = client
        .delete(format!(
            "{}/api/tenants/{tenant}/documents/{}",
            docs.documents, ids[2]
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(delete.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(delete.headers().contains_key("retry-after"));
    let body: serde_json::Value = delete.json().await.expect("json");
    assert_eq!(body["error"], "tenant_maintenance", "{body}");
    // The target cannot be disabled under a move.
    let refused = tenant::commands::servers_set_state(
        &settings,
        "second",
        tenant::placement::ServerState::Disabled,
        |_| {},
    )
    .await
    .expect_err("a move is under way");
    assert!(refused.to_string().contains("under way"), "{refused:#}");
    // Another tenant on the same server is not affected.
    let (status, body) = docs
        .upload(&admin, &other, b"elsewhere".to_vec(), "o.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Resumed by running the move again once its heartbeat stopped.
    wait_stale(&ctx.main_url, &tenant).await;
    let said = std::cell::RefCell::new(Vec::new());
    tenant::commands::move_tenant(&settings, tenant_id, Some("second"), |line| {
        said.borrow_mut().push(line.to_owned())
    })
    .await
    .expect("resumed move");
    let said = said.into_inner().join("\n");
    assert!(
        said.contains("resumed and moved from main to second") && said.contains("source kept"),
        "{said}"
    );
    assert_eq!(move_state(&ctx.main_url, &tenant).await, "switched");
    assert_eq!(home_of(&ctx.main_url, &tenant).await.0, "second");
    assert_eq!(
        count_documents(&second.url, &database).await,
        12,
        "no row lost"
    );

    // The document service was told: writes go to the new server at once (its cache
    // would have kept the read-only source for minutes).
    let (status, body) = docs
        .upload(&admin, &tenant, b"after the move".to_vec(), "after.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(count_documents(&second.url, &database).await, 13);
    assert_eq!(
        count_documents(&ctx.server_url, &database).await,
        12,
        "the source kept as it was"
    );
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    let (reads, failures) = reader.await.expect("reader");
    assert!(
        failures.is_empty(),
        "{} of {reads} reads failed: {failures:?}",
        failures.len()
    );

    // Audited.
    {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&ctx.main_url)
            .await
            .expect("main");
        let audited: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM outbox WHERE topic = 'audit.events' \
             AND payload::text LIKE '%tenant.moved%' AND payload::text LIKE '%\"rows\"%'",
        )
        .get_result(&mut conn)
        .await
        .expect("outbox");
        assert_eq!(audited.n, 1);
    }

    // Moved on (back to main) while the first move's source is still kept there: that
    // source goes first, the tenant's current database is copied.
    let said = std::cell::RefCell::new(Vec::new());
    tenant::commands::move_tenant(&settings, tenant_id, Some("main"), |line| {
        said.borrow_mut().push(line.to_owned())
    })
    .await
    .expect("moved back");
    assert!(said
        .into_inner()
        .join("\n")
        .contains("moved from second to main"));
    assert_eq!(home_of(&ctx.main_url, &tenant).await.0, "main");
    assert_eq!(
        count_documents(&ctx.server_url, &database).await,
        13,
        "the current rows, not the kept ones"
    );

    // The kept source goes when due (here: made due), by the tenant service's sweep.
    run_sql(
        &ctx.main_url,
        "UPDATE tenant_moves SET drop_source_after = now() WHERE state = 'switched'",
    )
    .await;
    assert_eq!(mover.sweep().await.expect("sweep"), (0, 1));
    assert!(!has_database(&second.url, &database).await);
    assert!(has_database(&ctx.server_url, &database).await);
    assert_eq!(move_state(&ctx.main_url, &tenant).await, "done");

    // The same server under another host name: refused by `servers add`, and a move to
    // it (registered by hand) is refused before anything is dropped.
    let alias_url = ctx.server_url.replace("127.0.0.1", "localhost");
    let with_alias = tenant_settings(
        &ctx,
        &[
            (SECOND, second.url.as_str()),
            ("TENANT_DB_ALIAS_URL", alias_url.as_str()),
            ("MOVE_STALE_SECS", "1"),
        ],
    );
    let refused = tenant::commands::servers_add(
        &with_alias,
        &tenant::commands::AddServerArgs {
            name: "alias".to_owned(),
            admin_url_setting: "TENANT_DB_ALIAS_URL".to_owned(),
            url_setting: None,
            weight: 100,
            max_tenants: None,
            draining: false,
        },
        |_| {},
    )
    .await
    .expect_err("the main server again");
    assert!(
        refused.to_string().contains("registered once"),
        "{refused:#}"
    );
    run_sql(
        &ctx.main_url,
        "INSERT INTO database_servers (id, name, admin_url_ref, url_ref) VALUES \
         (gen_random_uuid(), 'alias', 'TENANT_DB_ALIAS_URL', 'TENANT_DB_ALIAS_URL')",
    )
    .await;
    let refused = mover_for(&ctx, &with_alias)
        .run(tenant_id, "alias")
        .await
        .expect_err("same server");
    assert!(refused.to_string().contains("another name"), "{refused:#}");
    // Unregistered again, or placement would give it new tenants.
    run_sql(
        &ctx.main_url,
        "DELETE FROM database_servers WHERE name = 'alias'",
    )
    .await;
    assert_eq!(
        count_documents(&ctx.server_url, &database).await,
        13,
        "nothing dropped"
    );

    // A target disabled during the copy: the switch refuses, the move rolls back,
    // writes come back.
    let other_id: domain::TenantId = other.parse().expect("id");
    let (_, other_database) = home_of(&ctx.main_url, &other).await;
    mover.begin(other_id, "second").await.expect("begin");
    let (status, _) = docs.upload(&admin, &other, b"x".to_vec(), "x.txt").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // As a disable racing the move would (the command itself refuses it).
    let set_state = |state: &'static str| {
        let url = ctx.main_url.clone();
        async move {
            run_sql(
                &url,
                &format!("UPDATE database_servers SET state = '{state}' WHERE name = 'second'"),
            )
            .await;
        }
    };
    set_state("disabled").await;
    wait_stale(&ctx.main_url, &other).await;
    let refused = mover.run(other_id, "second").await.expect_err("disabled");
    assert!(
        refused.to_string().contains("disabled during the move"),
        "{refused:#}"
    );
    set_state("active").await;
    assert_eq!(move_state(&ctx.main_url, &other).await, "rolled_back");
    assert_eq!(home_of(&ctx.main_url, &other).await.0, "main");
    assert!(!has_database(&second.url, &other_database).await);
    let (status, body) = docs.upload(&admin, &other, b"y".to_vec(), "y.txt").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A purge waits for the move (the copy would outlive it); after the move is rolled
    // back it goes through.
    let third = docs.tenant_of(&admin, "Purged mid-move").await;
    let third_id: domain::TenantId = third.parse().expect("id");
    let elsewhere = if home_of(&ctx.main_url, &third).await.0 == "main" {
        "second"
    } else {
        "main"
    };
    mover.begin(third_id, elsewhere).await.expect("begin");
    let purge = || {
        client
            .delete(format!("{}/api/tenants/{third}?purge=true", docs.tenant))
            .bearer_auth(&admin)
            .send()
    };
    let refused = purge().await.expect("purge");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error"], "tenant_maintenance", "{body}");
    wait_stale(&ctx.main_url, &third).await;
    // Rolled back by the tenant service's sweep (its process is taken as dead).
    assert_eq!(mover.sweep().await.expect("sweep"), (1, 0));
    assert_eq!(move_state(&ctx.main_url, &third).await, "rolled_back");
    assert_eq!(purge().await.expect("purge").status(), StatusCode::OK);

    // Refusals name the reason.
    let refused = mover
        .run(tenant_id, "main")
        .await
        .expect_err("already there");
    assert!(
        refused.to_string().contains("on \"main\" already"),
        "{refused:#}"
    );
    let refused = mover.run(other_id, "nowhere").await.expect_err("no server");
    assert!(
        refused.to_string().contains("no database server named"),
        "{refused:#}"
    );
}
