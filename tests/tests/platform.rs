//! All five services started together in one process, on one main database and Redis,
//! as the all-in-one local runner does: each answers as itself.

use testkit::{service_contract, start_service, TestContext};

#[tokio::test]
async fn every_service_runs_side_by_side() {
    let ctx = TestContext::new().await;
    let pem = auth::keys::generate_pem().expect("key");
    let auth_env = [
        ("JWT_PRIVATE_KEY", pem.as_str()),
        (
            "INTERNAL_SERVICE_TOKEN",
            "internal-token-for-tests-0123456789abcdef",
        ),
    ];
    let bases = [
        (start_service::<auth::Service>(&ctx, &auth_env), "auth"),
        (start_service::<tenant::Service>(&ctx, &[]), "tenant"),
        (start_service::<document::Service>(&ctx, &[]), "document"),
        (start_service::<sso::Service>(&ctx, &[]), "sso"),
        (
            start_service::<event_worker::Service>(&ctx, &[]),
            "event-worker",
        ),
    ];
    for (base, name) in &bases {
        service_contract::assert_common_endpoints(base, name).await;
    }
}
