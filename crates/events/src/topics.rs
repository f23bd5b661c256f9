//! Topic provisioning: every topic of the catalog and its `.dlq` companion, created
//! through Kafka's admin API with the configured partitions, replication factor and
//! retention (`event-worker topics ensure`), and the readiness check that names a
//! missing topic instead of letting consumers fail with `UnknownTopicOrPartition` at
//! runtime. A broker creates none of them by itself (tansu, or Kafka with
//! `auto.create.topics.enable=false`, the production norm).
//!
//! Existing topics are never changed: adding partitions would move tenants' keys to
//! other partitions and break per-tenant ordering, so fewer partitions than configured
//! is reported as drift for an operator to decide on (docs/DESIGN-NOTES.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{Connection, Topic};

/// Every topic name of the catalog, each followed by its dead-letter topic.
pub fn catalog() -> Vec<String> {
    Topic::ALL
        .into_iter()
        .flat_map(|topic| [topic.as_str().to_owned(), topic.dlq()])
        .collect()
}

/// How topics are created (`KAFKA_TOPIC_PARTITIONS`, `KAFKA_REPLICATION_FACTOR`,
/// `KAFKA_RETENTION_HOURS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicPlan {
    pub partitions: i32,
    pub replication_factor: i32,
    /// `retention.ms` of a new topic; `None` keeps the broker's default.
    pub retention: Option<Duration>,
}

/// What `ensure` found or did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicState {
    Created,
    /// Present as configured (or with more partitions or replicas).
    Present {
        partitions: i32,
        replication_factor: i32,
    },
    /// Present with fewer partitions or replicas than configured; left as it is.
    Drift {
        partitions: i32,
        replication_factor: i32,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka admin client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("the brokers did not answer within {0:?}: {1}")]
    Unreachable(Duration, String),
    #[error("creating {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("created topics are not visible after {0:?}: {1}")]
    NotVisible(Duration, String),
}

/// Partitions and replication factor of each topic the brokers report.
type Layout = BTreeMap<String, (i32, i32)>;

/// A long-lived admin client of a service: topic provisioning and the readiness check.
#[derive(Clone)]
pub struct Topics {
    client: Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
}

impl Topics {
    /// An admin client on `connection`; each request waits at most `timeout`.
    pub fn new(connection: &Connection, timeout: Duration) -> Result<Self, TopicError> {
        let client: AdminClient<DefaultClientContext> = connection
            .client()
            .set("client.id", "topics")
            .set("socket.timeout.ms", timeout.as_millis().max(10).to_string())
            .create()?;
        Ok(Self {
            client: Arc::new(client),
            timeout,
        })
    }

    /// Every topic the brokers know, with its partitions and replication factor.
    async fn layout(&self) -> Result<Layout, TopicError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        // librdkafka's metadata request blocks its caller.
        let metadata = tokio::task::spawn_blocking(move || {
            client
                .inner()
                .fetch_metadata(None, timeout)
                .map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .filter(|t| t.error().is_none())
                        .map(|t| {
                            let replicas = t
                                .partitions()
                                .iter()
                                .map(|p| p.replicas().len() as i32)
                                .min()
                                .unwrap_or(0);
                            (t.name().to_owned(), (t.partitions().len() as i32, replicas))
                        })
                        .collect::<Layout>()
                })
        })
        .await
        .map_err(|e| TopicError::Unreachable(timeout, e.to_string()))?;
        metadata.map_err(|e| TopicError::Unreachable(timeout, e.to_string()))
    }

    /// The catalog's topics the brokers do not have.
    pub async fn missing(&self) -> Result<Vec<String>, TopicError> {
        let layout = self.layout().await?;
        Ok(catalog()
            .into_iter()
            .filter(|name| !layout.contains_key(name))
            .collect())
    }

    /// Creates every missing topic of the catalog as `plan` says and reports each
    /// topic's state, in catalog order. Idempotent: a second run creates nothing, and a
    /// topic created concurrently by another run counts as present.
    pub async fn ensure(&self, plan: &TopicPlan) -> Result<Vec<(String, TopicState)>, TopicError> {
        let layout = self.layout().await?;
        let wanted = catalog();
        let missing: Vec<&String> = wanted.iter().filter(|n| !layout.contains_key(*n)).collect();
        let retention = plan.retention.map(|r| r.as_millis().to_string());
        let new_topics: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|name| {
                let topic = NewTopic::new(
                    name,
                    plan.partitions,
                    TopicReplication::Fixed(plan.replication_factor),
                );
                match &retention {
                    Some(ms) => topic.set("retention.ms", ms),
                    None => topic,
                }
            })
            .collect();
        let mut created = Vec::new();
        if !new_topics.is_empty() {
            let options = AdminOptions::new()
                .request_timeout(Some(self.timeout))
                .operation_timeout(Some(self.timeout));
            for result in self.client.create_topics(&new_topics, &options).await? {
                match result {
                    Ok(name) => created.push(name),
                    Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                    Err((topic, code)) => {
                        return Err(TopicError::Create {
                            topic,
                            reason: code.to_string(),
                        })
                    }
                }
            }
        }
        // Creation is asynchronous on a cluster: wait until every topic is visible, so
        // consumers started next find them.
        let deadline = tokio::time::Instant::now() + self.timeout.max(Duration::from_secs(10));
        let layout = loop {
            let layout = self.layout().await?;
            let absent: Vec<&String> = wanted.iter().filter(|n| !layout.contains_key(*n)).collect();
            if absent.is_empty() {
                break layout;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(TopicError::NotVisible(
                    self.timeout,
                    absent
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Ok(wanted
            .into_iter()
            .map(|name| {
                let (partitions, replication_factor) = layout.get(&name).copied().unwrap_or((0, 0));
                let state = if created.contains(&name) {
                    TopicState::Created
                } else if partitions < plan.partitions
                    || replication_factor < plan.replication_factor
                {
                    TopicState::Drift {
                        partitions,
                        replication_factor,
                    }
                } else {
                    TopicState::Present {
                        partitions,
                        replication_factor,
                    }
                };
                (name, state)
            })
            .collect())
    }

    /// The readiness check of a service with Kafka: fails naming the catalog's topics
    /// the brokers lack. A broker that does not answer does not fail it: events wait in
    /// the outbox and consumers reconnect, so an outage must not take every replica out
    /// of its load balancer.
    pub async fn readiness(&self) -> Result<(), String> {
        match self.missing().await {
            Ok(missing) if missing.is_empty() => Ok(()),
            Ok(missing) => Err(format!(
                "missing Kafka topics (run `event-worker topics ensure`): {}",
                missing.join(", ")
            )),
            Err(e) => {
                tracing::debug!(error = %e, "Kafka metadata unavailable; topics not checked");
                Ok(())
            }
        }
    }
}

/// The `kafka_topics` readiness probe of a service with a broker configured (`None`
/// without one). Metadata requests wait at most half of `ready_timeout`, so a broker
/// that does not answer never makes the whole check time out.
#[allow(clippy::type_complexity)]
pub fn probe(
    connection: Option<Connection>,
    ready_timeout: Duration,
) -> Result<
    Option<
        impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
            + Send
            + Sync
            + 'static,
    >,
    TopicError,
> {
    let Some(connection) = connection else {
        return Ok(None);
    };
    let topics = Topics::new(&connection, ready_timeout / 2)?;
    Ok(Some(move || {
        let topics = topics.clone();
        Box::pin(async move { topics.readiness().await })
            as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_names_every_topic_and_its_dead_letter_topic() {
        let names = catalog();
        assert_eq!(names.len(), Topic::ALL.len() * 2);
        for topic in Topic::ALL {
            assert!(names.contains(&topic.as_str().to_owned()));
            assert!(names.contains(&topic.dlq()));
        }
    }
}
