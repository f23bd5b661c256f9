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
    let names = events::topics::catalog();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let kafka = testkit::TestKafka::start(&names, 1).expect("mock Kafka");
    let pem = generate_pem().expect("key");
    let mut env = ctx.service_env();
    env.insert("JWT_PRIVATE_KEY".to_owned(), pem);
    env.insert("KAFKA_BROKERS".to_owned(), kafka.brokers().to_owned());
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
