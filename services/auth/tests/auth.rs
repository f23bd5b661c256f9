//! The auth service alone: common endpoints and its binary. The flows of docs/API.md run in
//! the cross-service suite (`tests/tests/e2e/auth.rs`), since login asks the tenant
//! service for the user's tenants.

use auth::keys::generate_pem;
use testkit::{service_contract, start_service, TestContext, INTERNAL_TOKEN};

#[tokio::test]
async fn serves_health_ready_metrics_and_openapi() {
    let ctx = TestContext::new().await;
    let pem = generate_pem().expect("key");
    let base = start_service::<auth::Service>(&ctx, &[("JWT_PRIVATE_KEY", &pem)]);
    service_contract::assert_common_endpoints(&base, "auth").await;
    let doc: serde_json::Value = reqwest::get(format!("{base}/api-docs/openapi.json"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    for path in [
        "/api/auth/register",
        "/api/auth/login",
        "/api/auth/refresh",
        "/api/auth/logout",
        "/api/users/me",
        "/api/users/me/tenants",
        "/.well-known/jwks.json",
        "/internal/v1/users/resolve",
        "/internal/v1/tokens",
        "/internal/v1/users/lookup",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
}

#[test]
fn the_binary_refuses_missing_settings_and_checks_valid_ones() {
    let pem = generate_pem().expect("key");
    service_contract::assert_check_config(
        env!("CARGO_BIN_EXE_auth"),
        &[
            ("JWT_PRIVATE_KEY", &pem),
            ("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN),
        ],
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_auth"))
        .arg("generate-key")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("-----BEGIN PRIVATE KEY-----"));
}

#[tokio::test]
async fn sigterm_drains_stops_the_relay_and_exits_zero() {
    let ctx = TestContext::new().await;
    let (mut env, _kafka) =
        testkit::service_contract::env_with_mock_kafka(&ctx, &events::topics::catalog());
    let pem = generate_pem().expect("key");
    env.insert("JWT_PRIVATE_KEY".to_owned(), pem);
    service_contract::assert_stops_on_sigterm(
        env!("CARGO_BIN_EXE_auth"),
        &env,
        &["outbox-relay"],
        Some(service_contract::InFlight {
            internal: false,
            method: "POST",
            path: "/api/auth/login".to_owned(),
            body: r#"{"email":"nobody@example.com","password":"not the password"}"#.to_owned(),
            status: 401,
        }),
    )
    .await;
}

// The SQL of the tables auth owns (`auth::store`), on real PostgreSQL.
#[tokio::test]
async fn a_session_opens_only_for_the_account_as_the_login_read_it() {
    use auth::store::sessions::{self, AccountState, NewSession, SessionOrigin};
    use diesel_async::AsyncConnection;
    use domain::{Email, UserId};
    use main_db::users::NewUser;
    let ctx = TestContext::new().await;
    let mut conn = diesel_async::AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
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
