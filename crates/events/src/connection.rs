//! How a client reaches the brokers: `bootstrap.servers` and the security properties
//! (`KAFKA_SECURITY_PROTOCOL`, SASL, CA file) every producer, consumer and admin client
//! of a service shares.

use std::fmt;

use rdkafka::ClientConfig;

/// The brokers and the security properties of every Kafka client of a service.
#[derive(Clone)]
pub struct Connection {
    brokers: String,
    security: Vec<(&'static str, String)>,
    /// Producers are idempotent (`KAFKA_IDEMPOTENCE`); off only for brokers that
    /// mishandle it (tansu 0.6: docs/DESIGN-NOTES.md).
    idempotent: bool,
}

impl Connection {
    /// Plaintext to `brokers` (`KAFKA_BROKERS`).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security: Vec::new(),
            idempotent: true,
        }
    }

    /// Whether producers are idempotent (the default).
    pub fn with_idempotence(mut self, idempotent: bool) -> Self {
        self.idempotent = idempotent;
        self
    }

    /// A producer configuration: every in-sync replica acknowledges, idempotent
    /// unless turned off.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("acks", "all")
            .set("enable.idempotence", self.idempotent.to_string());
        config
    }

    /// With librdkafka security properties (`http_kit::kafka::KafkaSecurity`).
    pub fn with_security(mut self, properties: Vec<(&'static str, String)>) -> Self {
        self.security = properties;
        self
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// A client configuration with the brokers and the security properties set.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.security {
            config.set(*key, value);
        }
        config
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.security.iter().map(|(k, _)| *k).collect();
        f.debug_struct("Connection")
            .field("brokers", &self.brokers)
            .field("security", &keys)
            .field("idempotent", &self.idempotent)
            .finish()
    }
}

impl From<&str> for Connection {
    fn from(brokers: &str) -> Self {
        Self::new(brokers)
    }
}

/// `http_kit::CommonSettings::kafka`: the brokers, their security properties and
/// whether producers are idempotent.
impl From<(&str, Vec<(&'static str, String)>, bool)> for Connection {
    fn from((brokers, security, idempotent): (&str, Vec<(&'static str, String)>, bool)) -> Self {
        Self::new(brokers)
            .with_security(security)
            .with_idempotence(idempotent)
    }
}

impl From<String> for Connection {
    fn from(brokers: String) -> Self {
        Self::new(brokers)
    }
}
