//! `event-worker topics ensure` on a real broker (tansu): creates the catalog's topics
//! and their dead-letter topics once, reports them present on a second run and drift
//! when the settings ask for more partitions than exist, changes nothing; refuses bad
//! settings by name. A service's `/ready` names a missing topic until they exist.

use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use testkit::{TestContext, TestKafka};

/// Runs `event-worker topics ensure` against `kafka` with `extra` settings: exit code
/// and output.
fn run(kafka: &TestKafka, extra: &[(&str, &str)]) -> (Option<i32>, String) {
    run_args(kafka, &["topics", "ensure"], extra)
}

/// Ensures the topics with `partitions` partitions; the command's output.
pub(crate) fn ensure(kafka: &TestKafka, partitions: i32) -> String {
    let (code, out) = run(
        kafka,
        &[("KAFKA_TOPIC_PARTITIONS", &partitions.to_string())],
    );
    assert_eq!(code, Some(0), "{out}");
    out
}

fn partitions_of(kafka: &TestKafka, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len())
}

#[tokio::test]
async fn topics_ensure_creates_the_catalog_once_and_reports_drift() {
    let kafka: &'static TestKafka =
        Box::leak(Box::new(TestKafka::tansu().expect("a tansu broker")));

    let first = ensure(kafka, 2);
    assert!(
        first.contains("20 topics: 20 created, 0 present, 0 drifted"),
        "{first}"
    );
    for topic in events::Topic::ALL {
        assert!(
            first.contains(&format!(
                "created  {topic} (partitions 2, replication factor 1)"
            )),
            "{first}"
        );
        assert!(
            first.contains(&format!("created  {}", topic.dlq())),
            "{first}"
        );
        assert_eq!(partitions_of(kafka, topic.as_str()), 2, "{topic}");
        assert_eq!(partitions_of(kafka, &topic.dlq()), 2, "{topic}.dlq");
    }

    let second = ensure(kafka, 2);
    assert!(
        second.contains("20 topics: 0 created, 20 present, 0 drifted"),
        "{second}"
    );
    assert!(
        second.contains("present  tenant.created (partitions 2, replication factor 1)"),
        "{second}"
    );

    // More partitions asked for than exist: reported, not applied (tenants' keys would
    // move to other partitions).
    let drift = ensure(kafka, 4);
    assert!(
        drift.contains("20 topics: 0 created, 0 present, 20 drifted"),
        "{drift}"
    );
    assert!(
        drift.contains("DRIFT    tenant.created: partitions 2 (configured 4)"),
        "{drift}"
    );
    assert_eq!(partitions_of(kafka, "tenant.created"), 2, "left as it is");

    // Fewer is fine: the topics can take more consumers than configured.
    let fewer = ensure(kafka, 1);
    assert!(
        fewer.contains("0 created, 20 present, 0 drifted"),
        "{fewer}"
    );

    // The dead-letter commands run on the same settings (their work is tested end to
    // end in tests/tests/e2e/events.rs).
    let (code, out) = run_args(kafka, &["dlq", "list"], &[]);
    assert_eq!((code, out.trim()), (Some(0), "0 dead letters"));
    let (code, out) = run_args(
        kafka,
        &[
            "dlq",
            "purge",
            "--before",
            "2026-01-01T00:00:00Z",
            "--topic",
            "file.process",
        ],
        &[],
    );
    assert_eq!((code, out.trim()), (Some(0), "0 dead letters purged"));
    let (code, out) = run_args(kafka, &["dlq", "list", "--topic", "files"], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("\"files\" is not a topic of the catalog"),
        "{out}"
    );
    let (code, out) = run_args(kafka, &["dlq", "replay", "--id", "files/0/1"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("is not a dead letter's id"), "{out}");
    let (code, out) = run_args(kafka, &["dlq", "replay"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--id"), "{out}");
}

fn run_args(kafka: &TestKafka, args: &[&str], extra: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut vars = vec![("KAFKA_BROKERS", kafka.brokers())];
    vars.extend_from_slice(extra);
    run_env(args, &vars)
}

/// Runs the event-worker binary with `args` and only `vars` in its environment: exit
/// code and output.
fn run_env(args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_event-worker"))
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run event-worker");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn topics_ensure_refuses_bad_settings_by_name() {
    let (code, out) = run_without_broker(&[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("KAFKA_BROKERS"), "{out}");
    for (name, value) in [
        ("KAFKA_TOPIC_PARTITIONS", "0"),
        ("KAFKA_REPLICATION_FACTOR", "many"),
        ("KAFKA_RETENTION_HOURS", "0"),
        ("KAFKA_SECURITY_PROTOCOL", "tls"),
    ] {
        let (code, out) = run_without_broker(&[("KAFKA_BROKERS", "127.0.0.1:9"), (name, value)]);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains(name), "{name}: {out}");
    }
    // Production: plaintext only when allowed explicitly.
    let (code, out) = run_without_broker(&[
        ("KAFKA_BROKERS", "127.0.0.1:9"),
        ("ENVIRONMENT", "production"),
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("KAFKA_SECURITY_PROTOCOL"), "{out}");
}

#[test]
fn topics_ensure_speaks_tls_to_a_broker_that_requires_it() {
    let kafka: &'static TestKafka = Box::leak(Box::new(
        TestKafka::tansu_tls().expect("a TLS tansu broker"),
    ));
    let ca = kafka
        .ssl_ca_file()
        .expect("its CA")
        .to_string_lossy()
        .into_owned();
    let tls = [
        ("KAFKA_SECURITY_PROTOCOL", "ssl"),
        ("KAFKA_SSL_CA_FILE", ca.as_str()),
        ("KAFKA_TIMEOUT_MS", "5000"),
    ];
    let (code, out) = run(kafka, &tls);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("20 created"), "{out}");
    // The topics are there, read over TLS by another client.
    assert_eq!(
        kafka.count(events::Topic::ALL[0].as_str()).expect("count"),
        0
    );

    // Plaintext to a TLS listener, or a certificate from a CA that is not trusted,
    // fails: nothing falls back to an unverified connection.
    let (code, out) = run(kafka, &[("KAFKA_TIMEOUT_MS", "3000")]);
    assert_ne!(code, Some(0), "plaintext: {out}");
    let other = TestKafka::tansu_tls().expect("another TLS broker");
    let foreign_ca = other
        .ssl_ca_file()
        .expect("CA")
        .to_string_lossy()
        .into_owned();
    let (code, out) = run(
        kafka,
        &[
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_FILE", foreign_ca.as_str()),
            ("KAFKA_TIMEOUT_MS", "3000"),
        ],
    );
    assert_ne!(code, Some(0), "untrusted CA: {out}");
}

fn run_without_broker(vars: &[(&str, &str)]) -> (Option<i32>, String) {
    run_env(&["topics", "ensure"], vars)
}

#[tokio::test]
async fn ready_names_missing_topics_until_they_are_ensured() {
    let ctx = TestContext::new().await;
    let kafka: &'static TestKafka =
        Box::leak(Box::new(TestKafka::tansu().expect("a tansu broker")));
    let base = testkit::start_service::<event_worker::Service>(
        &ctx,
        &[("KAFKA_BROKERS", kafka.brokers())],
    );
    let client = reqwest::Client::new();
    let ready = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("GET /ready");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("JSON");
    assert_eq!(body["details"]["kafka_topics"], "unavailable", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("kafka_topics")),
        "{body}"
    );

    // The command blocks: off the runtime, which also runs the service.
    tokio::task::spawn_blocking(move || ensure(kafka, 2))
        .await
        .expect("ensure");
    testkit::wait_until(Duration::from_secs(20), || async {
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("ready once the topics exist");

    // A broker that stops answering does not make the service unready: events wait
    // in the outbox and consumers reconnect.
    kafka.set_up(false).expect("broker down");
    let ready = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("GET /ready");
    let status = ready.status();
    let body: serde_json::Value = ready.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["kafka_topics"], "ok", "{body}");
    // The test's runtime now stops with the broker down: the service's consumers must
    // not hold it up (`events::closing`; this test once hung here in CI).
}
