//! The outbox relay: publishes the committed, unpublished rows of a database's `outbox`
//! to Kafka (idempotent producer, `acks=all`, key = the event's partition key, i.e. the
//! tenant id) and marks them published. Rows are taken in insertion order (`seq`) under
//! `FOR UPDATE SKIP LOCKED`, so several relays (replicas of a service) can drain the
//! same database without publishing a row twice; a row is marked only once Kafka has
//! acknowledged it, so a broker outage or a crash delays events and loses none (a crash
//! between the acknowledgement and the commit republishes the row: consumers are
//! idempotent by event id).

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use uuid::Uuid;

use crate::outbox::outbox;

/// How the relay reaches Kafka.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// The brokers and security properties (`KAFKA_BROKERS`, `KAFKA_SECURITY_*`).
    pub connection: crate::Connection,
    /// Names the producer in the broker's logs (`client.id`).
    pub client_id: String,
    /// How long a message may wait for the broker's acknowledgement before its
    /// delivery fails (`message.timeout.ms`); the row then stays for the next run.
    pub message_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("Kafka producer could not be created: {0}")]
    Config(#[from] rdkafka::error::KafkaError),
    #[error("outbox database: {0}")]
    Database(#[from] diesel::result::Error),
    /// Some events were not acknowledged; they stay in the outbox.
    #[error("{published} events published, then Kafka refused one: {reason}")]
    Delivery { published: usize, reason: String },
}

/// Publishes outbox rows to Kafka.
pub struct Relay {
    /// Replaced when librdkafka reports it unusable (a fatal error of the idempotent
    /// producer: it must be created anew).
    producer: std::sync::Mutex<FutureProducer>,
    settings: KafkaSettings,
    batch_size: i64,
    /// The producing service (`client.id`), the label of its outbox metrics.
    service: String,
}

#[derive(Queryable)]
struct PendingRow {
    id: Uuid,
    topic: String,
    partition_key: String,
    payload: serde_json::Value,
}

/// The unpublished rows of one outbox: how many, and when the oldest was written.
pub(crate) type Backlog = (i64, Option<chrono::DateTime<chrono::Utc>>);

impl Relay {
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    /// The unpublished rows of the outbox `conn` is on.
    pub(crate) async fn backlog(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> Result<Backlog, diesel::result::Error> {
        outbox::table
            .filter(outbox::published_at.is_null())
            .select((
                diesel::dsl::count_star(),
                diesel::dsl::min(outbox::created_at),
            ))
            .get_result(conn)
            .await
    }

    /// A relay with an idempotent producer that waits for every in-sync replica.
    pub fn new(settings: &KafkaSettings) -> Result<Self, RelayError> {
        let producer = Self::producer_for(settings)?;
        Ok(Self {
            producer: std::sync::Mutex::new(producer),
            settings: settings.clone(),
            batch_size: 500,
            service: settings.client_id.clone(),
        })
    }

    fn producer_for(settings: &KafkaSettings) -> Result<FutureProducer, RelayError> {
        let producer: FutureProducer = settings
            .connection
            .producer()
            .set("client.id", &settings.client_id)
            .set("linger.ms", "5")
            // Back on a returning broker within seconds (librdkafka's default is 10 s).
            .set("reconnect.backoff.max.ms", "2000")
            .set(
                "message.timeout.ms",
                settings.message_timeout.as_millis().max(1).to_string(),
            )
            .create()?;
        Ok(producer)
    }

    /// The producer, created anew if librdkafka reported a fatal error on it.
    fn producer(&self) -> Result<FutureProducer, RelayError> {
        let mut producer = self
            .producer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::error!(?code, %reason, "Kafka producer failed fatally; creating a new one");
            *producer = Self::producer_for(&self.settings)?;
        }
        Ok(producer.clone())
    }

    /// Publishes every unpublished row of the outbox `conn` is on, oldest first, in
    /// batches, and returns how many it published. It stops at the first row Kafka
    /// does not acknowledge (recording the attempt on that row): that row and those
    /// after it wait for the next run.
    pub async fn publish_pending(&self, conn: &mut AsyncPgConnection) -> Result<usize, RelayError> {
        let mut published = 0;
        let producer = self.producer()?;
        let producer = &producer;
        loop {
            let (sent, failure) = conn
                .transaction::<_, diesel::result::Error, _>(async |tx| {
                    let rows: Vec<PendingRow> = outbox::table
                        .select((
                            outbox::id,
                            outbox::topic,
                            outbox::partition_key,
                            outbox::payload,
                        ))
                        .filter(outbox::published_at.is_null())
                        .order(outbox::seq.asc())
                        .limit(self.batch_size)
                        .for_update()
                        .skip_locked()
                        .load(tx)
                        .await?;
                    if rows.is_empty() {
                        return Ok((0, None));
                    }
                    // Sent together; the idempotent producer keeps each key's order.
                    let deliveries = rows.iter().map(|row| {
                        let payload = row.payload.to_string();
                        async move {
                            producer
                                .send(
                                    FutureRecord::to(&row.topic)
                                        .key(&row.partition_key)
                                        .payload(&payload),
                                    Duration::ZERO,
                                )
                                .await
                                .map_err(|(e, _)| e.to_string())
                        }
                    });
                    let results = futures_util::future::join_all(deliveries).await;
                    // Rows are marked in order up to the first failure, so a later
                    // event of a key is never marked before an earlier one.
                    let mut done = Vec::new();
                    let mut failure = None;
                    for (row, result) in rows.iter().zip(results) {
                        match result {
                            Ok(_) => done.push(row.id),
                            Err(reason) => {
                                failure = Some((row.id, reason));
                                break;
                            }
                        }
                    }
                    diesel::update(outbox::table.filter(outbox::id.eq_any(&done)))
                        .set(outbox::published_at.eq(diesel::dsl::now))
                        .execute(tx)
                        .await?;
                    if let Some((id, reason)) = &failure {
                        diesel::update(outbox::table.find(id))
                            .set((
                                outbox::attempts.eq(outbox::attempts + 1),
                                outbox::last_error.eq(reason.chars().take(500).collect::<String>()),
                            ))
                            .execute(tx)
                            .await?;
                    }
                    Ok((done.len(), failure.map(|(_, reason)| reason)))
                })
                .await?;
            published += sent;
            if let Some(reason) = failure {
                return Err(RelayError::Delivery { published, reason });
            }
            if sent == 0 {
                return Ok(published);
            }
        }
    }
}
