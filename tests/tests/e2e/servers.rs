//! Tenants over two PostgreSQL servers (docs/OPERATIONS.md, "Database servers"): a
//! second private server registered with `tenant servers add`, new tenants spread by
//! weight, a tenant of the second server used through the gateway, a drained server
//! given no tenants, `migrate-tenants` over both, and a purge on the second.

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::StatusCode;
use testkit::{TestContext, TestGateway, Upstreams};

use crate::documents::{platform_with, Docs};

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
    let sso = testkit::start_service::<sso::Service>(&ctx, &[]);
    let worker = testkit::start_service::<event_worker::Service>(
        &ctx,
        &[
            ("TENANT_SERVICE_URL", direct.tenant.as_str()),
            ("AUTH_SERVICE_URL", direct.auth.base.as_str()),
            (SECOND, second.url.as_str()),
        ],
    );
    let gateway = TestGateway::start(
        Upstreams {
            auth: &direct.auth.base,
            tenant: &direct.tenant,
            document: &direct.documents,
            sso: &sso,
            event_worker: &worker,
        },
        "2m",
    )
    .await
    .expect("gateway");
    let gw = gateway.base.clone();
    let docs = Docs {
        auth: direct.auth.through(&gw),
        tenant: gw.clone(),
        documents: gw.clone(),
        s3: direct.s3,
    };

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
