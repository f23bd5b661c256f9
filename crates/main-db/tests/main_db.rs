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
    let tenant =
        main_db::tenants::insert_provisioning(&mut conn, TenantId::new(), &name, &db, None)
            .await
            .expect("insert");
    assert_eq!(tenant.status, "provisioning");
    let err = main_db::tenants::insert_provisioning(&mut conn, TenantId::new(), &name, &db, None)
        .await
        .expect_err("same database name");
    assert!(is_violation(&err, "tenants_database_name_key"), "{err:?}");

    let err = conn
        .batch_execute("INSERT INTO tenants (id, name, database_name) VALUES (gen_random_uuid(), 'x', 'tenant_x\"; DROP_deadbeef')")
        .await
        .expect_err("unsafe database name");
    assert!(
        err.to_string().contains("tenants_database_name_shape"),
        "{err}"
    );
    let err = conn
        .batch_execute(&format!(
            "UPDATE tenants SET status = 'ready' WHERE id = '{}'",
            tenant.id
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
    main_db::memberships::insert(
        &mut conn,
        UserId::from_uuid(user.id),
        tenant.tenant_id(),
        Role::Admin,
    )
    .await
    .expect("membership");
    let err = main_db::memberships::insert(
        &mut conn,
        UserId::from_uuid(user.id),
        tenant.tenant_id(),
        Role::Viewer,
    )
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
        tenant.id
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
            tenant.id
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
async fn a_session_opens_only_for_the_account_as_the_login_read_it() {
    use main_db::sessions::{self, AccountState, NewSession, SessionOrigin};
    let ctx = TestContext::new().await;
    let mut conn = connect(&ctx).await;
    let email = Email::parse("session@example.com").expect("valid");
    let user = main_db::users::insert(
        &mut conn,
        NewUser {
            id: UserId::new(),
            email: &email,
            password_hash: Some("hash-1"),
            first_name: "S",
            last_name: "T",
            email_verified: false,
        },
    )
    .await
    .expect("user");
    let id = UserId::from_uuid(user.id);
    let origin = SessionOrigin::Password;
    let session = |family| NewSession {
        id: family,
        user_id: id,
        expires_at: chrono::Utc::now() + chrono::Duration::days(7),
        user_agent: Some("ua"),
        client_address: Some("127.0.0.1"),
        origin: &origin,
    };
    let read = AccountState {
        password_hash: Some("hash-1"),
        tokens_valid_after: None,
    };
    let first = uuid::Uuid::new_v4();
    assert!(sessions::insert(&mut conn, &session(first), Some(&read))
        .await
        .expect("insert"));
    // The password changed while a login was checking the old one: no session.
    main_db::users::set_password(&mut conn, id, Some("hash-2"), true)
        .await
        .expect("password");
    assert!(
        !sessions::insert(&mut conn, &session(uuid::Uuid::new_v4()), Some(&read))
            .await
            .expect("insert")
    );
    // Every session was ended meanwhile: no session either.
    let cutoff = main_db::users::cut_tokens(&mut conn, id)
        .await
        .expect("cut")
        .expect("user");
    let stale = AccountState {
        password_hash: Some("hash-2"),
        tokens_valid_after: None,
    };
    assert!(
        !sessions::insert(&mut conn, &session(uuid::Uuid::new_v4()), Some(&stale))
            .await
            .expect("insert")
    );
    let fresh = AccountState {
        password_hash: Some("hash-2"),
        tokens_valid_after: Some(cutoff),
    };
    let second = uuid::Uuid::new_v4();
    assert!(sessions::insert(&mut conn, &session(second), Some(&fresh))
        .await
        .expect("insert"));
    // An inactive user gets none, whatever was read.
    main_db::users::set_active(&mut conn, id, false)
        .await
        .expect("deactivate");
    assert!(
        !sessions::insert(&mut conn, &session(uuid::Uuid::new_v4()), None)
            .await
            .expect("insert")
    );

    // Revoking: all but one, then that one; each is revoked once.
    let live: Vec<uuid::Uuid> = sessions::live_of_user(&mut conn, id)
        .await
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live.len(), 2);
    let revoked = sessions::revoke_all(&mut conn, id, Some(second), "test")
        .await
        .expect("revoke");
    assert_eq!(revoked.iter().map(|r| r.id).collect::<Vec<_>>(), [first]);
    assert!(sessions::revoke(&mut conn, id, first, "again")
        .await
        .expect("revoke")
        .is_none());
    assert!(
        sessions::revoke(&mut conn, UserId::new(), second, "not theirs")
            .await
            .expect("revoke")
            .is_none()
    );
    assert!(sessions::revoke(&mut conn, id, second, "test")
        .await
        .expect("revoke")
        .is_some());
    assert!(sessions::live_of_user(&mut conn, id)
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn a_tenant_has_one_pending_invitation_per_address_and_each_ends_once() {
    use main_db::invitations::{self, NewInvitation};
    let ctx = TestContext::new().await;
    let mut conn = connect(&ctx).await;
    let name = TenantName::parse("Invites").expect("valid");
    let tenant = main_db::tenants::insert_provisioning(
        &mut conn,
        TenantId::new(),
        &name,
        &TenantDatabaseName::generate(&name),
        None,
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
        is_violation(&err, "tenant_invitations_pending_key"),
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
