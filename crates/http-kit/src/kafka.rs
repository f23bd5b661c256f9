//! How every producer and consumer of a service reaches Kafka securely: the
//! `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*` and `KAFKA_SSL_CA_FILE` settings, read once
//! with the common settings and handed to librdkafka as client properties
//! (docs/DESIGN-NOTES.md, "Kafka on tansu"). Production refuses `plaintext` unless
//! `KAFKA_ALLOW_PLAINTEXT=true` says the network is private on purpose.

use std::fmt;
use std::str::FromStr;

use crate::config::{ConfigReader, Environment, Secret};

/// `KAFKA_SECURITY_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KafkaProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslSsl,
}

impl FromStr for KafkaProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_ssl" => Ok(Self::SaslSsl),
            _ => Err("expected plaintext, ssl or sasl_ssl".into()),
        }
    }
}

impl KafkaProtocol {
    fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// `KAFKA_SASL_MECHANISM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".into()),
        }
    }
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The security settings of every Kafka client of a service.
#[derive(Clone, Default)]
pub struct KafkaSecurity {
    pub protocol: KafkaProtocol,
    pub sasl: Option<(SaslMechanism, String, Secret<String>)>,
    /// PEM file of the CA that signed the brokers' certificates; the system's trust
    /// store when absent.
    pub ssl_ca_file: Option<String>,
}

impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field(
                "sasl",
                &self
                    .sasl
                    .as_ref()
                    .map(|(m, user, _)| (m, user, "<redacted>")),
            )
            .field("ssl_ca_file", &self.ssl_ca_file)
            .finish()
    }
}

impl KafkaSecurity {
    /// Reads and checks the settings; `brokers_set` says whether `KAFKA_BROKERS` is.
    pub fn read(r: &mut ConfigReader<'_>, environment: Environment, brokers_set: bool) -> Self {
        let protocol: KafkaProtocol =
            r.optional("KAFKA_SECURITY_PROTOCOL", KafkaProtocol::Plaintext);
        let mechanism: Option<SaslMechanism> = r.maybe("KAFKA_SASL_MECHANISM");
        let username: Option<String> = r.maybe("KAFKA_SASL_USERNAME");
        let password: Option<String> = r.maybe("KAFKA_SASL_PASSWORD");
        let ssl_ca_file: Option<String> = r.maybe("KAFKA_SSL_CA_FILE");
        let allow_plaintext: bool = r.optional("KAFKA_ALLOW_PLAINTEXT", false);
        r.check(
            "KAFKA_SECURITY_PROTOCOL",
            !(brokers_set
                && environment == Environment::Production
                && protocol == KafkaProtocol::Plaintext
                && !allow_plaintext),
            "is plaintext in production: use ssl or sasl_ssl, or set \
             KAFKA_ALLOW_PLAINTEXT=true for a private network",
        );
        let sasl = match protocol {
            KafkaProtocol::SaslSsl => {
                r.check(
                    "KAFKA_SASL_MECHANISM",
                    mechanism.is_some(),
                    "is required with KAFKA_SECURITY_PROTOCOL=sasl_ssl (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
                );
                r.check(
                    "KAFKA_SASL_USERNAME",
                    username.is_some(),
                    "is required with KAFKA_SECURITY_PROTOCOL=sasl_ssl",
                );
                r.check(
                    "KAFKA_SASL_PASSWORD",
                    password.is_some(),
                    "is required with KAFKA_SECURITY_PROTOCOL=sasl_ssl (or KAFKA_SASL_PASSWORD_FILE)",
                );
                match (mechanism, username, password) {
                    (Some(m), Some(u), Some(p)) => Some((m, u, Secret::new(p))),
                    _ => None,
                }
            }
            _ => {
                let stray = mechanism.is_some() || username.is_some() || password.is_some();
                r.check(
                    "KAFKA_SASL_MECHANISM",
                    !stray,
                    "KAFKA_SASL_* settings need KAFKA_SECURITY_PROTOCOL=sasl_ssl",
                );
                None
            }
        };
        if let Some(path) = &ssl_ca_file {
            r.check(
                "KAFKA_SSL_CA_FILE",
                std::fs::File::open(path).is_ok(),
                "cannot be read",
            );
            r.check(
                "KAFKA_SSL_CA_FILE",
                protocol != KafkaProtocol::Plaintext,
                "needs KAFKA_SECURITY_PROTOCOL=ssl or sasl_ssl",
            );
        }
        Self {
            protocol,
            sasl,
            ssl_ca_file,
        }
    }

    /// The librdkafka client properties these settings stand for. The SASL password is
    /// among them: hand them to a client, never to a log.
    pub fn client_properties(&self) -> Vec<(&'static str, String)> {
        let mut properties = vec![(
            "security.protocol",
            self.protocol.as_librdkafka().to_owned(),
        )];
        if let Some((mechanism, username, password)) = &self.sasl {
            properties.push(("sasl.mechanism", mechanism.as_str().to_owned()));
            properties.push(("sasl.username", username.clone()));
            properties.push(("sasl.password", password.expose().clone()));
        }
        if let Some(path) = &self.ssl_ca_file {
            properties.push(("ssl.ca.location", path.clone()));
        }
        properties
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::config::EnvSource;

    struct Env(HashMap<&'static str, String>);

    impl EnvSource for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }

        fn vars(&self) -> HashMap<String, String> {
            self.0
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        }
    }

    fn read(
        vars: &[(&'static str, &str)],
        environment: Environment,
    ) -> Result<KafkaSecurity, String> {
        let env = Env(vars.iter().map(|(k, v)| (*k, (*v).to_owned())).collect());
        let mut r = ConfigReader::new(&env);
        let settings = KafkaSecurity::read(&mut r, environment, true);
        r.finish(settings).map_err(|e| e.to_string())
    }

    #[test]
    fn plaintext_is_the_default_outside_production() {
        let s = read(&[], Environment::Development).expect("valid");
        assert_eq!(
            s.client_properties(),
            vec![("security.protocol", "plaintext".to_owned())]
        );
    }

    #[test]
    fn production_refuses_plaintext_unless_allowed() {
        let e = read(&[], Environment::Production).expect_err("refused");
        assert!(e.contains("KAFKA_SECURITY_PROTOCOL"), "{e}");
        read(
            &[("KAFKA_ALLOW_PLAINTEXT", "true")],
            Environment::Production,
        )
        .expect("allowed");
        read(
            &[("KAFKA_SECURITY_PROTOCOL", "ssl")],
            Environment::Production,
        )
        .expect("ssl");
    }

    #[test]
    fn sasl_needs_its_three_settings_and_keeps_the_password_out_of_debug() {
        let e = read(
            &[("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")],
            Environment::Production,
        )
        .expect_err("incomplete");
        for name in [
            "KAFKA_SASL_MECHANISM",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD",
        ] {
            assert!(e.contains(name), "{name}: {e}");
        }
        let s = read(
            &[
                ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
                ("KAFKA_SASL_USERNAME", "platform"),
                ("KAFKA_SASL_PASSWORD", "hunter2-secret"),
            ],
            Environment::Production,
        )
        .expect("valid");
        let properties = s.client_properties();
        assert!(properties.contains(&("security.protocol", "sasl_ssl".to_owned())));
        assert!(properties.contains(&("sasl.mechanism", "SCRAM-SHA-512".to_owned())));
        assert!(properties.contains(&("sasl.username", "platform".to_owned())));
        assert!(properties.contains(&("sasl.password", "hunter2-secret".to_owned())));
        assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
    }

    #[test]
    fn stray_or_unreadable_settings_are_named() {
        let e = read(&[("KAFKA_SASL_USERNAME", "x")], Environment::Development).expect_err("stray");
        assert!(e.contains("KAFKA_SASL_MECHANISM"), "{e}");
        let e = read(
            &[
                ("KAFKA_SECURITY_PROTOCOL", "ssl"),
                ("KAFKA_SSL_CA_FILE", "/nonexistent/ca.pem"),
            ],
            Environment::Development,
        )
        .expect_err("unreadable");
        assert!(e.contains("KAFKA_SSL_CA_FILE"), "{e}");
        let e = read(
            &[("KAFKA_SECURITY_PROTOCOL", "tls")],
            Environment::Development,
        )
        .expect_err("unknown");
        assert!(e.contains("KAFKA_SECURITY_PROTOCOL"), "{e}");
    }
}
