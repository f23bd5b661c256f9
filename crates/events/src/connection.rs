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
}

impl Connection {
    /// Plaintext to `brokers` (`KAFKA_BROKERS`).
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            security: Vec::new(),
        }
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
            .finish()
    }
}

impl From<&str> for Connection {
    fn from(brokers: &str) -> Self {
        Self::new(brokers)
    }
}

/// `http_kit::CommonSettings::kafka`: the brokers and their security properties.
impl From<(&str, Vec<(&'static str, String)>)> for Connection {
    fn from((brokers, security): (&str, Vec<(&'static str, String)>)) -> Self {
        Self::new(brokers).with_security(security)
    }
}

impl From<String> for Connection {
    fn from(brokers: String) -> Self {
        Self::new(brokers)
    }
}
