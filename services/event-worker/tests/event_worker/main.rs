//! The event-worker service starts in-process on real PostgreSQL and Redis and serves the
//! common endpoints; its binary refuses bad settings, naming them; killed in the middle
//! of its work (`killed`), each effect still happens exactly once.

mod killed;

use testkit::{service_contract, TestContext};

#[tokio::test]
async fn serves_health_ready_metrics_and_openapi() {
    let ctx = TestContext::new().await;
    let base = testkit::start_service::<event_worker::Service>(&ctx, &[]);
    service_contract::assert_common_endpoints(&base, "event-worker").await;
}

#[test]
fn the_binary_refuses_missing_settings_and_checks_valid_ones() {
    service_contract::assert_check_config(
        env!("CARGO_BIN_EXE_event-worker"),
        &[("INTERNAL_SERVICE_TOKEN", testkit::INTERNAL_TOKEN)],
    );
}
