//! The consumer loop every event consumer runs.
//!
//! - Messages are handled in batches (what has arrived, up to `max_batch`), in the order
//!   they arrived, so each partition's (each tenant's) order holds.
//! - The handler applies a batch's effects in one transaction together with the
//!   processed event ids ([`claim`]), so a redelivered event has no second effect.
//! - Offsets are stored only once a message is handled (or dead-lettered) and committed
//!   by librdkafka in the background, and synchronously at shutdown: a crash redelivers
//!   at most the unfinished batch, which the processed ids make harmless.
//! - A failing batch is retried with exponential backoff; then its events are retried
//!   one by one, and the ones that still fail go to `<topic>.dlq` with the reason, so
//!   one poison message does not stop its partition. A message that is not an event
//!   envelope goes to the dead-letter topic at once.
//! - Shutdown finishes the batch in hand, commits, and returns; the commit and leaving
//!   the group wait at most `send_timeout`, on a thread of their own (`closing`), so a
//!   broker outage cannot hold a stopping service.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use diesel::upsert::on_constraint;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use tokio::sync::watch;
use uuid::Uuid;

use crate::closing::ClosedOffExecutor;
use crate::{EventEnvelope, Topic};

diesel::table! {
    /// Event ids a consumer has applied (main database, owned by the event-worker).
    processed_events (consumer, event_id) {
        consumer -> Text,
        event_id -> Uuid,
        processed_at -> Timestamptz,
    }
}

/// Records `ids` as processed by `consumer`, inside the caller's transaction, and
/// returns those that were not processed before: apply effects only for them.
pub async fn claim(
    tx: &mut AsyncPgConnection,
    consumer: &str,
    ids: &[Uuid],
) -> QueryResult<HashSet<Uuid>> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<_> = ids
        .iter()
        .map(|id| {
            (
                processed_events::consumer.eq(consumer),
                processed_events::event_id.eq(*id),
            )
        })
        .collect();
    let fresh: Vec<Uuid> = diesel::insert_into(processed_events::table)
        .values(&rows)
        .on_conflict(on_constraint("processed_events_pkey"))
        .do_nothing()
        .returning(processed_events::event_id)
        .get_results(tx)
        .await?;
    Ok(fresh.into_iter().collect())
}

/// Why a handler could not apply events; decides what the loop does next.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A dependency did not answer (database down, pool exhausted): nothing can make
    /// progress, so the loop waits and retries for as long as it takes, holding its
    /// place in the partitions.
    #[error("{0}")]
    Unavailable(String),
    /// The events failed for another reason: retried with backoff `max_attempts`
    /// times, then dead-lettered.
    #[error("{0}")]
    Failed(String),
    /// The event can never be applied (bad data): dead-lettered at once.
    #[error("{0}")]
    Invalid(String),
}

/// Applies events. Called with a whole batch, and with single events when a batch
/// fails; either all of a call's effects happen or none (one transaction).
pub trait Handler: Send + Sync + 'static {
    /// Names the consumer in logs and dead-letter headers.
    fn name(&self) -> &str;
    fn handle<'a>(&'a self, events: &'a [EventEnvelope])
        -> BoxFuture<'a, Result<(), HandlerError>>;
}

/// How a consumer reaches Kafka and paces its retries.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub connection: crate::Connection,
    /// The consumer group: replicas of one consumer share it and split the partitions.
    pub group_id: String,
    pub topics: Vec<Topic>,
    /// At most this many messages per batch.
    pub max_batch: usize,
    /// Attempts of an event that fails with [`HandlerError::Failed`] before it is
    /// dead-lettered.
    pub max_attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Acknowledgement timeout of a dead-letter message, and how long shutdown waits
    /// for the final commit and for leaving the group.
    pub send_timeout: Duration,
    /// How often handled offsets are committed (and at shutdown); a crash redelivers
    /// at most this much work, which the processed ids make harmless.
    pub commit_interval: Duration,
    /// A member silent this long leaves the group and its partitions move to the
    /// others (`session.timeout.ms`): how long a crashed worker's partitions wait.
    pub session_timeout: Duration,
    /// How long a fetch that finds nothing waits at the broker (`fetch.wait.max.ms`).
    /// Kafka answers as soon as a message arrives, so this adds no latency there; it
    /// paces idle consumers. Brokers that do not answer early add to an event's
    /// latency: tansu re-reads its storage after about half of the wait (so up to
    /// about half of it), librdkafka's mock cluster all of it. At 50 ms tansu spent more
    /// than a core on the idle event-worker's fetches.
    pub fetch_wait: Duration,
}

impl ConsumerSettings {
    pub fn new(
        connection: impl Into<crate::Connection>,
        group_id: impl Into<String>,
        topics: Vec<Topic>,
    ) -> Self {
        Self {
            connection: connection.into(),
            group_id: group_id.into(),
            topics,
            max_batch: 500,
            max_attempts: 5,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            commit_interval: Duration::from_secs(1),
            session_timeout: Duration::from_secs(45),
            fetch_wait: Duration::from_millis(500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Stops a running consumer loop: it finishes its batch, commits and returns.
#[derive(Clone)]
pub struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> Self {
        Self(watch::channel(false).0)
    }

    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Watches for the trigger (for loops other than the consumer's).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

/// The consumer loop; returns after `shutdown` is triggered.
pub async fn run<H: Handler>(
    settings: ConsumerSettings,
    handler: H,
    shutdown: Shutdown,
) -> Result<(), ConsumerError> {
    // Closed on a thread of its own, also when this future is dropped (`closing`).
    let consumer: ClosedOffExecutor<StreamConsumer> = ClosedOffExecutor::new(
        settings
            .connection
            .client()
            .set("group.id", &settings.group_id)
            .set(
                "client.id",
                format!("{}-{}", settings.group_id, handler.name()),
            )
            .set("enable.auto.commit", "true")
            // Only offsets stored after handling are committed.
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.commit.interval.ms",
                settings.commit_interval.as_millis().max(1).to_string(),
            )
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                settings.session_timeout.as_millis().max(1).to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (settings.session_timeout.as_millis() / 3)
                    .clamp(1, 3000)
                    .to_string(),
            )
            .set("reconnect.backoff.max.ms", "2000")
            .set(
                "fetch.wait.max.ms",
                settings.fetch_wait.as_millis().max(1).to_string(),
            )
            .create()?,
    );
    let topics: Vec<&str> = settings.topics.iter().map(|t| t.as_str()).collect();
    consumer.subscribe(&topics)?;
    let dead_letters: ClosedOffExecutor<FutureProducer> = ClosedOffExecutor::new(
        settings
            .connection
            .producer()
            .set("client.id", format!("{}-dlq", settings.group_id))
            .set(
                "message.timeout.ms",
                settings.send_timeout.as_millis().max(1).to_string(),
            )
            .create()?,
    );
    let mut stop = shutdown.subscribe();
    tracing::info!(consumer = handler.name(), group = %settings.group_id, ?topics, "consumer started");
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            message = consumer.recv() => message,
        };
        let first = match first {
            Ok(message) => message.detach(),
            Err(e) => {
                tracing::warn!(consumer = handler.name(), error = %e, "Kafka receive failed");
                tokio::time::sleep(settings.min_backoff).await;
                continue;
            }
        };
        let mut batch = vec![first];
        // Whatever else has already arrived joins the batch.
        while batch.len() < settings.max_batch {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(message)) => batch.push(message.detach()),
                _ => break,
            }
        }
        let worker = Worker {
            settings: &settings,
            handler: &handler,
            dead_letters: &dead_letters,
            stop: stop.clone(),
        };
        if worker.process(&batch).await.is_err() {
            tracing::warn!(
                consumer = handler.name(),
                events = batch.len(),
                "stopping during an outage: the batch will be redelivered"
            );
            break;
        }
        for message in &batch {
            if let Err(e) =
                consumer.store_offset(message.topic(), message.partition(), message.offset())
            {
                // The partition was revoked meanwhile: its new owner redelivers.
                tracing::debug!(error = %e, "offset not stored");
            }
        }
    }
    // The final commit and leaving the group wait for the coordinator: bounded, off
    // the executor. Past the bound the service stops anyway; the partitions move after
    // the session timeout and the uncommitted batch is redelivered (processed ids make
    // that harmless).
    let name = handler.name().to_owned();
    let closed = consumer
        .close_within(settings.send_timeout, move |consumer| {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::warn!(consumer = %name, error = %e, "final offset commit failed");
            }
        })
        .await;
    if !closed {
        tracing::warn!(
            consumer = handler.name(),
            timeout_ms = settings.send_timeout.as_millis() as u64,
            "the consumer did not commit and leave its group in time; stopping anyway"
        );
    }
    tracing::info!(consumer = handler.name(), "consumer stopped");
    Ok(())
}

struct Worker<'a, H> {
    settings: &'a ConsumerSettings,
    handler: &'a H,
    dead_letters: &'a FutureProducer,
    stop: watch::Receiver<bool>,
}

/// A batch given up because the loop is stopping while a dependency is down.
struct Interrupted;

impl<H: Handler> Worker<'_, H> {
    /// Handles a batch: every message applied or dead-lettered, unless interrupted by
    /// shutdown during an outage (then its offsets are not stored: redelivered later).
    async fn process(&self, batch: &[OwnedMessage]) -> Result<(), Interrupted> {
        let mut events = Vec::with_capacity(batch.len());
        let mut sources = Vec::with_capacity(batch.len());
        for message in batch {
            match parse(message) {
                Ok(event) => {
                    events.push(event);
                    sources.push(message);
                }
                Err(reason) => self.dead_letter(message, &reason, 0).await?,
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        if self.attempt(&events, 1).await?.is_ok() {
            crate::metrics::HANDLED
                .with_label_values(&[self.handler.name()])
                .inc_by(events.len() as u64);
            return Ok(());
        }
        // Some event of the batch fails: each alone, so the others go through.
        for (event, message) in events.iter().zip(sources) {
            match self
                .attempt(std::slice::from_ref(event), self.settings.max_attempts)
                .await?
            {
                Ok(()) => crate::metrics::HANDLED
                    .with_label_values(&[self.handler.name()])
                    .inc(),
                Err(e) => {
                    self.dead_letter(message, &e.to_string(), self.settings.max_attempts)
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Tries `events` up to `attempts` times (forever while the handler reports its
    /// dependencies unavailable).
    async fn attempt(
        &self,
        events: &[EventEnvelope],
        attempts: u32,
    ) -> Result<Result<(), HandlerError>, Interrupted> {
        let mut backoff = self.settings.min_backoff;
        let mut attempt = 1;
        loop {
            let outcome = self.handler.handle(events).await;
            if outcome.is_err() {
                crate::metrics::FAILED
                    .with_label_values(&[self.handler.name()])
                    .inc();
            }
            let error = match outcome {
                Ok(()) => return Ok(Ok(())),
                Err(e @ HandlerError::Invalid(_)) => return Ok(Err(e)),
                Err(e @ HandlerError::Failed(_)) if attempt >= attempts => return Ok(Err(e)),
                Err(e) => e,
            };
            if matches!(error, HandlerError::Unavailable(_)) && *self.stop.borrow() {
                return Err(Interrupted);
            }
            tracing::warn!(consumer = self.handler.name(), events = events.len(), attempt,
                error = %error, "handling failed; retrying");
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(self.settings.max_backoff);
            attempt = attempt.saturating_add(1);
        }
    }

    /// Publishes `message` to its topic's dead-letter topic; keeps trying until Kafka
    /// takes it (the offset must not move past a message that went nowhere), or the
    /// loop stops.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        attempts: u32,
    ) -> Result<(), Interrupted> {
        let topic = format!("{}.dlq", message.topic());
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let attempts = attempts.to_string();
        let mut backoff = self.settings.min_backoff;
        tracing::error!(consumer = self.handler.name(), source = message.topic(),
            partition = message.partition(), offset = message.offset(), %reason, "event dead-lettered");
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dlq-reason",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "dlq-consumer",
                    value: Some(self.handler.name()),
                })
                .insert(Header {
                    key: "dlq-source-topic",
                    value: Some(message.topic()),
                })
                .insert(Header {
                    key: "dlq-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "dlq-source-offset",
                    value: Some(&offset),
                })
                .insert(Header {
                    key: "dlq-attempts",
                    value: Some(&attempts),
                });
            let mut record = FutureRecord::to(&topic).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            match self.dead_letters.send(record, Duration::ZERO).await {
                Ok(_) => {
                    crate::metrics::DEAD_LETTERED
                        .with_label_values(&[self.handler.name(), message.topic()])
                        .inc();
                    return Ok(());
                }
                Err((e, _)) => {
                    if *self.stop.borrow() {
                        return Err(Interrupted);
                    }
                    tracing::warn!(%topic, error = %e, "dead-letter publish failed; retrying");
                    tokio::time::sleep(jitter(backoff)).await;
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        }
    }
}

fn parse(message: &OwnedMessage) -> Result<EventEnvelope, String> {
    let payload = message.payload().ok_or("empty message")?;
    let event: EventEnvelope =
        serde_json::from_slice(payload).map_err(|e| format!("not an event envelope: {e}"))?;
    if event.event_type != message.topic() {
        return Err(format!(
            "event type {:?} published on topic {:?}",
            event.event_type,
            message.topic()
        ));
    }
    Ok(event)
}

/// `delay` ± 25 %, so replicas retrying together spread out.
fn jitter(delay: Duration) -> Duration {
    let nanos = u64::from(Uuid::new_v4().as_fields().0) % 1000;
    delay.mul_f64(0.75 + nanos as f64 / 2000.0)
}

/// Dead-letter headers of a message, for tests and tools.
pub fn dead_letter_reason(message: &impl Message) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == "dlq-reason")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
