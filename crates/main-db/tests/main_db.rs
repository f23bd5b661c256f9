//! The main database's migrations and constraints, on real PostgreSQL.

use diesel::sql_types::Text;
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{Email, Role, TenantDatabaseName, TenantId, TenantName, UserId};
use main_db::users::NewUser;
use testkit::TestContext;

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

async fn tables(conn: &mut AsyncPgConnection) -> Vec<String> {
    let rows: Vec<Name> = diesel::sql_query(
        "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .load(conn)
    .await
    .expect("list tables");
    rows.into_iter().map(|r| r.name).collect()
}

async fn connect(ctx: &TestContext) -> AsyncPgConnection {
    AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect")
}

fn is_violation(err: &diesel::result::Error, constraint: &str) -> bool {
    match err {
        diesel::result::Error::DatabaseError(_, info) => info.constraint_name() == Some(constraint),
        _ => false,
    }
}

#[tokio::test]
async fn every_down_migration_undoes_its_up_migration() {
    let ctx = TestContext::new().await;
    let mut conn = connect(&ctx).await;
    let before = tables(&mut conn).await;
    assert!(before.contains(&"tenants".to_owned()), "{before:?}");

    let reverted = main_db::revert_all_migrations(&ctx.main_url)
        .await
        .expect("revert");
    let migrations = std::fs::read_dir(testkit::main_migrations_dir())
        .expect("migrations")
        .count();
    assert_eq!(reverted.len(), migrations);
    assert_eq!(tables(&mut conn).await, ["__diesel_schema_migrations"]);

    let applied = main_db::run_migrations(&ctx.main_url)
        .await
        .expect("migrate");
    assert_eq!(applied.len(), migrations);
    assert_eq!(tables(&mut conn).await, before);
    assert!(
        main_db::run_migrations(&ctx.main_url)
            .await
            .expect("again")
            .is_empty(),
        "idempotent"
    );
    assert_eq!(
        main_db::applied_migrations(&ctx.main_url)
            .await
            .expect("history")
            .len(),
        migrations
    );
}

#[tokio::test]
async fn emails_are_unique_whatever_their_case() {
    let ctx = TestContext::new().await;
    let mut conn = connect(&ctx).await;
    let email = Email::parse("Alice@Example.com").expect("valid");
    let user = |email| NewUser {
        id: UserId::new(),
        email,
        password_hash: None,
        first_name: "A",
        last_name: "B",
        email_verified: false,
    };
    main_db::users::insert(&mut conn, user(&email))
        .await
        .expect("first");
    let err = main_db::users::insert(&mut conn, user(&email))
        .await
        .expect_err("duplicate");
    assert!(is_violation(&err, "users_email_lower_key"), "{err:?}");
    // As an answer: a 409 naming what the constraint covers, nothing of the SQL.
    let answer = http_kit::ApiError::from(err);
    assert_eq!(actix_web::ResponseError::status_code(&answer), 409);
    assert_eq!(
        answer.to_string(),
        "A resource with this email_lower already exists"
    );
    // A raw insert that bypasses Email still cannot store a non-normalised address.
    let err = diesel::sql_query("INSERT INTO users (id, email, first_name, last_name) VALUES (gen_random_uuid(), 'ALICE@example.com', 'a', 'b')")
        .execute(&mut conn)
        .await
        .expect_err("not normalised");
    assert!(is_violation(&err, "users_email_normalised"), "{err:?}");
    let found = main_db::users::find_by_email(&mut conn, &email)
        .await
        .expect("query");
    assert_eq!(found.map(|u| u.email), Some("alice@example.com".to_owned()));
}

#[tokio::test]
async fn constraints_protect_tenants_memberships_and_sso_configs() {
    let ctx = TestContext::new().await;
    let mut conn = connect(&ctx).await;
    let name = TenantName::parse("Acme").expect("valid");
    let db = TenantDatabaseName::generate(&name);
    let insert_tenant = |id: TenantId| {
        diesel::sql_query(
            "INSERT INTO tenants (id, name, database_name, status, server_id) \
             VALUES ($1, $2, $3, 'provisioning', '00000000-0000-0000-0000-000000000001')",
        )
        .bind::<diesel::sql_types::Uuid, _>(*id.as_uuid())
        .bind::<Text, _>(name.as_str().to_owned())
        .bind::<Text, _>(db.as_str().to_owned())
    };
    let tenant = TenantId::new();
    insert_tenant(tenant)
        .execute(&mut conn)
        .await
        .expect("insert");
    let err = insert_tenant(TenantId::new())
        .execute(&mut conn)
        .await
        .expect_err("same database name");
    assert!(is_violation(&err, "tenants_database_name_key"), "{err:?}");

    let err = conn
        .batch_execute("INSERT INTO tenants (id, name, database_name, server_id) VALUES (gen_random_uuid(), 'x', 'tenant_x\"; DROP_deadbeef', '00000000-0000-0000-0000-000000000001')")
        .await
        .expect_err("unsafe database name");
    assert!(
        err.to_string().contains("tenants_database_name_shape"),
        "{err}"
    );
    let err = conn
        .batch_execute(&format!(
            "UPDATE tenants SET status = 'ready' WHERE id = '{}'",
            tenant
        ))
        .await
        .expect_err("unknown status");
    assert!(err.to_string().contains("tenants_status_check"), "{err}");

    let email = Email::parse("bob@example.com").expect("valid");
    let user = main_db::users::insert(
        &mut conn,
        NewUser {
            id: UserId::new(),
            email: &email,
            password_hash: None,
            first_name: "B",
            last_name: "C",
            email_verified: false,
        },
    )
    .await
    .expect("user");
    let insert_membership = |role: Role| {
        diesel::sql_query(
            "INSERT INTO user_tenant_associations (user_id, tenant_id, role) VALUES ($1, $2, $3)",
        )
        .bind::<diesel::sql_types::Uuid, _>(user.id)
        .bind::<diesel::sql_types::Uuid, _>(*tenant.as_uuid())
        .bind::<Text, _>(role.as_str())
    };
    insert_membership(Role::Admin)
        .execute(&mut conn)
        .await
        .expect("membership");
    let err = insert_membership(Role::Viewer)
        .execute(&mut conn)
        .await
        .expect_err("already a member");
    assert!(
        is_violation(&err, "user_tenant_associations_pkey"),
        "{err:?}"
    );
    let err = conn
        .batch_execute(&format!(
            "UPDATE user_tenant_associations SET role = 'owner' WHERE user_id = '{}'",
            user.id
        ))
        .await
        .expect_err("unknown role");
    assert!(
        err.to_string()
            .contains("user_tenant_associations_role_check"),
        "{err}"
    );

    let sso = format!(
        "INSERT INTO tenant_sso_configs (id, tenant_id, provider_tenant_id, client_id) VALUES (gen_random_uuid(), '{}', 'tid', 'cid')",
        tenant
    );
    conn.batch_execute(&sso).await.expect("first SSO config");
    let err = conn
        .batch_execute(&sso)
        .await
        .expect_err("second SSO config");
    assert!(
        err.to_string().contains("tenant_sso_configs_tenant_key"),
        "{err}"
    );
    let err = conn
        .batch_execute(&format!(
            "UPDATE tenant_sso_configs SET client_secret_encrypted = 'x' WHERE tenant_id = '{}'",
            tenant
        ))
        .await
        .expect_err("secret without key id");
    assert!(
        err.to_string()
            .contains("tenant_sso_configs_secret_has_key"),
        "{err}"
    );
}

#[tokio::test]
async fn database_servers_hold_names_of_settings_never_urls() {
    let ctx = TestContext::new().await;
    let mut conn = connect(&ctx).await;
    let main: Vec<Name> =
        diesel::sql_query("SELECT name || ' ' || admin_url_ref || ' ' || url_ref || ' ' || state AS name FROM database_servers")
            .load(&mut conn)
            .await
            .expect("servers");
    assert_eq!(
        main.into_iter().map(|r| r.name).collect::<Vec<_>>(),
        vec!["main DATABASE_ADMIN_URL DATABASE_URL active".to_owned()]
    );
    let insert = |name: &str, admin: &str, state: &str, weight: i32| {
        format!(
            "INSERT INTO database_servers (id, name, admin_url_ref, url_ref, state, weight) \
             VALUES (gen_random_uuid(), '{name}', '{admin}', 'PG2_URL', '{state}', {weight})"
        )
    };
    for (sql, constraint) in [
        (
            insert("pg2", "postgresql://u:secret@db2/postgres", "active", 100),
            "database_servers_ref_shape",
        ),
        (
            insert("PG 2", "PG2_ADMIN_URL", "active", 100),
            "database_servers_name_shape",
        ),
        (
            insert("pg2", "PG2_ADMIN_URL", "paused", 100),
            "database_servers_state_check",
        ),
        (
            insert("pg2", "PG2_ADMIN_URL", "active", 0),
            "database_servers_weight_range",
        ),
        (
            insert("main", "PG2_ADMIN_URL", "active", 100),
            "database_servers_name_key",
        ),
    ] {
        let err = conn.batch_execute(&sql).await.expect_err(constraint);
        assert!(err.to_string().contains(constraint), "{constraint}: {err}");
    }
    conn.batch_execute(&insert("pg2", "PG2_ADMIN_URL", "draining", 50))
        .await
        .expect("a valid server");
    // A tenant names an existing server.
    let err = conn
        .batch_execute(
            "INSERT INTO tenants (id, name, database_name, server_id) \
             VALUES (gen_random_uuid(), 'x', 'tenant_x_deadbeef', gen_random_uuid())",
        )
        .await
        .expect_err("unknown server");
    assert!(err.to_string().contains("tenants_server_id_fkey"), "{err}");
}

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Text)]
    application_name: String,
    #[diesel(sql_type = Text)]
    statement_timeout: String,
}

#[tokio::test]
async fn a_service_pool_names_its_sessions_and_bounds_their_statements() {
    let ctx = TestContext::new().await;
    let env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", ctx.main_url.as_str()),
        ("REDIS_URL", "redis://127.0.0.1:1"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", "1500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut reader = http_kit::ConfigReader::new(&env);
    let common = http_kit::CommonSettings::read(&mut reader, 5003);
    let common = reader.finish(common).expect("valid settings");
    let pool = main_db::service_pool("document", &common).expect("pool");
    let mut conn = pool.get().await.expect("a connection");
    let session: Session = diesel::sql_query(
        "SELECT current_setting('application_name') AS application_name, \
         current_setting('statement_timeout') AS statement_timeout",
    )
    .get_result(&mut *conn)
    .await
    .expect("settings");
    assert_eq!(session.application_name, "document");
    assert_eq!(session.statement_timeout, "1500ms");
    // A statement running longer is cancelled by the server.
    let err = diesel::sql_query("SELECT pg_sleep(3)")
        .execute(&mut *conn)
        .await
        .expect_err("cancelled by statement_timeout");
    assert!(err.to_string().contains("statement timeout"), "{err}");
}
