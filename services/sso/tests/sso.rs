//! The sso service starts in-process on real PostgreSQL and Redis and serves the
//! common endpoints; its binary refuses bad settings, naming them.

use testkit::{service_contract, TestContext};

#[tokio::test]
async fn serves_health_ready_metrics_and_openapi() {
    let ctx = TestContext::new().await;
    let base = testkit::start_service::<sso::Service>(&ctx, &[]);
    service_contract::assert_common_endpoints(&base, "sso").await;
}

#[test]
fn the_binary_refuses_missing_settings_and_checks_valid_ones() {
    service_contract::assert_check_config(
        env!("CARGO_BIN_EXE_sso"),
        &[("INTERNAL_SERVICE_TOKEN", testkit::INTERNAL_TOKEN)],
    );
}

#[tokio::test]
async fn sigterm_drains_stops_the_refresh_job_and_exits_zero() {
    let ctx = TestContext::new().await;
    let (env, _kafka) =
        testkit::service_contract::env_with_mock_kafka(&ctx, &events::topics::catalog());
    service_contract::assert_stops_on_sigterm(
        env!("CARGO_BIN_EXE_sso"),
        &env,
        &["role-changes", "outbox-relay", "sso-token-refresh"],
        Some(service_contract::InFlight {
            internal: false,
            method: "POST",
            path: "/api/auth/sso/detect".to_owned(),
            body: r#"{"email":"someone@nowhere.example.com"}"#.to_owned(),
            status: 200,
        }),
    )
    .await;
}
