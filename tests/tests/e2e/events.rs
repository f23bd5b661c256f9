//! Events from the producing services to Kafka (a tansu broker of the test's own, its
//! topics made by `event-worker topics ensure`'s code): published promptly after the
//! commit, keyed by tenant; left in the outbox while Kafka is away (the broker killed)
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

/// Partitions of each topic in the tests: more than one, so ordering per key matters.
pub(crate) const PARTITIONS: i32 = 3;

/// A tansu broker with the catalog's topics, made as `event-worker topics ensure`
/// makes them. It lives until the test process ends (nextest runs one test per
/// process): consumers running in the test's services leave their group when the
/// runtime drops them, which would wait out the session timeout (45 s) on a broker
/// already gone.
pub(crate) async fn kafka() -> &'static TestKafka {
    let kafka = TestKafka::tansu().expect("a tansu broker");
    let topics = events::Topics::new(
        &events::Connection::new(kafka.brokers()),
        Duration::from_secs(10),
    )
    .expect("an admin client");
    let report = topics
        .ensure(&events::TopicPlan {
            partitions: PARTITIONS,
            replication_factor: 1,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
        })
        .await
        .expect("the catalog's topics");
    assert!(
        report
            .iter()
            .all(|(_, state)| *state == events::TopicState::Created),
        "{report:?}"
    );
    Box::leak(Box::new(kafka))
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

/// The record is valid against its type's published JSON Schema.
fn assert_schema(record: &KafkaRecord) {
    let topic = Topic::from_name(&record.topic).expect("a catalogued topic");
    let schema: serde_json::Value =
        serde_json::from_str(events::schema::schema(topic)).expect("schema");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema");
    let event = record.json();
    let errors: Vec<String> = validator
        .iter_errors(&event)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{} does not match its schema: {errors:?}\n{event}",
        record.topic
    );
}

/// A service's Prometheus text (`url`: its internal listener's `/metrics`).
async fn metrics_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one series (name and labels exactly as exported) of Prometheus text.
fn metric(text: &str, series: &str) -> Option<i64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Waits until the outbox of the database at `url` has no unpublished row.
async fn wait_all_published(url: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pending: i64 = outbox::table
            .filter(outbox::published_at.is_null())
            .count()
            .get_result(&mut conn)
            .await
            .expect("count");
        if pending == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pending} outbox rows still unpublished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_one_each(records: &[KafkaRecord], tenant: &str) {
    for record in records {
        assert_schema(record);
    }
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
    let kafka = kafka().await;
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

    // The other event types, as the services publish them, match their schemas too.
    let (admin, _) = docs.auth.login("events@example.com").await;
    let (member, _) = docs.auth.session("member@example.com").await;
    docs.add_member(&admin, &tenant, &member, "user").await;
    let document = uploaded.data["document_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deleted = docs
        .auth
        .client
        .delete(format!(
            "{}/api/tenants/{tenant}/documents/{document}",
            docs.documents
        ))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete document");
    assert_eq!(deleted.status(), StatusCode::OK);
    let purged = docs
        .auth
        .client
        .delete(format!("{}/api/tenants/{tenant}?purge=true", docs.tenant))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete tenant");
    assert_eq!(purged.status(), StatusCode::OK);
    let more = ["membership.changed", "document.deleted", "tenant.deleted"];
    // Read from the topics' beginning until each type is there: membership.changed
    // holds the tenant creation's too, so the first three records need not cover all
    // three types (it failed once that way under the whole suite's load).
    let mut records = Vec::new();
    for count in 3..=8 {
        records = kafka
            .read(&more, count, Duration::from_secs(20))
            .await
            .expect("the other events");
        if more.iter().all(|t| !of_type(&records, t).is_empty()) {
            break;
        }
    }
    for record in &records {
        assert_schema(record);
    }
    let deleted = envelope(of_type(&records, "tenant.deleted")[0]);
    assert_eq!(deleted.data["hard_delete"], true);
}

#[tokio::test]
async fn events_committed_while_kafka_is_down_arrive_once_when_it_returns() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
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
    // Auth's metrics show the backlog (the main outbox holds auth's and the tenant
    // service's events), then none once Kafka is back.
    let backlog = |at_least: i64| {
        let metrics = format!("{}/metrics", testkit::internal_url(&docs.auth.base));
        let client = docs.auth.client.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(40);
            loop {
                let text = metrics_text(&client, &metrics).await;
                let value = |series: &str| metric(&text, series);
                let rows = value("events_outbox_backlog{service=\"auth\"}");
                let age = value("events_outbox_oldest_age_seconds{service=\"auth\"}");
                let done = if at_least > 0 {
                    rows.is_some_and(|r| r >= at_least) && age.is_some_and(|a| a >= 0)
                } else {
                    rows == Some(0) && age == Some(0)
                };
                if done {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "backlog {rows:?}, age {age:?}, expected at least {at_least}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    backlog(2).await;
    kafka.set_up(true).expect("broker up");
    let records = kafka
        .read(&PRODUCED, 4, Duration::from_secs(40))
        .await
        .expect("every event after the outage");
    assert_one_each(&records, &tenant);
    // Once every outbox row is marked published, no relay sends one again: then each
    // topic holds its event once.
    let (token, _) = docs.auth.login("outage@example.com").await;
    let (_, mine) = docs.auth.get("/api/users/me/tenants", Some(&token)).await;
    let database = mine["data"][0]["database_name"]
        .as_str()
        .expect("database")
        .to_owned();
    for url in [ctx.main_url.clone(), ctx.url_of(&database)] {
        wait_all_published(&url).await;
    }
    backlog(0).await;
    for topic in PRODUCED {
        assert_eq!(kafka.count(topic).expect("count"), 1, "{topic} once");
    }
}

#[tokio::test]
async fn a_start_with_kafka_publishes_what_earlier_runs_left_in_the_outboxes() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
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

/// An event-worker consuming `kafka`, with the platform's auth and tenant services.
pub(crate) async fn start_worker(
    ctx: &TestContext,
    docs: &crate::documents::Docs,
    kafka: &TestKafka,
    extra: &[(&str, &str)],
) -> String {
    let mut env = vec![
        ("KAFKA_BROKERS", kafka.brokers()),
        ("TENANT_SERVICE_URL", docs.tenant.as_str()),
        ("AUTH_SERVICE_URL", docs.auth.base.as_str()),
    ];
    env.extend_from_slice(extra);
    let base = testkit::start_service::<event_worker::Service>(ctx, &env);
    let ready = base.clone();
    testkit::wait_until(Duration::from_secs(10), || async {
        reqwest::get(format!("{ready}/ready"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("event-worker ready");
    base
}

async fn audit_logs(
    docs: &crate::documents::Docs,
    worker: &str,
    token: &str,
    tenant: &str,
    query: &str,
) -> (StatusCode, serde_json::Value) {
    let response = docs
        .auth
        .client
        .get(format!("{worker}/api/tenants/{tenant}/audit-logs{query}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("audit-logs");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

/// Waits until the tenant's audit log holds `count` entries; returns them.
async fn wait_for_audit(
    docs: &crate::documents::Docs,
    worker: &str,
    token: &str,
    tenant: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = audit_logs(docs, worker, token, tenant, "?per_page=100").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let entries = body["data"]["audit_logs"]
            .as_array()
            .expect("entries")
            .clone();
        if entries.len() >= count {
            return entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count} audit entries: {body}",
            entries.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_audit_log_records_each_event_once_and_shows_it_to_tenant_admins_only() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    let docs = platform_with(&ctx, &[("KAFKA_BROKERS", kafka.brokers())], &[]).await;
    let worker = start_worker(&ctx, &docs, kafka, &[]).await;
    let (admin, _) = docs.auth.session("admin@example.com").await;
    let tenant = docs.tenant_of(&admin, "Audited").await;
    let (status, body) = docs
        .upload(&admin, &tenant, b"audited bytes".to_vec(), "a.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let document = body["data"]["id"].as_str().expect("id").to_owned();

    // tenant.created, document.uploaded, file.process (user.registered has no tenant).
    let entries = wait_for_audit(&docs, &worker, &admin, &tenant, 3).await;
    let mut types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        ["document.uploaded", "file.process", "tenant.created"],
        "{entries:?}"
    );
    let uploaded = entries
        .iter()
        .find(|e| e["type"] == "document.uploaded")
        .expect("uploaded");
    assert_eq!(uploaded["tenant_id"], tenant);
    assert_eq!(uploaded["resource_type"], "document");
    assert_eq!(uploaded["resource_id"], document);
    assert!(uploaded["actor_id"].is_string(), "{uploaded}");
    assert!(uploaded["request_id"].is_string(), "{uploaded}");
    assert_eq!(uploaded["details"]["filename"], "a.txt");

    // Filters and pagination.
    let (status, body) = audit_logs(&docs, &worker, &admin, &tenant, "?type=file.process").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["audit_logs"].as_array().expect("list").len(),
        1
    );
    assert_eq!(body["data"]["pagination"]["total"], 1);
    let (_, body) = audit_logs(&docs, &worker, &admin, &tenant, "?per_page=2&page=2").await;
    assert_eq!(
        body["data"]["audit_logs"].as_array().expect("list").len(),
        1
    );
    assert_eq!(body["data"]["pagination"]["pages"], 2);
    let (_, body) = audit_logs(
        &docs,
        &worker,
        &admin,
        &tenant,
        "?since=2999-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(body["data"]["pagination"]["total"], 0, "{body}");
    let (status, body) = audit_logs(&docs, &worker, &admin, &tenant, "?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["details"]["since"].is_array(), "{body}");
    let (status, body) = audit_logs(&docs, &worker, &admin, &tenant, "?type=a%20b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["details"]["type"].is_array(), "{body}");

    // A viewer of the tenant may not read it; an outsider does not see the tenant.
    let (viewer, _) = docs.auth.session("viewer@example.com").await;
    docs.add_member(&admin, &tenant, &viewer, "viewer").await;
    let (status, body) = audit_logs(&docs, &worker, &viewer, &tenant, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (outsider, _) = docs.auth.session("outsider@example.com").await;
    let (status, body) = audit_logs(&docs, &worker, &outsider, &tenant, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = audit_logs(&docs, &worker, "not-a-token", &tenant, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The membership change is recorded too, once.
    let entries = wait_for_audit(&docs, &worker, &admin, &tenant, 4).await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["type"] == "membership.changed")
            .count(),
        1,
        "{entries:?}"
    );
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_its_partition_goes_on() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    let docs = platform_with(&ctx, &[], &[]).await;
    let worker = start_worker(&ctx, &docs, kafka, &[("CONSUMER_MAX_ATTEMPTS", "2")]).await;
    let (admin, _) = docs.auth.session("admin@example.com").await;
    let tenant = docs.tenant_of(&admin, "Poisoned").await;
    let tenant_id: domain::TenantId = tenant.parse().expect("tenant id");
    // All on one key, so one partition, in this order: not JSON; an envelope the
    // database refuses (a NUL character); a good one.
    kafka
        .produce("audit.events", &tenant, b"{not json")
        .expect("produce");
    let refused = EventEnvelope::new(
        Topic::AuditEvents,
        Some(tenant_id),
        None,
        serde_json::json!({"action": "bad\u{0}action"}),
    )
    .expect("event");
    kafka
        .produce(
            "audit.events",
            &tenant,
            &serde_json::to_vec(&refused).expect("json"),
        )
        .expect("produce");
    let good = EventEnvelope::new(
        Topic::AuditEvents,
        Some(tenant_id),
        None,
        serde_json::json!({"action": "report.exported"}),
    )
    .expect("event");
    kafka
        .produce(
            "audit.events",
            &tenant,
            &serde_json::to_vec(&good).expect("json"),
        )
        .expect("produce");

    let entries = wait_for_audit(&docs, &worker, &admin, &tenant, 1).await;
    assert_eq!(entries.len(), 1, "only the good event: {entries:?}");
    assert_eq!(entries[0]["event_id"], good.id.to_string());
    assert_eq!(entries[0]["type"], "report.exported");

    // The audit log dead-letters both; the webhooks consumer (its own group) reads the
    // same topic and dead-letters the one that is no event at all.
    let all = kafka
        .read(&["audit.events.dlq"], 3, Duration::from_secs(20))
        .await
        .expect("three dead letters");
    let dead: Vec<_> = all
        .iter()
        .filter(|r| r.header("dlq-consumer") == Some("audit-log"))
        .cloned()
        .collect();
    assert_eq!(dead.len(), 2, "{all:?}");
    let by_webhooks: Vec<_> = all
        .iter()
        .filter(|r| r.header("dlq-consumer") == Some("webhooks"))
        .collect();
    assert_eq!(by_webhooks.len(), 1, "{all:?}");
    assert_eq!(by_webhooks[0].payload, b"{not json");
    assert_eq!(dead[0].payload, b"{not json", "{dead:?}");
    assert!(
        dead[0]
            .header("dlq-reason")
            .is_some_and(|r| r.contains("not an event envelope")),
        "{dead:?}"
    );
    assert_eq!(dead[0].header("dlq-source-topic"), Some("audit.events"));
    assert_eq!(dead[0].key.as_deref(), Some(tenant.as_str()));
    assert_eq!(envelope(&dead[1]).id, refused.id);
    assert_eq!(dead[1].header("dlq-attempts"), Some("2"));
    assert_eq!(dead[1].header("dlq-consumer"), Some("audit-log"));
}

#[tokio::test]
async fn purging_a_tenant_keeps_the_events_its_database_had_not_published() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    // The document service runs without Kafka: its events stay in the tenant outbox.
    let (auth, tenant_base) =
        crate::auth::start_with(&ctx, &[], &[("KAFKA_BROKERS", kafka.brokers())]);
    let s3 = testkit::TestS3::start().await.expect("s3");
    let documents = start_documents(&ctx, &auth, &tenant_base, &s3, &[]).await;
    let docs = crate::documents::Docs {
        auth,
        tenant: tenant_base,
        documents,
        s3,
    };
    let tenant = produce(&docs, "purge@example.com").await;
    let (admin, _) = docs.auth.login("purge@example.com").await;
    let purged = docs
        .auth
        .client
        .delete(format!("{}/api/tenants/{tenant}?purge=true", docs.tenant))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("purge");
    assert_eq!(purged.status(), StatusCode::OK);
    // The tenant service moved them to the main outbox before dropping the database.
    let records = kafka
        .read(
            &["document.uploaded", "file.process"],
            2,
            Duration::from_secs(20),
        )
        .await
        .expect("the purged database's events");
    for record in &records {
        assert_schema(record);
        assert_eq!(record.key.as_deref(), Some(tenant.as_str()));
    }
}

async fn document_status(
    docs: &crate::documents::Docs,
    token: &str,
    tenant: &str,
    id: &str,
) -> String {
    let body: serde_json::Value = docs
        .auth
        .client
        .get(format!(
            "{}/api/tenants/{tenant}/documents/{id}",
            docs.documents
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    body["data"]["processing_status"]
        .as_str()
        .unwrap_or_else(|| panic!("no processing_status: {body}"))
        .to_owned()
}

#[tokio::test]
async fn stored_files_are_checked_and_typed_and_a_purge_deletes_the_objects() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    let docs = platform_with(&ctx, &[("KAFKA_BROKERS", kafka.brokers())], &[]).await;
    let (admin, _) = docs.auth.session("files@example.com").await;
    let tenant = docs.tenant_of(&admin, "Checked").await;
    // A PNG named and declared as text, and a text file whose stored bytes are then
    // changed behind the service's back.
    let png = [
        &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a][..],
        &[7u8; 2000][..],
    ]
    .concat();
    let (status, first) = docs.upload(&admin, &tenant, png.clone(), "notes.txt").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, second) = docs
        .upload(&admin, &tenant, b"honest text".to_vec(), "b.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let first_id = first["data"]["id"].as_str().expect("id").to_owned();
    let second_id = second["data"]["id"].as_str().expect("id").to_owned();
    let key = second["data"]["file"]["s3_path"]
        .as_str()
        .or_else(|| second["data"]["s3_path"].as_str())
        .unwrap_or_else(|| panic!("no s3_path: {second}"))
        .to_owned();
    std::fs::write(docs.s3.object_path("documents", &key), b"tampered!!!").expect("tamper");
    assert_eq!(
        document_status(&docs, &admin, &tenant, &first_id).await,
        "pending"
    );

    // The worker starts now and processes both.
    let worker_env = [
        ("S3_ENDPOINT_URL", docs.s3.endpoint.as_str()),
        ("S3_ACCESS_KEY", docs.s3.access_key.as_str()),
        ("S3_SECRET_KEY", docs.s3.secret_key.as_str()),
        ("S3_BUCKET", "documents"),
    ];
    start_worker(&ctx, &docs, kafka, &worker_env).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let a = document_status(&docs, &admin, &tenant, &first_id).await;
        let b = document_status(&docs, &admin, &tenant, &second_id).await;
        if a != "pending" && b != "pending" {
            assert_eq!(a, "processed");
            assert_eq!(b, "mismatch", "the stored bytes changed");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {a} and {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, info) = docs.auth.get("/api/users/me/tenants", Some(&admin)).await;
    let database = info["data"][0]["database_name"]
        .as_str()
        .unwrap_or_else(|| panic!("no database name: {info}"))
        .to_owned();
    let mut tenant_db = AsyncPgConnection::establish(&ctx.url_of(&database))
        .await
        .expect("tenant database");
    let detected: Vec<Option<String>> = tenant_db_files::table
        .order(tenant_db_files::processing_status.desc())
        .select(tenant_db_files::detected_mime_type)
        .load(&mut tenant_db)
        .await
        .expect("files");
    assert_eq!(
        detected,
        [Some("image/png".to_owned()), Some("text/plain".to_owned())],
        "types come from the content (processed, then mismatch)"
    );
    drop(tenant_db);
    // A document of an already processed file is processed at once.
    let (status, again) = docs.upload(&admin, &tenant, png, "copy.bin").await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["data"]["processing_status"], "processed", "{again}");

    // Purging the tenant deletes its objects.
    let prefix = format!("tenants/{database}/");
    assert!(docs
        .s3
        .objects("documents")
        .iter()
        .any(|o| o.starts_with(&prefix)));
    let purged = docs
        .auth
        .client
        .delete(format!("{}/api/tenants/{tenant}?purge=true", docs.tenant))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("purge");
    assert_eq!(purged.status(), StatusCode::OK);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<String> = docs
            .s3
            .objects("documents")
            .into_iter()
            .filter(|o| o.starts_with(&prefix))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "objects left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

use tenant_db::schema::files as tenant_db_files;

#[tokio::test]
async fn creators_and_members_are_notified_by_email() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    let smtp = testkit::TestSmtp::start().await.expect("SMTP sink");
    let docs = platform_with(&ctx, &[("KAFKA_BROKERS", kafka.brokers())], &[]).await;
    start_worker(&ctx, &docs, kafka, &[("SMTP_URL", smtp.url.as_str())]).await;
    let (admin, _) = docs.auth.session("creator@example.com").await;
    let tenant = docs.tenant_of(&admin, "Mailed Inc").await;
    let (member, _) = docs.auth.session("member@example.com").await;
    docs.add_member(&admin, &tenant, &member, "user").await;

    // Besides the two verification emails of the registrations.
    let notices = || {
        smtp.mails()
            .into_iter()
            .filter(|m| m.header("Subject").as_deref() != Some("Verify your email address"))
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mails = loop {
        let mails = notices();
        if mails.len() >= 2 {
            break mails;
        }
        assert!(std::time::Instant::now() < deadline, "only {mails:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let to = |address: &str| {
        mails
            .iter()
            .find(|m| m.to == [address])
            .unwrap_or_else(|| panic!("no mail to {address}: {mails:?}"))
    };
    let created = to("creator@example.com");
    assert_eq!(
        created.header("Subject").as_deref(),
        Some("Your tenant Mailed Inc is ready")
    );
    assert!(created.data.contains("you created is ready"), "{created:?}");
    let added = to("member@example.com");
    assert_eq!(
        added.header("Subject").as_deref(),
        Some("You were added to Mailed Inc")
    );
    assert!(added.data.contains("with the role user"), "{added:?}");
    assert_eq!(added.from, "no-reply@localhost");
    // Each once: every notification row is marked sent (none will be sent again),
    // and the sink got one message per row.
    let mut main = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("main database");
    use main_db::schema::notifications;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let states: Vec<String> = notifications::table
            .select(notifications::status)
            .load(&mut main)
            .await
            .expect("notifications");
        if states.len() == 4 && states.iter().all(|s| s == "sent") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "notifications: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(notices().len(), 2, "{:?}", smtp.mails());
    assert_eq!(smtp.mails().len(), 4, "{:?}", smtp.mails());
}

/// An event the audit log cannot write (the database refuses it: an operator's trigger
/// standing for any fault that outlasts the retries) is dead-lettered; `dlq list` shows
/// it; once the fault is fixed `dlq replay` republishes it by its id and it is audited,
/// once; replaying it again changes nothing (consumers skip it by its id); each replay
/// is audited in the event's tenant; `dlq purge` deletes it.
#[tokio::test]
async fn a_dead_letter_is_listed_replayed_once_fixed_and_purged() {
    use event_worker::dlq;
    use main_db::schema::{audit_logs, processed_events};
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    let docs = platform_with(&ctx, &[], &[]).await;
    let worker = start_worker(
        &ctx,
        &docs,
        kafka,
        &[
            ("CONSUMER_MAX_ATTEMPTS", "2"),
            ("CONSUMER_LAG_SAMPLE_SECS", "1"),
        ],
    )
    .await;
    let mut main = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("main database");
    diesel::sql_query(
        "CREATE FUNCTION refuse_exports() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'audit storage is read-only for maintenance'; END $$",
    )
    .execute(&mut main)
    .await
    .expect("function");
    diesel::sql_query(
        "CREATE TRIGGER refuse_exports BEFORE INSERT ON audit_logs FOR EACH ROW \
         WHEN (NEW.action = 'report.exported') EXECUTE FUNCTION refuse_exports()",
    )
    .execute(&mut main)
    .await
    .expect("trigger");
    let tenant = domain::TenantId::new();
    let event = EventEnvelope::new(
        Topic::AuditEvents,
        Some(tenant),
        None,
        serde_json::json!({"action": "report.exported"}),
    )
    .expect("event");
    kafka
        .produce(
            "audit.events",
            &tenant.to_string(),
            &serde_json::to_vec(&event).expect("json"),
        )
        .expect("produce");
    let dead = kafka
        .read(&["audit.events.dlq"], 1, Duration::from_secs(30))
        .await
        .expect("the event dead-lettered");
    assert_eq!(
        dead[0].header("dlq-consumer"),
        Some("audit-log"),
        "{dead:?}"
    );
    // The worker's metrics count it, and its lag drains to nothing.
    let metrics = format!("{}/metrics", testkit::internal_url(&worker));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = metrics_text(&docs.auth.client, &metrics).await;
        let value = |series: &str| metric(&text, series);
        let lag: i64 = (0..PARTITIONS)
            .map(|p| {
                value(&format!(
                    "kafka_consumer_lag{{group=\"event-worker.audit-log\",partition=\"{p}\",topic=\"audit.events\"}}"
                ))
                .unwrap_or(-1)
            })
            .sum();
        let dead_lettered =
            value("events_dead_lettered_total{consumer=\"audit-log\",topic=\"audit.events\"}");
        let failed = value("events_failed_total{consumer=\"audit-log\"}");
        if lag == 0 && dead_lettered == Some(1) && failed.is_some_and(|f| f >= 2) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "lag {lag}, dead-lettered {dead_lettered:?}, failed {failed:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let connection = events::Connection::new(kafka.brokers());
    let read = |only: Option<dlq::Position>| {
        let connection = connection.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let topics = match &only {
                    Some(p) => vec![p.topic.clone()],
                    None => dlq::dlq_topics(None).expect("every topic"),
                };
                dlq::read(&connection, &topics, only.as_ref(), Duration::from_secs(10))
            })
            .await
            .expect("join")
            .expect("read the dead letters")
        }
    };
    let letters = read(None).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.event().expect("an event").id, event.id);
    assert_eq!(letter.position.topic, "audit.events.dlq");
    let line = letter.line();
    assert!(
        line.starts_with(&format!("{}  ", letter.position)),
        "{line}"
    );
    assert!(line.contains("consumer audit-log  attempts 2"), "{line}");
    assert!(
        line.contains(&format!("event {} tenant {tenant}", event.id)),
        "{line}"
    );
    assert!(line.contains("read-only for maintenance"), "{line}");
    let one = read(Some(letter.position.clone())).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].position, letter.position);

    // Fixed; replayed by its id.
    diesel::sql_query("DROP TRIGGER refuse_exports ON audit_logs")
        .execute(&mut main)
        .await
        .expect("fixed");
    let db = main_db::build_pool(
        &ctx.main_url,
        &main_db::PoolSettings {
            max_size: 1,
            timeout: Duration::from_secs(5),
        },
    )
    .expect("pool");
    let mut out = Vec::new();
    let summary = dlq::replay(&connection, &db, &one, Duration::from_secs(10), |l| {
        out.push(l.to_owned())
    })
    .await
    .expect("replay");
    assert_eq!(
        summary,
        dlq::ReplaySummary {
            replayed: 1,
            skipped: 0
        },
        "{out:?}"
    );
    assert_eq!(
        out[0],
        format!(
            "replayed {} to audit.events (event {})",
            letter.position, event.id
        )
    );
    let audited = audit_logs::table
        .filter(audit_logs::event_id.eq(event.id))
        .count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while audited.get_result::<i64>(&mut main).await.expect("count") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replayed event was not audited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Again: every consumer skips it by its id.
    dlq::replay(&connection, &db, &one, Duration::from_secs(10), |_| {})
        .await
        .expect("replay again");
    let marker = EventEnvelope::new(
        Topic::AuditEvents,
        Some(tenant),
        None,
        serde_json::json!({"action": "after.replays"}),
    )
    .expect("event");
    kafka
        .produce(
            "audit.events",
            &tenant.to_string(),
            &serde_json::to_vec(&marker).expect("json"),
        )
        .expect("produce");
    // Same key, same partition: once the marker is audited, both replays were read.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen: i64 = audit_logs::table
            .filter(audit_logs::event_id.eq(marker.id))
            .count()
            .get_result(&mut main)
            .await
            .expect("count");
        if seen == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the marker was not audited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        audited.get_result::<i64>(&mut main).await.expect("count"),
        1,
        "audited once"
    );
    let processed: i64 = processed_events::table
        .filter(processed_events::event_id.eq(event.id))
        .filter(processed_events::consumer.eq(event_worker::audit::CONSUMER))
        .count()
        .get_result(&mut main)
        .await
        .expect("count");
    assert_eq!(processed, 1);
    let replays: Vec<(Option<uuid::Uuid>, Option<String>)> = audit_logs::table
        .filter(audit_logs::action.eq("dlq.replayed"))
        .select((audit_logs::tenant_id, audit_logs::resource_id))
        .load(&mut main)
        .await
        .expect("replays");
    assert_eq!(
        replays,
        vec![(Some(tenant.into_uuid()), Some(event.id.to_string())); 2],
        "each replay audited in the event's tenant"
    );

    // Purged: a time before it keeps it; a time after it deletes it.
    let topics = dlq::dlq_topics(Some("audit.events")).expect("topic");
    let kept = dlq::purge(
        &connection,
        &topics,
        chrono::Utc::now() - chrono::Duration::hours(1),
        Duration::from_secs(10),
        |_| {},
    )
    .await
    .expect("purge nothing");
    assert_eq!(kept, 0);
    let purged = dlq::purge(
        &connection,
        &topics,
        chrono::Utc::now() + chrono::Duration::seconds(1),
        Duration::from_secs(10),
        |_| {},
    )
    .await
    .expect("purge");
    assert_eq!(purged, 1);
    assert!(read(None).await.is_empty(), "nothing left");
}

/// A `tenant.deleted` with `hard_delete` for a tenant the tenant service reports
/// active (a mistake, or forged by whoever can write to the topic) deletes nothing: the
/// purge consumer checks with the tenant service first and dead-letters the event.
#[tokio::test]
async fn a_purge_event_the_tenant_service_does_not_confirm_deletes_nothing() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    let docs = platform_with(&ctx, &[("KAFKA_BROKERS", kafka.brokers())], &[]).await;
    let (admin, _) = docs.auth.session("forged@example.com").await;
    let tenant = docs.tenant_of(&admin, "Still Here").await;
    let (status, body) = docs
        .upload(&admin, &tenant, b"keep me".to_vec(), "keep.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let objects = docs.s3.objects("documents");
    assert_eq!(objects.len(), 1, "{objects:?}");
    let worker_env = [
        ("S3_ENDPOINT_URL", docs.s3.endpoint.as_str()),
        ("S3_ACCESS_KEY", docs.s3.access_key.as_str()),
        ("S3_SECRET_KEY", docs.s3.secret_key.as_str()),
        ("S3_BUCKET", "documents"),
    ];
    start_worker(&ctx, &docs, kafka, &worker_env).await;
    let tenant_id: domain::TenantId = tenant.parse().expect("tenant id");
    let forged = EventEnvelope::new(
        Topic::TenantDeleted,
        Some(tenant_id),
        None,
        serde_json::json!({"tenant_id": tenant, "hard_delete": true}),
    )
    .expect("event");
    kafka
        .produce(
            "tenant.deleted",
            &tenant,
            &serde_json::to_vec(&forged).expect("json"),
        )
        .expect("produce");
    let dead = kafka
        .read(&["tenant.deleted.dlq"], 1, Duration::from_secs(30))
        .await
        .expect("the forged event dead-lettered");
    assert_eq!(
        dead[0].header("dlq-consumer"),
        Some("tenant-purge"),
        "{dead:?}"
    );
    assert!(
        dead[0]
            .header("dlq-reason")
            .is_some_and(|r| r.contains("reports active") && r.contains("objects are kept")),
        "{dead:?}"
    );
    assert_eq!(docs.s3.objects("documents"), objects, "nothing deleted");
}
