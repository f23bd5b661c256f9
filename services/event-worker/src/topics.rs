//! `event-worker topics ensure`: creates every topic of the catalog and its `.dlq` with
//! the configured partitions, replication factor and retention, reports the ones that
//! drifted, and changes nothing that exists (`events::topics`). Run by the local run,
//! the tests, the compose migration service and the k8s migrate Job, before the
//! services start. It needs only the Kafka settings:
//! `KAFKA_BROKERS` (required), the security settings of `http_kit::kafka`,
//! `KAFKA_TOPIC_PARTITIONS` (6), `KAFKA_REPLICATION_FACTOR` (3 in production, else 1),
//! `KAFKA_RETENTION_HOURS` (168), `KAFKA_TIMEOUT_MS` (10000).

use std::time::Duration;

use events::{TopicPlan, TopicState, Topics};
use http_kit::config::Environment;
use http_kit::kafka::KafkaSecurity;
use http_kit::ConfigReader;

/// The settings of `topics ensure`.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    pub brokers: String,
    pub security: KafkaSecurity,
    pub plan: TopicPlan,
    pub timeout: Duration,
}

impl TopicSettings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let environment: Environment = r.optional("ENVIRONMENT", Environment::Development);
        let brokers: String = r.required("KAFKA_BROKERS");
        let security = KafkaSecurity::read(r, environment, true);
        let partitions: i32 = r.optional_in("KAFKA_TOPIC_PARTITIONS", 6, 1..=1000, "");
        let default_replication = if environment == Environment::Production {
            3
        } else {
            1
        };
        let replication_factor: i32 =
            r.optional_in("KAFKA_REPLICATION_FACTOR", default_replication, 1..=16, "");
        let retention_hours: u64 =
            r.optional_in("KAFKA_RETENTION_HOURS", 168, 1..=87_600, " (ten years)");
        let timeout_ms: u64 = r.optional_positive("KAFKA_TIMEOUT_MS", 10_000, "");
        Self {
            brokers,
            security,
            plan: TopicPlan {
                partitions,
                replication_factor,
                retention: Some(Duration::from_secs(retention_hours * 3600)),
            },
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    pub fn connection(&self) -> events::Connection {
        events::Connection::new(self.brokers.clone())
            .with_security(self.security.client_properties())
    }
}

/// What `ensure` did, counted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnsureSummary {
    pub created: usize,
    pub present: usize,
    pub drifted: usize,
}

/// Ensures the topics and writes one line per topic, then a summary, to `line`.
pub async fn ensure(
    settings: &TopicSettings,
    mut line: impl FnMut(&str),
) -> anyhow::Result<EnsureSummary> {
    let topics = Topics::new(&settings.connection(), settings.timeout)?;
    let report = topics.ensure(&settings.plan).await?;
    let mut summary = EnsureSummary::default();
    let plan = &settings.plan;
    for (name, state) in &report {
        match state {
            TopicState::Created => {
                summary.created += 1;
                line(&format!(
                    "created  {name} (partitions {}, replication factor {})",
                    plan.partitions, plan.replication_factor
                ));
            }
            TopicState::Present {
                partitions,
                replication_factor,
            } => {
                summary.present += 1;
                line(&format!(
                    "present  {name} (partitions {partitions}, replication factor {replication_factor})"
                ));
            }
            TopicState::Drift {
                partitions,
                replication_factor,
            } => {
                summary.drifted += 1;
                tracing::warn!(topic = %name, partitions, replication_factor, "topic drifted from its settings");
                line(&format!(
                    "DRIFT    {name}: partitions {partitions} (configured {}), replication factor \
                     {replication_factor} (configured {}); left as it is",
                    plan.partitions, plan.replication_factor
                ));
            }
        }
    }
    line(&format!(
        "{} topics: {} created, {} present, {} drifted{}",
        report.len(),
        summary.created,
        summary.present,
        summary.drifted,
        if summary.drifted > 0 {
            " (adding partitions moves tenants to other partitions: see docs/DESIGN-NOTES.md \
             \"Kafka on tansu\" before changing them)"
        } else {
            ""
        }
    ));
    Ok(summary)
}
