//! Dead-letter operations (`event-worker dlq list|replay|purge`): the `.dlq` topics are
//! the record of what a consumer gave up on (the message as it was, with `dlq-reason`,
//! `dlq-consumer`, `dlq-source-*` and `dlq-attempts` headers; `events::consumer`).
//!
//! - `list` reads every dead letter (or one topic's) and prints its position
//!   (`<topic>.dlq/<partition>/<offset>`), when, by which consumer, why, and the event.
//! - `replay` republishes dead letters to their source topic as they were (same key,
//!   same event id) once the cause is fixed, and writes a `dlq.replayed` audit row for
//!   each. Every consumer group reads the replayed event again; those that had handled
//!   it skip it by its processed id, so only what failed takes effect, once.
//! - `purge` drops the dead letters older than a time: it moves each partition's
//!   floor (the committed offset of the group [`FLOOR_GROUP`], kept by the broker)
//!   past them, and `list` and `replay` start there; the broker deletes the records
//!   themselves with the topic's retention (`KAFKA_RETENTION_HOURS`). Not Kafka's
//!   DeleteRecords: tansu's SQLite engine does not implement it (its broker panics,
//!   docs/DESIGN-NOTES.md), and a floor works on every broker.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use events::{Connection, EventEnvelope, Topic};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use uuid::Uuid;

/// The consumer group whose committed offsets are the dead-letter topics' floors
/// (nothing below is listed or replayed); it never joins or consumes.
pub const FLOOR_GROUP: &str = "event-worker.dlq-floor";

fn floor_consumer(connection: &Connection) -> anyhow::Result<BaseConsumer> {
    Ok(connection
        .client()
        .set("group.id", FLOOR_GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?)
}

/// Where a dead letter is: `<dlq topic>/<partition>/<offset>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

impl FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wrong =
            || format!("{s:?} is not a dead letter's id (<topic>.dlq/<partition>/<offset>)");
        let mut parts = s.rsplitn(3, '/');
        let offset = parts
            .next()
            .and_then(|o| o.parse().ok())
            .ok_or_else(wrong)?;
        let partition = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(wrong)?;
        let topic = parts.next().ok_or_else(wrong)?.to_owned();
        if source_of(&topic).is_none() {
            return Err(wrong());
        }
        Ok(Self {
            topic,
            partition,
            offset,
        })
    }
}

/// The catalog topic whose dead-letter topic is `dlq`.
fn source_of(dlq: &str) -> Option<Topic> {
    dlq.strip_suffix(".dlq").and_then(Topic::from_name)
}

/// One dead letter as it is stored.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub position: Position,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// When it was dead-lettered (the record's timestamp).
    pub at: Option<DateTime<Utc>>,
    pub headers: BTreeMap<String, String>,
}

impl DeadLetter {
    pub fn source(&self) -> Option<Topic> {
        source_of(&self.position.topic)
    }

    /// The event, when the payload is one.
    pub fn event(&self) -> Option<EventEnvelope> {
        self.payload
            .as_deref()
            .and_then(|p| serde_json::from_slice(p).ok())
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("-", String::as_str)
    }

    /// One line of `dlq list`.
    pub fn line(&self) -> String {
        let at = self.at.map_or_else(
            || "-".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        let event = match self.event() {
            Some(e) => format!(
                "event {} tenant {}",
                e.id,
                e.tenant_id
                    .map_or_else(|| "-".to_owned(), |t| t.to_string())
            ),
            None => "not an event".to_owned(),
        };
        format!(
            "{}  {at}  consumer {}  attempts {}  {event}  reason: {}",
            self.position,
            self.header("dlq-consumer"),
            self.header("dlq-attempts"),
            self.header("dlq-reason"),
        )
    }
}

/// The dead-letter topics of `topic` (a catalog topic, with or without `.dlq`), or all.
pub fn dlq_topics(topic: Option<&str>) -> Result<Vec<String>, String> {
    match topic {
        None => Ok(Topic::ALL.iter().map(|t| t.dlq()).collect()),
        Some(name) => {
            let source = name.strip_suffix(".dlq").unwrap_or(name);
            Topic::from_name(source)
                .map(|t| vec![t.dlq()])
                .ok_or_else(|| format!("{name:?} is not a topic of the catalog"))
        }
    }
}

/// Reads the dead letters of `topics` (every record between the low and high
/// watermarks of each partition), oldest first per partition. Blocking: librdkafka's
/// consumer calls block their thread.
pub fn read(
    connection: &Connection,
    topics: &[String],
    only: Option<&Position>,
    timeout: Duration,
) -> anyhow::Result<Vec<DeadLetter>> {
    let consumer = floor_consumer(connection)?;
    let mut assignment = TopicPartitionList::new();
    // The offset each partition must reach.
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(
            !partitions.is_empty(),
            "topic {topic} does not exist (run `event-worker topics ensure`)"
        );
        let mut wanted = TopicPartitionList::new();
        for partition in &partitions {
            wanted.add_partition(topic, *partition);
        }
        let floors: BTreeMap<i32, i64> = consumer
            .committed_offsets(wanted, timeout)?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(n) => Some((e.partition(), n)),
                _ => None,
            })
            .collect();
        for partition in partitions {
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            let low = low.max(floors.get(&partition).copied().unwrap_or(0));
            let (start, end) = match only {
                Some(p) if p.topic == *topic && p.partition == partition => {
                    anyhow::ensure!(
                        (low..high).contains(&p.offset),
                        "{p} does not exist (the partition holds offsets {low} to {}, or none)",
                        high - 1
                    );
                    (p.offset, p.offset + 1)
                }
                Some(_) => continue,
                None => (low, high),
            };
            if end > start {
                assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
                ends.insert((topic.clone(), partition), end);
            }
        }
    }
    if let Some(p) = only {
        anyhow::ensure!(!ends.is_empty(), "{p} does not exist");
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment)?;
    let mut letters = Vec::new();
    let deadline = Instant::now() + timeout.max(Duration::from_secs(10));
    while !ends.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading the dead letters timed out; {} partitions unfinished",
            ends.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message?;
        let slot = (message.topic().to_owned(), message.partition());
        let Some(end) = ends.get(&slot).copied() else {
            continue;
        };
        if message.offset() >= end {
            ends.remove(&slot);
            continue;
        }
        letters.push(DeadLetter {
            position: Position {
                topic: slot.0.clone(),
                partition: slot.1,
                offset: message.offset(),
            },
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            at: message
                .timestamp()
                .to_millis()
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            headers: message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
        if message.offset() + 1 >= end {
            ends.remove(&slot);
        }
    }
    letters.sort_by(|a, b| a.position.cmp(&b.position));
    Ok(letters)
}

/// What `replay` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    pub replayed: usize,
    pub skipped: usize,
}

/// Republishes `letters` to their source topics and audits each replay in the main
/// database (`db`). A dead letter without a payload or of a topic outside the catalog
/// is skipped and reported.
pub async fn replay(
    connection: &Connection,
    db: &main_db::DbPool,
    letters: &[DeadLetter],
    timeout: Duration,
    mut line: impl FnMut(&str),
) -> anyhow::Result<ReplaySummary> {
    let producer: FutureProducer = connection
        .producer()
        .set("client.id", "event-worker-dlq-replay")
        .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
        .create()?;
    let mut summary = ReplaySummary::default();
    for letter in letters {
        let (Some(source), Some(payload)) = (letter.source(), letter.payload.as_deref()) else {
            summary.skipped += 1;
            line(&format!(
                "skipped  {}: no payload to replay",
                letter.position
            ));
            continue;
        };
        let position = letter.position.to_string();
        let headers = OwnedHeaders::new().insert(Header {
            key: "dlq-replayed-from",
            value: Some(&position),
        });
        let mut record = FutureRecord::to(source.as_str())
            .payload(payload)
            .headers(headers);
        if let Some(key) = letter.key.as_deref() {
            record = record.key(key);
        }
        producer
            .send(record, Duration::ZERO)
            .await
            .map_err(|(e, _)| anyhow::anyhow!("republishing {position} to {source}: {e}"))?;
        let event = letter.event();
        audit_replay(db, letter, event.as_ref()).await?;
        summary.replayed += 1;
        line(&format!(
            "replayed {position} to {source}{}",
            event.map_or_else(String::new, |e| format!(" (event {})", e.id))
        ));
    }
    line(&format!(
        "{} replayed, {} skipped",
        summary.replayed, summary.skipped
    ));
    Ok(summary)
}

/// A `dlq.replayed` row of the audit log, in the event's tenant.
async fn audit_replay(
    db: &main_db::DbPool,
    letter: &DeadLetter,
    event: Option<&EventEnvelope>,
) -> anyhow::Result<()> {
    use diesel::ExpressionMethods;
    use main_db::schema::audit_logs;
    let mut conn = db
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("main database: {e}"))?;
    let details = serde_json::json!({
        "dead_letter": letter.position.to_string(),
        "source_topic": letter.source().map(|t| t.as_str()),
        "consumer": letter.headers.get("dlq-consumer"),
        "reason": letter.headers.get("dlq-reason"),
        "event_type": event.map(|e| e.event_type.clone()),
    });
    diesel::insert_into(audit_logs::table)
        .values((
            audit_logs::id.eq(Uuid::new_v4()),
            // The replay is an event of its own; the replayed one keeps its id.
            audit_logs::event_id.eq(Uuid::new_v4()),
            audit_logs::tenant_id.eq(event.and_then(|e| e.tenant_id).map(|t| t.into_uuid())),
            audit_logs::action.eq("dlq.replayed"),
            audit_logs::resource_type.eq("event"),
            audit_logs::resource_id.eq(event.map(|e| e.id.to_string())),
            audit_logs::details.eq(details),
            audit_logs::occurred_at.eq(Utc::now()),
        ))
        .execute(&mut conn)
        .await?;
    Ok(())
}

/// Drops, in each dead-letter topic of `topics`, the dead letters older than
/// `before` (up to the first newer one of each partition: a partition's records are in
/// time order) by moving the partition's floor past them; returns how many.
pub async fn purge(
    connection: &Connection,
    topics: &[String],
    before: DateTime<Utc>,
    timeout: Duration,
    mut line: impl FnMut(&str),
) -> anyhow::Result<usize> {
    let connection = connection.clone();
    let names = topics.to_vec();
    let (cut, total) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let letters = read(&connection, &names, None, timeout)?;
        // Per partition: the first offset to keep, and how many go.
        let mut cut: BTreeMap<(String, i32), (i64, usize)> = BTreeMap::new();
        for letter in &letters {
            let slot = (letter.position.topic.clone(), letter.position.partition);
            let entry = cut.entry(slot).or_insert((letter.position.offset, 0));
            let old = letter.at.is_some_and(|at| at < before);
            if old && entry.0 == letter.position.offset {
                *entry = (letter.position.offset + 1, entry.1 + 1);
            }
        }
        cut.retain(|_, (_, count)| *count > 0);
        let total: usize = cut.values().map(|(_, count)| count).sum();
        if total > 0 {
            let mut floors = TopicPartitionList::new();
            for ((topic, partition), (keep_from, _)) in &cut {
                floors.add_partition_offset(topic, *partition, Offset::Offset(*keep_from))?;
            }
            floor_consumer(&connection)?.commit(&floors, CommitMode::Sync)?;
        }
        Ok((cut, total))
    })
    .await??;
    for ((topic, partition), (keep_from, count)) in &cut {
        line(&format!(
            "purged   {count} from {topic}/{partition} (kept from offset {keep_from})"
        ));
    }
    line(&format!("{total} dead letters purged"));
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_name_catalog_topics_only() {
        let p: Position = "audit.events.dlq/2/17".parse().expect("position");
        assert_eq!(p.topic, "audit.events.dlq");
        assert_eq!((p.partition, p.offset), (2, 17));
        assert_eq!(p.to_string(), "audit.events.dlq/2/17");
        for bad in [
            "audit.events/2/17",
            "audit.events.dlq/x/1",
            "nope.dlq/0/0",
            "audit.events.dlq/0",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad}");
        }
    }

    #[test]
    fn topics_are_chosen_by_their_source_name() {
        assert_eq!(
            dlq_topics(Some("file.process")).expect("known"),
            ["file.process.dlq"]
        );
        assert_eq!(
            dlq_topics(Some("file.process.dlq")).expect("known"),
            ["file.process.dlq"]
        );
        assert_eq!(dlq_topics(None).expect("all").len(), Topic::ALL.len());
        assert!(dlq_topics(Some("files")).is_err());
    }
}
