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
