//! Kafka for tests: a tansu broker of the test's own (a real Kafka-protocol broker in
//! its own process, SQLite storage in a temporary folder, so it keeps its records
//! across a restart), or librdkafka's mock cluster (in this process) where a test
//! needs its fault injection. Both are reached over loopback like any broker.

use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A broker for a test: tansu ([`TestKafka::tansu`]) or the mock cluster
/// ([`TestKafka::start`]).
pub struct TestKafka {
    // The producer of `produce`; for the mock, it also owns the cluster.
    owner: BaseProducer,
    brokers: String,
    tansu: Option<crate::tansu::TansuBroker>,
}

/// One message read back.
#[derive(Clone)]
pub struct KafkaRecord {
    pub topic: String,
    pub partition: i32,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaRecord")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("key", &self.key)
            .field("payload", &String::from_utf8_lossy(&self.payload))
            .field("headers", &self.headers)
            .finish()
    }
}

impl KafkaRecord {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).expect("a JSON payload")
    }
}

impl TestKafka {
    /// Starts a cluster with `topics`, each with `partitions` partitions. Consumer
    /// groups join at once (the mock's 3 s initial rebalance delay is set to 0).
    #[allow(unsafe_code)]
    pub fn start(topics: &[&str], partitions: i32) -> anyhow::Result<Self> {
        let owner: BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .context("creating the mock cluster")?;
        // SAFETY: the pointer is the live client `owner` holds.
        let raw =
            unsafe { rdkafka::bindings::rd_kafka_handle_mock_cluster(owner.client().native_ptr()) };
        anyhow::ensure!(!raw.is_null(), "librdkafka made no mock cluster");
        // SAFETY: `raw` is the live cluster owned by `owner`, which outlives this call.
        unsafe { rdkafka::bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(raw, 0) };
        let cluster = owner
            .client()
            .mock_cluster()
            .context("the mock cluster handle")?;
        for topic in topics {
            cluster
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("creating topic {topic}"))?;
        }
        let brokers = cluster.bootstrap_servers();
        drop(cluster);
        Ok(Self {
            owner,
            brokers,
            tansu: None,
        })
    }

    /// Starts a tansu broker of this test's own, with no topic (create them with
    /// `events::Topics::ensure`, as the platform does). The binary is `TANSU_BIN`
    /// (`scripts/test.sh` builds it once per machine and sets it). The broker is killed
    /// when this process exits, even if the value is leaked.
    pub fn tansu() -> anyhow::Result<Self> {
        Self::tansu_from(crate::tansu::TansuBroker::start()?)
    }

    /// A tansu broker that speaks only TLS, with a certificate for 127.0.0.1 signed by
    /// a CA of its own ([`Self::ssl_ca_file`]): clients set `KAFKA_SECURITY_PROTOCOL=ssl`
    /// and `KAFKA_SSL_CA_FILE`.
    pub fn tansu_tls() -> anyhow::Result<Self> {
        Self::tansu_from(crate::tansu::TansuBroker::start_tls()?)
    }

    /// The CA that signed a TLS broker's certificate.
    pub fn ssl_ca_file(&self) -> Option<&std::path::Path> {
        Some(self.tansu.as_ref()?.tls()?.ca.as_path())
    }

    fn tansu_from(broker: crate::tansu::TansuBroker) -> anyhow::Result<Self> {
        let brokers = broker.brokers();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &brokers)
            .set("reconnect.backoff.max.ms", "500");
        if let Some(tls) = broker.tls() {
            config
                .set("security.protocol", "ssl")
                .set("ssl.ca.location", tls.ca.to_string_lossy());
        }
        let owner: BaseProducer = config.create().context("a producer for tansu")?;
        // Listening is not answering: under load tansu accepts connections a while
        // before it answers a metadata request, and a client's first admin call would
        // then fail. Ready means a metadata answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match owner.client().fetch_metadata(None, Duration::from_secs(2)) {
                Ok(_) => break,
                Err(e) if std::time::Instant::now() >= deadline => {
                    return Err(anyhow::anyhow!(
                        "tansu at {brokers} never answered metadata: {e}"
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        Ok(Self {
            owner,
            brokers,
            tansu: Some(broker),
        })
    }

    /// Whether this is a tansu broker (a separate process that keeps its records).
    pub fn is_tansu(&self) -> bool {
        self.tansu.is_some()
    }

    /// A client configuration for this broker (over TLS when it speaks TLS).
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        if let Some(ca) = self.ssl_ca_file() {
            config
                .set("security.protocol", "ssl")
                .set("ssl.ca.location", ca.to_string_lossy());
        }
        config
    }

    /// The partitions of `topic`, as the broker reports them.
    fn partitions(&self, topic: &str) -> anyhow::Result<i32> {
        let consumer: rdkafka::consumer::BaseConsumer = self.client().create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .with_context(|| format!("topic {topic} does not exist"))?;
        anyhow::ensure!(
            !found.partitions().is_empty(),
            "topic {topic} has no partition"
        );
        Ok(found.partitions().len() as i32)
    }

    /// `bootstrap.servers` for clients (`KAFKA_BROKERS`).
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Takes the broker down (connections refused) or brings it back. A tansu broker
    /// is killed (SIGKILL) and started again on the same port and storage.
    pub fn set_up(&self, up: bool) -> anyhow::Result<()> {
        if let Some(broker) = &self.tansu {
            return if up { broker.restart() } else { broker.kill() };
        }
        let cluster = self.owner.client().mock_cluster().context("cluster")?;
        if up {
            cluster.broker_up(1)?;
        } else {
            cluster.broker_down(1)?;
        }
        Ok(())
    }

    /// Every message of `topics` from the beginning, until `count` have arrived;
    /// fails after `timeout`. Reads without a consumer group (assigned partitions).
    pub async fn read(
        &self,
        topics: &[&str],
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<KafkaRecord>> {
        let consumer: StreamConsumer = self
            .client()
            .set("group.id", "testkit-reader")
            .set("enable.auto.commit", "false")
            .create()?;
        let mut partitions = TopicPartitionList::new();
        for topic in topics {
            for partition in 0..self.partitions(topic)? {
                partitions.add_partition_offset(topic, partition, Offset::Beginning)?;
            }
        }
        consumer.assign(&partitions)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        while seen.len() < count {
            let message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
                // A broker just restarted: the client reconnects by itself.
                Ok(Err(rdkafka::error::KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::AllBrokersDown
                    | rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
                ))) => continue,
                Ok(message) => message?,
                Err(_) => anyhow::bail!(
                    "only {} of {count} messages arrived in {timeout:?}: {seen:?}",
                    seen.len()
                ),
            };
            seen.push(KafkaRecord {
                topic: message.topic().to_owned(),
                partition: message.partition(),
                key: message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| {
                                (
                                    h.key.to_owned(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
        Ok(seen)
    }

    /// Publishes one message and waits for the broker to take it.
    pub fn produce(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.produce_all(topic, &[(key, payload)])
    }

    /// Publishes messages (key, payload) in order and waits for the broker to take
    /// them all.
    pub fn produce_all(&self, topic: &str, messages: &[(&str, &[u8])]) -> anyhow::Result<()> {
        for (key, payload) in messages {
            loop {
                match self
                    .owner
                    .send(BaseRecord::to(topic).key(*key).payload(*payload))
                {
                    Ok(()) => break,
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        _,
                    )) => {
                        self.owner.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        self.owner.flush(Duration::from_secs(30))?;
        Ok(())
    }

    /// How many messages `topic` holds (high watermarks summed over its partitions).
    pub fn count(&self, topic: &str) -> anyhow::Result<i64> {
        let consumer: rdkafka::consumer::BaseConsumer =
            self.client().set("group.id", "testkit-counter").create()?;
        let mut total = 0;
        for partition in 0..self.partitions(topic)? {
            let (low, high) =
                consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))?;
            total += high - low;
        }
        Ok(total)
    }
}
