//! The event-worker as a process: killed (SIGKILL) in the middle of its work, a new
//! one redelivers what was handled but not committed, and every effect still happens
//! exactly once: one audit row per event, one webhook delivery (one webhook-id) per
//! event and subscribed endpoint.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::TenantId;
use events::{EventEnvelope, Topic};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::json;
use testkit::{TestContext, TestKafka};

pub(crate) const PARTITIONS: i32 = 3;

/// Kills the worker when the test ends, passing or not.
pub(crate) struct Worker(pub(crate) Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_worker(ctx: &TestContext, kafka: &TestKafka) -> Worker {
    spawn_worker_with(
        ctx,
        kafka,
        &[
            // Nothing is committed before the kill: all handled work is redelivered.
            ("CONSUMER_COMMIT_INTERVAL_MS", "600000"),
            // The webhook target refuses connections; retries wait a minute.
            ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
            ("WEBHOOK_MIN_BACKOFF_MS", "60000"),
        ],
    )
}

/// An event-worker process on `kafka` with `extra` settings.
pub(crate) fn spawn_worker_with(
    ctx: &TestContext,
    kafka: &TestKafka,
    extra: &[(&str, &str)],
) -> Worker {
    let (listener, _) = testkit::free_listener();
    let (internal, _) = testkit::free_listener();
    let port = listener.local_addr().expect("address").port();
    let internal_port = internal.local_addr().expect("address").port();
    drop((listener, internal));
    let child = Command::new(env!("CARGO_BIN_EXE_event-worker"))
        .envs(ctx.service_env())
        .env("PORT", port.to_string())
        .env("INTERNAL_PORT", internal_port.to_string())
        .env("HOST", "127.0.0.1")
        .env("KAFKA_BROKERS", kafka.brokers())
        .env("CONSUMER_MAX_BATCH", "20")
        // A killed worker's partitions move to the others after this.
        .env("CONSUMER_SESSION_TIMEOUT_MS", "3000")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the event-worker");
    Worker(child)
}

pub(crate) async fn counts(conn: &mut AsyncPgConnection) -> (i64, i64, i64) {
    use main_db::schema::{audit_logs, processed_events};
    let rows: i64 = audit_logs::table
        .count()
        .get_result(conn)
        .await
        .expect("count");
    let distinct: i64 = audit_logs::table
        .select(diesel::dsl::count(audit_logs::event_id).aggregate_distinct())
        .get_result(conn)
        .await
        .expect("count");
    let processed: i64 = processed_events::table
        .filter(processed_events::consumer.eq(event_worker::audit::CONSUMER))
        .count()
        .get_result(conn)
        .await
        .expect("count");
    (rows, distinct, processed)
}

async fn webhook_counts(conn: &mut AsyncPgConnection) -> (i64, i64) {
    use main_db::schema::webhook_deliveries;
    let deliveries: i64 = webhook_deliveries::table
        .count()
        .get_result(conn)
        .await
        .expect("count");
    let distinct: i64 = webhook_deliveries::table
        .select(diesel::dsl::count(webhook_deliveries::event_id).aggregate_distinct())
        .get_result(conn)
        .await
        .expect("count");
    (deliveries, distinct)
}

fn committed(kafka: &TestKafka) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .set("group.id", "event-worker.audit-log")
        .create()
        .expect("consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition("audit.events", partition);
    }
    let offsets = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("committed offsets");
    offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_worker_killed_mid_batch_leaves_each_effect_exactly_once() {
    let ctx = TestContext::new().await;
    // A real broker (tansu), its topics made by the binary's `topics ensure`; it
    // outlives the workers (see tests/tests/e2e/events.rs).
    let kafka: &'static TestKafka =
        Box::leak(Box::new(TestKafka::tansu().expect("a tansu broker")));
    let out = crate::topics::ensure(kafka, PARTITIONS);
    assert!(out.contains("20 topics: 20 created"), "{out}");
    const EVENTS: i64 = 3000;
    let tenants: Vec<TenantId> = (0..5).map(|_| TenantId::new()).collect();
    let messages: Vec<(String, Vec<u8>)> = (0..EVENTS)
        .map(|n| {
            let tenant = tenants[usize::try_from(n).expect("small") % tenants.len()];
            let event = EventEnvelope::new(
                Topic::AuditEvents,
                Some(tenant),
                None,
                json!({"action": "test.counted", "n": n}),
            )
            .expect("event");
            (
                tenant.to_string(),
                serde_json::to_vec(&event).expect("json"),
            )
        })
        .collect();
    let messages: Vec<(&str, &[u8])> = messages
        .iter()
        .map(|(k, p)| (k.as_str(), p.as_slice()))
        .collect();
    kafka
        .produce_all("audit.events", &messages)
        .expect("produce");
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("main database");

    // One tenant has a webhook endpoint: each of its events must get exactly one
    // delivery (one webhook-id), whatever the kill.
    {
        use main_db::schema::webhook_endpoints;
        diesel::insert_into(webhook_endpoints::table)
            .values((
                webhook_endpoints::id.eq(uuid::Uuid::new_v4()),
                webhook_endpoints::tenant_id.eq(tenants[0].into_uuid()),
                webhook_endpoints::url.eq("http://127.0.0.1:9/hook"),
                webhook_endpoints::event_types.eq(vec!["audit.events".to_owned()]),
                webhook_endpoints::secret.eq("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ))
            .execute(&mut conn)
            .await
            .expect("endpoint");
    }
    let first = spawn_worker(&ctx, kafka);
    let deadline = Instant::now() + Duration::from_secs(60);
    let at_kill = loop {
        let (rows, _, _) = counts(&mut conn).await;
        if rows > 0 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "the first worker handled nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    drop(first); // SIGKILL
    let (handled, _, _) = counts(&mut conn).await;
    assert!(
        handled < EVENTS,
        "killed before the end ({handled} of {EVENTS})"
    );
    assert!(
        committed(kafka) < handled,
        "work handled ({handled}, {at_kill} when the kill was sent) is beyond the committed offsets: it will be redelivered"
    );

    let _second = spawn_worker(&ctx, kafka);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (rows, _, _) = counts(&mut conn).await;
        if rows >= EVENTS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {rows} of {EVENTS} audited after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every event is applied; a redelivery from now on can add nothing (unique ids).
    assert_eq!(
        counts(&mut conn).await,
        (EVENTS, EVENTS, EVENTS),
        "audit rows, distinct events and processed ids: each exactly once"
    );
    let for_tenant = EVENTS / i64::try_from(tenants.len()).expect("small");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (deliveries, distinct) = webhook_counts(&mut conn).await;
        if deliveries >= for_tenant {
            assert_eq!(
                (deliveries, distinct),
                (for_tenant, for_tenant),
                "one delivery, one webhook-id, per event of the subscribed tenant"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {deliveries} of {for_tenant} webhook deliveries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
