//! Events from the producing services to Kafka (librdkafka's mock cluster): published
//! promptly after the commit, keyed by tenant; left in the outbox while Kafka is away
//! or not configured, and published, once, when it is back or by a later start's sweep.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use events::outbox::outbox;
use events::{EventEnvelope, Topic};
use reqwest::StatusCode;
use testkit::{KafkaRecord, TestContext, TestKafka};

use crate::documents::{platform_with, start_documents};

const PRODUCED: [&str; 4] = [
    "user.registered",
    "tenant.created",
    "document.uploaded",
    "file.process",
];

fn kafka() -> TestKafka {
    let mut topics: Vec<String> = Vec::new();
    for topic in Topic::ALL {
        topics.push(topic.as_str().to_owned());
        topics.push(topic.dlq());
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    TestKafka::start(&names, 3).expect("mock Kafka")
}

fn envelope(record: &KafkaRecord) -> EventEnvelope {
    serde_json::from_slice(&record.payload).expect("an event envelope")
}

fn of_type<'a>(records: &'a [KafkaRecord], topic: &str) -> Vec<&'a KafkaRecord> {
    records.iter().filter(|r| r.topic == topic).collect()
}

/// Registers a user, creates a tenant and uploads one new file: one event of each of
/// PRODUCED. Returns the tenant id.
async fn produce(docs: &crate::documents::Docs, email: &str) -> String {
    let (token, _) = docs.auth.session(email).await;
    let tenant = docs.tenant_of(&token, "Events Inc").await;
    let (status, body) = docs
        .upload(&token, &tenant, b"an event of a file".to_vec(), "a.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    tenant
}

fn assert_one_each(records: &[KafkaRecord], tenant: &str) {
    for topic in PRODUCED {
        let found = of_type(records, topic);
        assert_eq!(found.len(), 1, "one {topic}: {records:?}");
        let event = envelope(found[0]);
        assert_eq!(event.event_type, topic);
        if topic == "user.registered" {
            // No tenant: keyed by the event id.
            assert_eq!(found[0].key.as_deref(), Some(event.id.to_string().as_str()));
        } else {
            assert_eq!(
                found[0].key.as_deref(),
                Some(tenant),
                "{topic} keyed by tenant"
            );
            assert_eq!(
                event.tenant_id.map(|t| t.to_string()).as_deref(),
                Some(tenant)
            );
        }
    }
}

#[tokio::test]
async fn committed_events_reach_kafka_keyed_by_tenant_without_waiting_for_a_sweep() {
    let ctx = TestContext::new().await;
    let kafka = kafka();
    // The only sweep runs at start, before any event: publication is by the nudge.
    let shared = [
        ("KAFKA_BROKERS", kafka.brokers()),
        ("OUTBOX_SWEEP_SECS", "3600"),
    ];
    let docs = platform_with(&ctx, &shared, &[]).await;
    let tenant = produce(&docs, "events@example.com").await;
    let records = kafka
        .read(&PRODUCED, 4, Duration::from_secs(20))
        .await
        .expect("the events");
    assert_one_each(&records, &tenant);
    let uploaded = envelope(of_type(&records, "document.uploaded")[0]);
    assert!(uploaded.request_id.is_some(), "the request id travels");
    assert!(uploaded.actor_id.is_some(), "the actor travels");
    assert_eq!(uploaded.data["deduplicated"], false);
}

#[tokio::test]
async fn events_committed_while_kafka_is_down_arrive_once_when_it_returns() {
    let ctx = TestContext::new().await;
    let kafka = kafka();
    let shared = [
        ("KAFKA_BROKERS", kafka.brokers()),
        ("KAFKA_TIMEOUT_MS", "1000"),
        ("OUTBOX_SWEEP_SECS", "3600"),
    ];
    let docs = platform_with(&ctx, &shared, &[]).await;
    kafka.set_up(false).expect("broker down");
    let tenant = produce(&docs, "outage@example.com").await;
    // The relays try, fail, record the attempt and keep the rows.
    let mut main = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("main database");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let failed: i64 = outbox::table
            .filter(outbox::published_at.is_null())
            .filter(outbox::attempts.gt(0))
            .count()
            .get_result(&mut main)
            .await
            .expect("count");
        if failed > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed attempt recorded on an unpublished row"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let published: i64 = outbox::table
        .filter(outbox::published_at.is_not_null())
        .count()
        .get_result(&mut main)
        .await
        .expect("count");
    assert_eq!(
        published, 0,
        "nothing is marked published while Kafka is down"
    );
    kafka.set_up(true).expect("broker up");
    let records = kafka
        .read(&PRODUCED, 4, Duration::from_secs(40))
        .await
        .expect("every event after the outage");
    assert_one_each(&records, &tenant);
    // And no duplicates trickle in later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for topic in PRODUCED {
        assert_eq!(kafka.count(topic).expect("count"), 1, "{topic} once");
    }
}

#[tokio::test]
async fn a_start_with_kafka_publishes_what_earlier_runs_left_in_the_outboxes() {
    let ctx = TestContext::new().await;
    let kafka = kafka();
    // First run: no Kafka configured; the events wait in the main and tenant outboxes.
    let docs = platform_with(&ctx, &[], &[]).await;
    let tenant = produce(&docs, "later@example.com").await;
    // A new document service with Kafka: its start-up sweep finds the tenant database
    // through the tenant service and publishes the document events.
    start_documents(
        &ctx,
        &docs.auth,
        &docs.tenant,
        &docs.s3,
        &[("KAFKA_BROKERS", kafka.brokers())],
    )
    .await;
    // And a tenant service with Kafka publishes the main database's events (auth's
    // and its own: the main outbox is one table).
    testkit::start_service::<tenant::Service>(
        &ctx,
        &[
            ("KAFKA_BROKERS", kafka.brokers()),
            ("AUTH_SERVICE_URL", docs.auth.base.as_str()),
        ],
    );
    let records = kafka
        .read(&PRODUCED, 4, Duration::from_secs(20))
        .await
        .expect("the left-over events");
    assert_one_each(&records, &tenant);
}
