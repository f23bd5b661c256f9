//! The tenant service on real PostgreSQL and Redis: common endpoints, provisioning
//! (concurrent, failing, retried) and the migrate-tenants command.

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{Email, TenantName, TenantStatus, UserId};
use main_db::schema::{outbox, user_tenant_associations};
use tenant::provisioning::{ProvisionError, Provisioner};
use tenant::Settings;
use tenant_db::{migrations, TenantDatabaseManager};
use testkit::{service_contract, TestContext};

fn settings_with(ctx: &TestContext, extra: &[(&str, &str)]) -> Settings {
    let mut env = ctx.service_env();
    for (k, v) in extra {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = Settings::read(&mut reader);
    reader.finish(settings).expect("valid settings")
}

fn fleet(settings: &Settings) -> Arc<tenant::fleet::Fleet> {
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )
    .expect("pool");
    Arc::new(tenant::fleet::Fleet::new(db, settings.tenant_db.clone()).expect("fleet"))
}

/// A provisioner, and the manager of the main server.
fn provisioner(settings: &Settings) -> (Provisioner, Arc<TenantDatabaseManager>) {
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )
    .expect("pool");
    let fleet = fleet(settings);
    let manager = fleet.main().clone();
    (Provisioner::new(db, fleet), manager)
}

async fn create_user(ctx: &TestContext) -> UserId {
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let id = UserId::new();
    let email = Email::parse(&format!("{id}@example.com")).expect("valid");
    main_db::users::insert(
        &mut conn,
        main_db::users::NewUser {
            id,
            email: &email,
            password_hash: None,
            first_name: "A",
            last_name: "B",
            email_verified: false,
        },
    )
    .await
    .expect("user");
    id
}

#[tokio::test]
async fn serves_health_ready_metrics_and_openapi() {
    let ctx = TestContext::new().await;
    let base = testkit::start_service::<tenant::Service>(&ctx, &[]);
    service_contract::assert_common_endpoints(&base, "tenant").await;
    let doc: serde_json::Value = reqwest::get(format!("{base}/api-docs/openapi.json"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    for (path, method) in [
        ("/api/tenants", "get"),
        ("/api/tenants", "post"),
        ("/api/tenants/{id}", "get"),
        ("/api/tenants/{id}", "put"),
        ("/api/tenants/{id}", "delete"),
        ("/api/tenants/{id}/retry", "post"),
        ("/api/tenants/{id}/users", "post"),
        ("/api/tenants/{id}/users/{user_id}", "put"),
        ("/api/tenants/{id}/users/{user_id}", "delete"),
        ("/internal/v1/tenants/{tenant_id}", "get"),
        ("/internal/v1/tenants/{tenant_id}/members/{user_id}", "get"),
        ("/internal/v1/tenants/{tenant_id}/members/{user_id}", "put"),
        ("/internal/v1/users/{user_id}/tenants", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
    }
}

#[test]
fn the_binary_refuses_missing_settings_and_checks_valid_ones() {
    service_contract::assert_check_config(
        env!("CARGO_BIN_EXE_tenant"),
        &[("INTERNAL_SERVICE_TOKEN", testkit::INTERNAL_TOKEN)],
    );
}

#[tokio::test]
async fn twenty_tenants_provisioned_concurrently_all_succeed_with_distinct_databases() {
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[("DATABASE_POOL_SIZE", "8")]);
    let (provisioner, manager) = provisioner(&settings);
    let creator = create_user(&ctx).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let provisioner = provisioner.clone();
            // Equal names on purpose: they still get distinct databases.
            let name = TenantName::parse(if i % 2 == 0 {
                "Acme Corp"
            } else {
                "Globex \"; DROP"
            })
            .expect("valid");
            tokio::spawn(async move { provisioner.provision(name, Some(creator)).await })
        })
        .collect();
    let mut databases = HashSet::new();
    for task in tasks {
        let tenant = task.await.expect("join").expect("provisioned");
        assert_eq!(tenant.status(), TenantStatus::Active);
        assert_eq!(tenant.created_by, Some(creator.into_uuid()));
        let database = tenant.database().expect("valid name");
        assert!(
            manager.exists(&database).await.expect("exists"),
            "{database}"
        );
        assert!(
            migrations::pending(&manager.database_url(&database), Duration::from_secs(5))
                .await
                .expect("pending")
                .is_empty()
        );
        databases.insert(database);
    }
    assert_eq!(databases.len(), 20);

    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let events: Vec<String> = outbox::table
        .select(outbox::topic)
        .load(&mut conn)
        .await
        .expect("outbox");
    assert_eq!(events.len(), 20);
    assert!(events.iter().all(|t| t == "tenant.created"));
    let admins: i64 = user_tenant_associations::table
        .filter(user_tenant_associations::user_id.eq(creator.into_uuid()))
        .filter(user_tenant_associations::role.eq("admin"))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(admins, 20, "the creator is admin of each");
}

#[tokio::test]
async fn a_failed_provisioning_is_recorded_leaves_no_database_and_can_be_retried() {
    let ctx = TestContext::new().await;
    // The template does not exist yet: CREATE DATABASE fails.
    let template = format!("{}_later", ctx.tenant_template);
    ctx.track_database(&template);
    let settings = settings_with(&ctx, &[("TENANT_TEMPLATE_DATABASE", &template)]);
    let (provisioner, manager) = provisioner(&settings);
    let err = provisioner
        .provision(TenantName::parse("Initech").expect("valid"), None)
        .await
        .expect_err("no template");
    let ProvisionError::Failed { tenant_id, reason } = err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("does not exist"), "{reason}");

    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let tenant = tenant::store::tenants::find(&mut conn, tenant_id)
        .await
        .expect("query")
        .expect("row kept");
    assert_eq!(tenant.status(), TenantStatus::Failed);
    assert_eq!(tenant.status_reason.as_deref(), Some(reason.as_str()));
    let database = tenant.database().expect("valid");
    assert!(!manager.exists(&database).await.expect("exists"));
    let events: i64 = outbox::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(events, 0, "no tenant.created for a failed tenant");

    manager
        .ensure_template()
        .await
        .expect("create the template");
    let tenant = provisioner.retry(tenant_id).await.expect("retry succeeds");
    assert_eq!(tenant.status(), TenantStatus::Active);
    assert_eq!(tenant.status_reason, None);
    assert!(manager.exists(&database).await.expect("exists"));
    let err = provisioner
        .retry(tenant_id)
        .await
        .expect_err("only failed tenants are retried");
    assert!(
        matches!(err, ProvisionError::NotRetryable(TenantStatus::Active)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_failure_after_the_database_was_created_drops_it() {
    let ctx = TestContext::new().await;
    // A template whose content conflicts with the pending migration: the copy is made,
    // then migrating it fails.
    let template = format!("{}_bad", ctx.tenant_template);
    ctx.track_database(&template);
    let mut admin = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE \"{template}\""))
        .await
        .expect("template");
    {
        let mut tpl = AsyncPgConnection::establish(&ctx.url_of(&template))
            .await
            .expect("connect template");
        tpl.batch_execute("CREATE TABLE files (x int)")
            .await
            .expect("conflicting table");
    }
    let settings = settings_with(&ctx, &[("TENANT_TEMPLATE_DATABASE", &template)]);
    let (provisioner, manager) = provisioner(&settings);
    let err = provisioner
        .provision(TenantName::parse("Hooli").expect("valid"), None)
        .await
        .expect_err("migration fails");
    let ProvisionError::Failed { tenant_id, reason } = err else {
        panic!("{err:?}")
    };
    assert!(reason.contains("files"), "{reason}");
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let tenant = tenant::store::tenants::find(&mut conn, tenant_id)
        .await
        .expect("query")
        .expect("row");
    assert_eq!(tenant.status(), TenantStatus::Failed);
    assert!(
        !manager
            .exists(&tenant.database().expect("valid"))
            .await
            .expect("exists"),
        "no orphan database"
    );
}

fn run_cli(ctx: &TestContext, args: &[&str]) -> (i32, String) {
    tenant_cli(ctx, &[&["migrate-tenants"], args].concat())
}

/// The tenant binary run with `args` on the test's databases: exit code, stdout then
/// stderr.
fn tenant_cli(ctx: &TestContext, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tenant"))
        .args(args)
        .env_clear()
        .envs(ctx.service_env())
        .env("RUST_LOG", "error")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run tenant");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
    )
}

#[tokio::test]
async fn migrate_tenants_reports_each_tenant_and_fails_when_one_fails() {
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[]);
    let (provisioner, manager) = provisioner(&settings);
    let mut tenants = Vec::new();
    for name in ["One", "Two", "Three"] {
        tenants.push(
            provisioner
                .provision(TenantName::parse(name).expect("valid"), None)
                .await
                .expect("provisioned"),
        );
    }
    // Make all three look like an older release (the latest migration's down.sql), and
    // break the second (its database refuses writes: no migration can apply).
    let latest = migrations::known_versions().pop().expect("a migration");
    let down = testkit::latest_down_sql(&testkit::tenant_migrations_dir());
    for (i, tenant) in tenants.iter().enumerate() {
        let url = manager.database_url(&tenant.database().expect("valid"));
        let mut conn = AsyncPgConnection::establish(&url).await.expect("connect");
        conn.batch_execute(&format!(
            "{down}; DELETE FROM __diesel_schema_migrations WHERE version = '{latest}'"
        ))
        .await
        .expect("downgrade");
        if i == 1 {
            let database = tenant.database().expect("valid");
            conn.batch_execute(&format!(
                "ALTER DATABASE \"{database}\" SET default_transaction_read_only = on"
            ))
            .await
            .expect("sabotage");
        }
    }
    drop(manager);

    let (code, out) = run_cli(&ctx, &["--dry-run"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches(&format!("pending {latest}")).count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("3 tenant databases: 3 with pending migrations"),
        "{out}"
    );

    let (code, out) = run_cli(&ctx, &["--concurrency", "2"]);
    assert_eq!(code, 1, "a failed tenant makes the run fail: {out}");
    assert!(
        out.contains(&format!("{}: FAILED", tenants[1].id)) || out.contains("FAILED"),
        "{out}"
    );
    assert!(out.contains("2 migrated, 0 up to date, 1 failed"), "{out}");
    assert!(out.contains("template"), "{out}");

    let (code, out) = run_cli(&ctx, &["--tenant-id", &tenants[0].id.to_string()]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 tenant databases: 0 migrated, 1 up to date, 0 failed"),
        "{out}"
    );

    let (code, out) = run_cli(
        &ctx,
        &["--history", "--tenant-id", &tenants[2].id.to_string()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&latest), "{out}");

    let (code, out) = run_cli(&ctx, &["--tenant-id", &uuid::Uuid::new_v4().to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no tenant"), "{out}");
}

#[tokio::test]
async fn an_interrupted_provisioning_is_swept_to_failed_without_its_database() {
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[]);
    let (provisioner, manager) = provisioner(&settings);
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )
    .expect("pool");
    // As a crashed process leaves it: the row in `provisioning`, the database made.
    let name = TenantName::parse("Crashed").expect("valid");
    let database = domain::TenantDatabaseName::generate(&name);
    let id = domain::TenantId::new();
    {
        let mut conn = db.get().await.expect("conn");
        tenant::store::tenants::insert_provisioning(
            &mut conn,
            id,
            &name,
            &database,
            None,
            tenant::store::servers::MAIN_SERVER_ID,
        )
        .await
        .expect("row");
    }
    manager
        .create_from_template(&database)
        .await
        .expect("half-made database");
    // A fresh one is left alone.
    let fleet = fleet(&settings);
    let swept = tenant::maintenance::sweep_interrupted(&db, &fleet, Duration::from_secs(300))
        .await
        .expect("sweep");
    assert_eq!(swept, 0);
    let swept = tenant::maintenance::sweep_interrupted(&db, &fleet, Duration::ZERO)
        .await
        .expect("sweep");
    assert_eq!(swept, 1);
    let mut conn = db.get().await.expect("conn");
    let row = tenant::store::tenants::find(&mut conn, id)
        .await
        .expect("query")
        .expect("row");
    assert_eq!(row.status(), TenantStatus::Failed);
    assert_eq!(
        row.status_reason.as_deref(),
        Some(tenant::maintenance::INTERRUPTED)
    );
    assert!(
        !manager.exists(&database).await.expect("exists"),
        "no orphan database"
    );
    drop(conn);
    let tenant = provisioner.retry(id).await.expect("retry completes it");
    assert_eq!(tenant.status(), TenantStatus::Active);
}

#[tokio::test]
async fn the_database_server_dying_fails_provisioning_cleanly_and_retry_completes_it() {
    let ctx = TestContext::new().await;
    let server = testkit::PrivatePostgres::start().expect("a private PostgreSQL");
    // Tenant databases on the private server; the main database on the usual one.
    let mut settings = settings_with(&ctx, &[]);
    settings.tenant_db =
        tenant_db::TenantDbSettings::new(server.url.clone(), "tenant_template".to_owned());
    settings.tenant_db.timeout = Duration::from_secs(2);
    let (provisioner, manager) = provisioner(&settings);
    manager
        .ensure_template()
        .await
        .expect("template on the private server");
    provisioner
        .provision(TenantName::parse("Before").expect("valid"), None)
        .await
        .expect("works while up");

    server.kill().expect("kill the server");
    let err = provisioner
        .provision(TenantName::parse("During").expect("valid"), None)
        .await
        .expect_err("server down");
    let ProvisionError::Failed { tenant_id, reason } = err else {
        panic!("{err:?}")
    };
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let tenant = tenant::store::tenants::find(&mut conn, tenant_id)
        .await
        .expect("query")
        .expect("row");
    assert_eq!(tenant.status(), TenantStatus::Failed);
    assert_eq!(tenant.status_reason.as_deref(), Some(reason.as_str()));

    server.resume().expect("restart");
    let manager =
        TenantDatabaseManager::new(settings.tenant_db.clone()).expect("manager after restart");
    assert!(
        !manager
            .exists(&tenant.database().expect("valid"))
            .await
            .expect("exists"),
        "no orphan database"
    );
    let (provisioner, _) = self::provisioner(&settings);
    let done = provisioner
        .retry(tenant_id)
        .await
        .expect("retry after the restart");
    assert_eq!(done.status(), TenantStatus::Active);
    assert!(manager
        .exists(&done.database().expect("valid"))
        .await
        .expect("exists"));
}

#[tokio::test]
async fn ready_reports_a_missing_tenant_template() {
    let ctx = TestContext::new().await;
    let base = testkit::start_service::<tenant::Service>(
        &ctx,
        &[("TENANT_TEMPLATE_DATABASE", "no_such_template")],
    );
    let response = reqwest::get(format!("{base}/ready")).await.expect("get");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["details"]["tenant_template"], "unavailable", "{body}");
    assert_eq!(body["details"]["postgres"], "ok", "{body}");
}

#[tokio::test]
async fn sigterm_drains_stops_the_sweep_and_the_relay_and_exits_zero() {
    let ctx = TestContext::new().await;
    let (env, _kafka) =
        testkit::service_contract::env_with_mock_kafka(&ctx, &events::topics::catalog());
    testkit::service_contract::assert_stops_on_sigterm(
        env!("CARGO_BIN_EXE_tenant"),
        &env,
        &["provisioning-sweep", "outbox-relay"],
        Some(testkit::service_contract::InFlight {
            internal: true,
            method: "PUT",
            path: format!("/internal/v1/tenants/{}/sso", domain::TenantId::new()),
            body: r#"{"auth_method":"both","sso_domain_whitelist":["example.com"],"sso_auto_provisioning":false,"sso_default_role":"viewer"}"#.to_owned(),
            status: 404,
        }),
    )
    .await;
}

// The SQL of the tables the tenant service owns (`tenant::store`), on real PostgreSQL.
#[tokio::test]
async fn a_tenant_has_one_pending_invitation_per_address_and_each_ends_once() {
    use domain::{Role, TenantDatabaseName, TenantId};
    use main_db::users::NewUser;
    use tenant::store::invitations::{self, NewInvitation};
    let ctx = TestContext::new().await;
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let name = TenantName::parse("Invites").expect("valid");
    let tenant = tenant::store::tenants::insert_provisioning(
        &mut conn,
        TenantId::new(),
        &name,
        &TenantDatabaseName::generate(&name),
        None,
        tenant::store::servers::MAIN_SERVER_ID,
    )
    .await
    .expect("tenant")
    .tenant_id();
    let admin_email = Email::parse("admin@example.com").expect("valid");
    let admin = main_db::users::insert(
        &mut conn,
        NewUser {
            id: UserId::new(),
            email: &admin_email,
            password_hash: None,
            first_name: "A",
            last_name: "D",
            email_verified: true,
        },
    )
    .await
    .expect("admin");
    let admin = UserId::from_uuid(admin.id);
    let email = Email::parse("Guest@Example.com").expect("valid");
    let (first_hash, second_hash) = ([1u8; 32], [2u8; 32]);
    let invitation = |hash: &'static [u8; 32]| NewInvitation {
        id: uuid::Uuid::new_v4(),
        tenant,
        email: Box::leak(Box::new(email.clone())),
        role: Role::User,
        token_hash: hash,
        invited_by: admin,
        expires_at: chrono::Utc::now() + chrono::Duration::days(7),
    };
    let first = invitations::insert(&mut conn, &invitation(&[1u8; 32]))
        .await
        .expect("first");
    assert_eq!(first.email, "guest@example.com");
    let err = invitations::insert(&mut conn, &invitation(&[2u8; 32]))
        .await
        .expect_err("a second pending invitation of the address");
    assert!(
        matches!(&err, diesel::result::Error::DatabaseError(_, info)
            if info.constraint_name() == Some("tenant_invitations_pending_key")),
        "{err:?}"
    );
    // Sent again: the same row with a new token.
    let again = invitations::refresh(&mut conn, first.id, &invitation(&[2u8; 32]))
        .await
        .expect("refresh")
        .expect("pending");
    assert_eq!(again.id, first.id);
    assert!(
        invitations::find_by_hash(&mut conn, &first_hash)
            .await
            .expect("query")
            .is_none(),
        "the first link no longer works"
    );
    assert_eq!(
        invitations::find_by_hash(&mut conn, &second_hash)
            .await
            .expect("query")
            .map(|r| r.id),
        Some(first.id)
    );
    assert_eq!(
        invitations::count_open(&mut conn, tenant)
            .await
            .expect("count"),
        1
    );

    let accepted = invitations::accept(&mut conn, first.id, admin)
        .await
        .expect("accept")
        .expect("pending");
    assert!(accepted.accepted_at.is_some() && !accepted.is_pending());
    assert!(invitations::accept(&mut conn, first.id, admin)
        .await
        .expect("accept")
        .is_none());
    assert!(invitations::revoke(&mut conn, tenant, first.id)
        .await
        .expect("revoke")
        .is_none());
    // Accepted: the address can be invited again (to come back after leaving).
    let next = invitations::insert(&mut conn, &invitation(&[3u8; 32]))
        .await
        .expect("a new invitation once the first is accepted");
    assert!(
        invitations::revoke(&mut conn, TenantId::new(), next.id)
            .await
            .expect("revoke")
            .is_none(),
        "another tenant's invitation"
    );
    let revoked = invitations::revoke(&mut conn, tenant, next.id)
        .await
        .expect("revoke")
        .expect("pending");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        invitations::count_open(&mut conn, tenant)
            .await
            .expect("count"),
        0
    );

    let err = conn
        .batch_execute(&format!(
            "UPDATE tenant_invitations SET revoked_at = now() WHERE id = '{}'",
            first.id
        ))
        .await
        .expect_err("accepted and revoked");
    assert!(
        err.to_string().contains("tenant_invitations_one_outcome"),
        "{err}"
    );
    let err = conn
        .batch_execute(&format!(
            "UPDATE tenant_invitations SET role = 'owner' WHERE id = '{}'",
            first.id
        ))
        .await
        .expect_err("unknown role");
    assert!(
        err.to_string().contains("tenant_invitations_role_check"),
        "{err}"
    );

    // Expired invitations are not open, and long-expired ones go.
    let old = invitations::insert(&mut conn, &invitation(&[4u8; 32]))
        .await
        .expect("third");
    conn.batch_execute(&format!(
        "UPDATE tenant_invitations SET created_at = now() - interval '40 days', \
         expires_at = now() - interval '33 days' WHERE id = '{}'",
        old.id
    ))
    .await
    .expect("age");
    assert_eq!(
        invitations::count_open(&mut conn, tenant)
            .await
            .expect("count"),
        0
    );
    assert!(invitations::list_open(&mut conn, tenant, 0, 10)
        .await
        .expect("list")
        .is_empty());
    let cleared = invitations::delete_expired(
        &mut conn,
        tenant,
        chrono::Utc::now() - chrono::Duration::days(30),
    )
    .await
    .expect("clear");
    assert_eq!(cleared, 1);
}

// Database servers and placement (docs/OPERATIONS.md, "Database servers").

#[tokio::test]
async fn the_main_server_is_registered_and_every_tenant_is_placed_on_it() {
    use tenant::store::servers::{self, MAIN_SERVER_ID};
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[]);
    let (provisioner, _) = provisioner(&settings);
    let mut placed = Vec::new();
    for name in ["Placed One", "Placed Two"] {
        placed.push(
            provisioner
                .provision(TenantName::parse(name).expect("valid"), None)
                .await
                .expect("provisioned"),
        );
    }
    assert!(placed.iter().all(|t| t.server_id == MAIN_SERVER_ID));
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let listed = servers::list(&mut conn).await.expect("servers");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let main = &listed[0];
    assert_eq!(
        (
            main.id,
            main.name.as_str(),
            main.state.as_str(),
            main.weight,
            main.max_tenants
        ),
        (MAIN_SERVER_ID, "main", "active", 100, None)
    );
    assert_eq!(
        (main.admin_url_ref.as_str(), main.url_ref.as_str()),
        ("DATABASE_ADMIN_URL", "DATABASE_URL")
    );
    assert_eq!(main.tenants, 2);

    let (code, stdout) = tenant_cli(&ctx, &["servers", "list"]);
    assert_eq!(code, 0, "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("main "))
        .unwrap_or_else(|| panic!("no main row: {stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..7],
        ["main", "active", "100", "-", "2", "100.0%", "100.0%"],
        "{row}"
    );
    assert!(
        row.ends_with("admin DATABASE_ADMIN_URL, requests DATABASE_URL"),
        "{row}"
    );
    assert!(stdout.contains("1 servers, 2 tenants"), "{stdout}");
    // No URL, only the names of the settings holding them.
    assert!(!stdout.contains("postgres"), "{stdout}");
}

#[tokio::test]
async fn no_server_open_for_tenants_refuses_a_new_one_and_writes_nothing() {
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[]);
    let (provisioner, _) = provisioner(&settings);
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    conn.batch_execute("UPDATE database_servers SET state = 'draining'")
        .await
        .expect("drain");
    let err = provisioner
        .provision(TenantName::parse("Nowhere").expect("valid"), None)
        .await
        .expect_err("no active server");
    assert!(
        matches!(
            err,
            ProvisionError::NoCapacity(tenant::placement::NoCapacity { active: 0, full: 0 })
        ),
        "{err:?}"
    );
    // A full server is refused the same way.
    conn.batch_execute("UPDATE database_servers SET state = 'active', max_tenants = 1")
        .await
        .expect("limit");
    provisioner
        .provision(TenantName::parse("First").expect("valid"), None)
        .await
        .expect("room for one");
    let err = provisioner
        .provision(TenantName::parse("Second").expect("valid"), None)
        .await
        .expect_err("full");
    assert!(
        matches!(
            err,
            ProvisionError::NoCapacity(tenant::placement::NoCapacity { active: 1, full: 1 })
        ),
        "{err:?}"
    );
    let names: Vec<String> = main_db::schema::tenants::table
        .select(main_db::schema::tenants::name)
        .load(&mut conn)
        .await
        .expect("tenants");
    assert_eq!(names, vec!["First".to_owned()]);
}

#[tokio::test]
async fn a_tenant_on_a_server_whose_setting_is_missing_fails_naming_it() {
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[]);
    let (provisioner, manager) = provisioner(&settings);
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    // Registered by hand, heavier than main: placement chooses it.
    conn.batch_execute(
        "INSERT INTO database_servers (id, name, admin_url_ref, url_ref, weight) \
         VALUES ('00000000-0000-0000-0000-0000000000aa', 'elsewhere', 'PG2_ADMIN_URL', 'PG2_URL', 10000)",
    )
    .await
    .expect("second server");
    let err = provisioner
        .provision(TenantName::parse("Misplaced").expect("valid"), None)
        .await
        .expect_err("unreachable server");
    let ProvisionError::Failed { tenant_id, reason } = err else {
        panic!("{err:?}");
    };
    assert!(
        reason.contains("PG2_URL") && reason.contains("not set"),
        "the missing setting is named: {reason}"
    );
    let row = tenant::store::tenants::find(&mut conn, tenant_id)
        .await
        .expect("query")
        .expect("kept");
    assert_eq!(row.status(), TenantStatus::Failed);
    assert_eq!(
        row.server_id.to_string(),
        "00000000-0000-0000-0000-0000000000aa"
    );
    assert!(!manager
        .exists(&row.database().expect("valid"))
        .await
        .expect("check"));
}

#[tokio::test]
async fn servers_are_drained_activated_and_disabled_only_when_empty() {
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[]);
    let (provisioner, _) = provisioner(&settings);
    let servers_cli = |args: &[&str]| tenant_cli(&ctx, &[&["servers"], args].concat());
    provisioner
        .provision(TenantName::parse("Resident").expect("valid"), None)
        .await
        .expect("provisioned");
    let (code, out) = servers_cli(&["drain", "main"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("database server \"main\": active → draining (1 tenants)"),
        "{out}"
    );
    assert!(out.contains("no server is active now"), "{out}");
    assert!(matches!(
        provisioner
            .provision(TenantName::parse("Refused").expect("valid"), None)
            .await,
        Err(ProvisionError::NoCapacity(_))
    ));
    // Disabling a server that holds tenants is refused, and changes nothing.
    let (code, out) = servers_cli(&["disable", "main"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("still holds 1 tenants"), "{out}");
    let (code, out) = servers_cli(&["list"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("main ") && l.contains(" draining ")),
        "{out}"
    );
    let (code, out) = servers_cli(&["activate", "main"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
    provisioner
        .provision(TenantName::parse("Welcome").expect("valid"), None)
        .await
        .expect("placed again");
    let (code, out) = servers_cli(&["drain", "nowhere"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("no database server named \"nowhere\""),
        "{out}"
    );
    // An empty server is disabled.
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    conn.batch_execute(
        "INSERT INTO database_servers (id, name, admin_url_ref, url_ref, state) \
         VALUES (gen_random_uuid(), 'spare', 'SPARE_ADMIN_URL', 'SPARE_URL', 'draining')",
    )
    .await
    .expect("a spare server");
    let (code, out) = servers_cli(&["disable", "spare"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("database server \"spare\": draining → disabled (0 tenants)"),
        "{out}"
    );
}

#[tokio::test]
async fn a_deactivated_tenant_counts_on_its_server_until_purged() {
    let ctx = TestContext::new().await;
    let settings = settings_with(&ctx, &[]);
    let (provisioner, manager) = provisioner(&settings);
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    conn.batch_execute("UPDATE database_servers SET max_tenants = 1")
        .await
        .expect("limit");
    let first = provisioner
        .provision(TenantName::parse("Dormant").expect("valid"), None)
        .await
        .expect("room for one");
    // Deactivated, its database kept: the server is still full.
    conn.batch_execute(&format!(
        "UPDATE tenants SET status = 'deleted', is_active = false WHERE id = '{}'",
        first.id
    ))
    .await
    .expect("deactivate");
    let err = provisioner
        .provision(TenantName::parse("Second").expect("valid"), None)
        .await
        .expect_err("still full");
    assert!(matches!(err, ProvisionError::NoCapacity(_)), "{err:?}");
    // Purged: its place is free.
    manager
        .drop_database(&first.database().expect("valid"))
        .await
        .expect("purge");
    provisioner
        .provision(TenantName::parse("Second").expect("valid"), None)
        .await
        .expect("room again");
}
