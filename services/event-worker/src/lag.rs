//! Consumer lag: every `CONSUMER_LAG_SAMPLE_SECS` the event-worker reads, for each of
//! its consumer groups, the committed offset and the high watermark of every partition
//! it consumes and sets `kafka_consumer_lag{group,topic,partition}` (`events::metrics`)
//! to their difference, as a lag exporter would: it reads the broker's view, so every
//! replica reports the same figures (dashboards take the `max`). A partition the group
//! never committed counts from its low watermark (consumers start at the earliest).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use events::{ClosedOffExecutor, Connection, Shutdown, Topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// A consumer group and what it consumes.
pub struct Group {
    pub id: String,
    pub topics: Vec<Topic>,
    /// Closed off the executor: it has a group id, and closing one waits for the
    /// coordinator (`events::closing`).
    consumer: ClosedOffExecutor<BaseConsumer>,
}

impl Group {
    pub fn new(connection: &Connection, id: String, topics: Vec<Topic>) -> anyhow::Result<Self> {
        let consumer = ClosedOffExecutor::new(
            connection
                .client()
                .set("group.id", &id)
                .set("client.id", format!("{id}-lag"))
                .set("enable.auto.commit", "false")
                .create()?,
        );
        Ok(Self {
            id,
            topics,
            consumer,
        })
    }
}

/// One sample: (group, topic, partition) → lag. Blocking (librdkafka requests).
pub fn sample(
    groups: &[Group],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<(String, String, i32), i64>> {
    let mut lags = BTreeMap::new();
    // Watermarks are the same for every group: asked once per sample.
    let mut watermarks: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
    for group in groups {
        let mut wanted = TopicPartitionList::new();
        for topic in &group.topics {
            let metadata = group
                .consumer
                .fetch_metadata(Some(topic.as_str()), timeout)?;
            for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
                for p in t.partitions() {
                    wanted.add_partition(t.name(), p.id());
                }
            }
        }
        let committed = group.consumer.committed_offsets(wanted, timeout)?;
        for element in committed.elements() {
            let slot = (element.topic().to_owned(), element.partition());
            let (low, high) = match watermarks.get(&slot) {
                Some(marks) => *marks,
                None => {
                    let marks = group.consumer.fetch_watermarks(&slot.0, slot.1, timeout)?;
                    watermarks.insert(slot.clone(), marks);
                    marks
                }
            };
            let from = match element.offset() {
                Offset::Offset(n) => n.max(low),
                _ => low,
            };
            lags.insert((group.id.clone(), slot.0, slot.1), (high - from).max(0));
        }
    }
    Ok(lags)
}

/// Samples every `every` until `shutdown`.
pub async fn run(groups: Vec<Group>, every: Duration, timeout: Duration, shutdown: Shutdown) {
    let groups = Arc::new(groups);
    let mut stop = shutdown.subscribe();
    loop {
        let sampled = {
            let groups = groups.clone();
            tokio::task::spawn_blocking(move || sample(&groups, timeout)).await
        };
        match sampled {
            Ok(Ok(lags)) => {
                for ((group, topic, partition), lag) in lags {
                    events::metrics::CONSUMER_LAG
                        .with_label_values(&[&group, &topic, &partition.to_string()])
                        .set(lag);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "consumer lag not sampled"),
            Err(e) => tracing::warn!(error = %e, "consumer lag sampler panicked"),
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}
