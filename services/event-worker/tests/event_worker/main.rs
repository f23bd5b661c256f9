//! The event-worker service starts in-process on real PostgreSQL and Redis and serves the
//! common endpoints; its binary refuses bad settings, naming them; killed in the middle
//! of its work (`killed`), each effect still happens exactly once; `topics ensure`
//! makes the catalog's topics on a real broker and `/ready` names missing ones
//! (`topics`).

mod faults;
mod killed;
mod topics;

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

#[tokio::test]
async fn old_processed_event_ids_are_pruned_and_recent_ones_kept() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let ctx = TestContext::new().await;
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    diesel::sql_query(
        "INSERT INTO processed_events (consumer, event_id, processed_at) \
         SELECT 'audit-log', gen_random_uuid(), now() - interval '30 days' FROM generate_series(1, 25000)",
    )
    .execute(&mut conn)
    .await
    .expect("old ids");
    diesel::sql_query(
        "INSERT INTO processed_events (consumer, event_id) \
         SELECT 'audit-log', gen_random_uuid() FROM generate_series(1, 10)",
    )
    .execute(&mut conn)
    .await
    .expect("recent ids");
    let db = main_db::build_pool(
        &ctx.main_url,
        &main_db::PoolSettings {
            max_size: 2,
            timeout: std::time::Duration::from_secs(5),
        },
    )
    .expect("pool");
    let deleted =
        event_worker::retention::prune(&db, chrono::Utc::now() - chrono::Duration::days(14))
            .await
            .expect("prune");
    assert_eq!(deleted, 25_000, "every old id, over several batches");
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let left: Count = diesel::sql_query("SELECT count(*) AS n FROM processed_events")
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(left.n, 10, "recent ids stay");
}

#[tokio::test]
async fn sigterm_drains_stops_every_consumer_and_loop_and_exits_zero() {
    let ctx = TestContext::new().await;
    let (env, _kafka) =
        testkit::service_contract::env_with_mock_kafka(&ctx, &events::topics::catalog());
    service_contract::assert_stops_on_sigterm(
        env!("CARGO_BIN_EXE_event-worker"),
        &env,
        &[
            "shutdown-signal",
            event_worker::audit::CONSUMER,
            event_worker::webhooks::CONSUMER,
            "consumer-lag",
            "retention",
            "webhook-dispatcher",
            "role-changes",
        ],
        None,
    )
    .await;
}
