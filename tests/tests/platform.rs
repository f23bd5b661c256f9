//! All five services started together in one process, on one main database and Redis,
//! as the all-in-one local runner does: each answers as itself.

use http_kit::cli::Service;
use testkit::{service_contract, TestContext};

fn settings<S: Service>(ctx: &TestContext) -> S::Settings {
    let env = ctx.service_env();
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = S::read_settings(&mut reader);
    reader.finish(settings).expect("valid settings")
}

#[tokio::test]
async fn every_service_runs_side_by_side() {
    let ctx = TestContext::new().await;
    let mut bases = Vec::new();
    macro_rules! start {
        ($krate:ident, $name:literal) => {{
            let (listener, base) = testkit::free_listener();
            tokio::spawn($krate::start(settings::<$krate::Service>(&ctx), listener).expect("start"));
            bases.push((base, $name));
        }};
    }
    start!(auth, "auth");
    start!(tenant, "tenant");
    start!(document, "document");
    start!(sso, "sso");
    start!(event_worker, "event-worker");
    for (base, name) in &bases {
        service_contract::assert_common_endpoints(base, name).await;
    }
}
