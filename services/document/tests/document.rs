//! The document service starts in-process on real PostgreSQL and Redis and serves the
//! common endpoints; its binary refuses bad settings, naming them.

use testkit::{service_contract, TestContext};

#[tokio::test]
async fn serves_health_ready_metrics_and_openapi() {
    let ctx = TestContext::new().await;
    let env = ctx.service_env();
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = <document::Service as http_kit::cli::Service>::read_settings(&mut reader);
    let settings = reader.finish(settings).expect("valid settings");
    let (listener, base) = testkit::free_listener();
    tokio::spawn(document::start(settings, listener).expect("start"));
    service_contract::assert_common_endpoints(&base, "document").await;
}

#[test]
fn the_binary_refuses_missing_settings_and_checks_valid_ones() {
    service_contract::assert_check_config(env!("CARGO_BIN_EXE_document"));
}
