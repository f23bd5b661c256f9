//! Settings from the environment.
//!
//! Any setting may also be given as `<NAME>_FILE` (a path whose content is the value:
//! the Docker and Kubernetes secrets pattern). A missing or invalid setting is reported
//! by name, all of them at once, and the service refuses to start.
//!
//! [`CommonSettings`] reads the variables every service shares:
//! `HOST`, `PORT`, `ENVIRONMENT`, `LOG_FORMAT`, `RUST_LOG`, `HTTP_WORKERS`,
//! `SHUTDOWN_TIMEOUT_SECS`, `READY_TIMEOUT_MS`, `DATABASE_URL`, `DATABASE_POOL_SIZE`,
//! `DATABASE_TIMEOUT_MS`, `DB_CONNECTION_SHARE`, `REDIS_URL`, `REDIS_TIMEOUT_MS`,
//! `REDIS_KEY_PREFIX`, `KAFKA_BROKERS`, `KAFKA_TIMEOUT_MS`, `OUTBOX_SWEEP_SECS`,
//! the Kafka security settings of [`crate::kafka`], `KAFKA_IDEMPOTENCE`,
//! `TRUSTED_PROXIES`, `INTERNAL_PORT`, `JWKS_REFRESH_SECS`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Where settings come from: the process environment in production, a map in tests.
pub trait EnvSource {
    fn var(&self, key: &str) -> Option<String>;
    /// Every variable, for settings named at run time rather than at start (the
    /// database servers' URL settings, `tenant_db::ServerUrls`).
    fn vars(&self) -> HashMap<String, String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }

    fn vars(&self) -> HashMap<String, String> {
        // Variables that are not UTF-8 cannot be settings.
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }

    fn vars(&self) -> HashMap<String, String> {
        self.clone()
    }
}

/// A value that must never appear in logs or debug output.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself; call sites are easy to audit.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T: FromStr> FromStr for Secret<T> {
    type Err = T::Err;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        T::from_str(s).map(Secret)
    }
}

/// One setting that is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

/// Every problem found while reading settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    /// Whether a setting of this name was reported.
    pub fn names(&self, name: &str) -> bool {
        self.0.iter().any(|e| e.name == name)
    }
}

/// Reads settings and collects every error, so one start-up names all that is wrong.
pub struct ConfigReader<'a> {
    env: &'a dyn EnvSource,
    errors: Vec<ConfigError>,
}

impl<'a> ConfigReader<'a> {
    /// Every variable of the source (see [`EnvSource::vars`]).
    pub fn vars(&self) -> HashMap<String, String> {
        self.env.vars()
    }

    pub fn new(env: &'a dyn EnvSource) -> Self {
        Self {
            env,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, name: &str, reason: impl Into<String>) {
        self.errors.push(ConfigError {
            name: name.to_owned(),
            reason: reason.into(),
        });
    }

    /// The raw value of `name` or of the file named by `name_FILE`; empty means unset.
    fn raw(&mut self, name: &str) -> Option<String> {
        let direct = self.env.var(name).filter(|v| !v.is_empty());
        let file_var = format!("{name}_FILE");
        let file = self.env.var(&file_var).filter(|v| !v.is_empty());
        match (direct, file) {
            (Some(_), Some(_)) => {
                self.error(name, format!("set either {name} or {file_var}, not both"));
                None
            }
            (Some(value), None) => Some(value),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(content) => Some(content.trim_end_matches(['\n', '\r']).to_owned()),
                Err(err) => {
                    self.error(&file_var, format!("cannot read {path}: {err}"));
                    None
                }
            },
            (None, None) => None,
        }
    }

    fn parse<T: FromStr>(&mut self, name: &str, raw: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        match raw.parse::<T>() {
            Ok(value) => Some(value),
            Err(err) => {
                // Never echo the value: it may be a secret.
                self.error(name, format!("invalid value: {err}"));
                None
            }
        }
    }

    /// A setting that must be present.
    pub fn required<T: FromStr + Default>(&mut self, name: &str) -> T
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            Some(raw) => self.parse(name, &raw).unwrap_or_default(),
            None => {
                if !self.errors.iter().any(|e| e.name.starts_with(name)) {
                    self.error(name, "is required but not set");
                }
                T::default()
            }
        }
    }

    /// A setting with a default.
    pub fn optional<T: FromStr>(&mut self, name: &str, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            Some(raw) => self.parse(name, &raw).unwrap_or(default),
            None => default,
        }
    }

    /// A setting that may be absent, with no default.
    pub fn maybe<T: FromStr>(&mut self, name: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let raw = self.raw(name)?;
        self.parse(name, &raw)
    }

    /// A number with a default that must lie in `range` (both ends included); a value
    /// outside is reported with the range. `what` follows the range in the message
    /// (a unit, a reason), e.g. `" seconds"`.
    pub fn optional_in<T>(
        &mut self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
        what: &str,
    ) -> T
    where
        T: FromStr + PartialOrd + fmt::Display,
        T::Err: fmt::Display,
    {
        let value = self.optional(name, default);
        if !range.contains(&value) {
            let reason = format!(
                "must be between {} and {}{what}",
                range.start(),
                range.end()
            );
            self.check(name, false, &reason);
        }
        value
    }

    /// A number with a default that must be above zero; `what` names its unit in the
    /// message (`" seconds"`).
    pub fn optional_positive<T>(&mut self, name: &str, default: T, what: &str) -> T
    where
        T: FromStr + PartialOrd + From<u8>,
        T::Err: fmt::Display,
    {
        let value = self.optional(name, default);
        if value <= T::from(0) {
            self.check(name, false, &format!("must be a positive number{what}"));
        }
        value
    }

    /// An `http://` or `https://` URL with a default, without its trailing `/`; any
    /// other scheme is reported by name.
    pub fn http_url(&mut self, name: &str, default: &str) -> String {
        let url: String = self.optional(name, default.to_owned());
        self.check(
            name,
            is_http_url(&url),
            "must be an http:// or https:// URL",
        );
        url.trim_end_matches('/').to_owned()
    }

    /// Records an error unless `ok`; for rules across values (ranges, URL schemes).
    pub fn check(&mut self, name: &str, ok: bool, reason: &str) {
        if !ok && !self.errors.iter().any(|e| e.name == name) {
            self.error(name, reason);
        }
    }

    /// Ends reading: `value` if every setting was valid.
    /// No setting refused so far.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// Deployment environment: decides defaults such as the log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Development,
    Test,
    Production,
}

impl FromStr for Environment {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "development" => Ok(Self::Development),
            "test" => Ok(Self::Test),
            "production" => Ok(Self::Production),
            _ => Err("expected development, test or production".into()),
        }
    }
}

/// JSON lines for machines, readable lines for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" | "text" => Ok(Self::Pretty),
            "json" => Ok(Self::Json),
            _ => Err("expected json or pretty".into()),
        }
    }
}

/// Settings every service reads.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub host: String,
    pub port: u16,
    /// The internal listener's port (the internal API and `/metrics`).
    pub internal_port: u16,
    pub environment: Environment,
    pub log_format: LogFormat,
    pub log_filter: String,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    pub shutdown_timeout: Duration,
    pub ready_timeout: Duration,
    pub database_url: Secret<String>,
    /// Where migrations and database administration connect (`DATABASE_ADMIN_URL`,
    /// default `DATABASE_URL`): they take session-level advisory locks, run
    /// `CREATE DATABASE … TEMPLATE` and set session characteristics, so behind a
    /// transaction-mode pooler this must reach PostgreSQL itself (or a session-mode
    /// pool). Request traffic uses `DATABASE_URL`.
    pub database_admin_url: Secret<String>,
    pub database_pool_size: usize,
    /// The share of the server's `max_connections` one instance may hold before it
    /// warns at start (`DB_CONNECTION_SHARE`, percent, default 25).
    pub db_connection_share: u8,
    /// Wait, create and recycle timeout of the main-database pool.
    pub database_timeout: Duration,
    /// `statement_timeout` of the request traffic's sessions
    /// (`DATABASE_STATEMENT_TIMEOUT_MS`, 30000; 0 leaves the server's): a query running
    /// longer is cancelled by PostgreSQL instead of holding its connection.
    pub statement_timeout: Duration,
    pub redis_url: Secret<String>,
    pub redis_timeout: Duration,
    /// Prepended to every Redis key (lets services or tests share one Redis).
    pub redis_key_prefix: String,
    /// Kafka bootstrap servers; `None` runs the service without publishing: events
    /// wait in the outbox (refused in production).
    pub kafka_brokers: Option<String>,
    /// How every Kafka client of the service authenticates and encrypts
    /// (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_CA_FILE`).
    pub kafka_security: crate::kafka::KafkaSecurity,
    /// Whether producers are idempotent (`KAFKA_IDEMPOTENCE`, default true).
    pub kafka_idempotence: bool,
    /// How long a published event may wait for the broker's acknowledgement.
    pub kafka_timeout: Duration,
    /// How often the outbox relay sweeps every database for unpublished events.
    pub outbox_sweep_every: Duration,
    /// How long auth's JWKS is used before it is fetched again (`JWKS_REFRESH_SECS`).
    pub jwks_refresh: Duration,
    /// Proxies (the gateway, an ingress) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: crate::client::TrustedProxies,
}

/// How a service's Kafka clients connect: the brokers, the librdkafka properties of
/// the security settings, whether producers are idempotent.
pub type KafkaClient<'a> = (&'a str, Vec<(&'static str, String)>, bool);

/// Whether `url` starts with `http://` or `https://`.
pub fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl CommonSettings {
    /// Reads the shared settings; `default_port` is the service's port of docs/ARCHITECTURE.md.
    pub fn read(r: &mut ConfigReader<'_>, default_port: u16) -> Self {
        let environment: Environment = r.optional("ENVIRONMENT", Environment::Development);
        let default_format = if environment == Environment::Production {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        };
        let settings = Self {
            host: r.optional("HOST", "0.0.0.0".to_owned()),
            port: r.optional("PORT", default_port),
            internal_port: r.optional("INTERNAL_PORT", default_port.saturating_add(1000)),
            environment,
            log_format: r.optional("LOG_FORMAT", default_format),
            log_filter: r.optional("RUST_LOG", "info".to_owned()),
            http_workers: r.optional("HTTP_WORKERS", 0),
            shutdown_timeout: Duration::from_secs(r.optional("SHUTDOWN_TIMEOUT_SECS", 30)),
            ready_timeout: Duration::from_millis(r.optional("READY_TIMEOUT_MS", 2000)),
            database_url: r.required("DATABASE_URL"),
            database_admin_url: Secret::new(String::new()),
            database_pool_size: r.optional("DATABASE_POOL_SIZE", 5),
            database_timeout: Duration::from_millis(r.optional("DATABASE_TIMEOUT_MS", 5000)),
            statement_timeout: Duration::from_millis(r.optional_in(
                "DATABASE_STATEMENT_TIMEOUT_MS",
                30_000,
                0..=3_600_000,
                " milliseconds (0: the server's own)",
            )),
            db_connection_share: r.optional("DB_CONNECTION_SHARE", 25),
            redis_url: r.required("REDIS_URL"),
            redis_timeout: Duration::from_millis(r.optional("REDIS_TIMEOUT_MS", 2000)),
            redis_key_prefix: r.optional("REDIS_KEY_PREFIX", String::new()),
            kafka_brokers: r.maybe("KAFKA_BROKERS"),
            kafka_security: Default::default(),
            kafka_idempotence: r.optional("KAFKA_IDEMPOTENCE", true),
            kafka_timeout: Duration::from_millis(r.optional("KAFKA_TIMEOUT_MS", 10_000)),
            outbox_sweep_every: Duration::from_secs(r.optional("OUTBOX_SWEEP_SECS", 30)),
            jwks_refresh: Duration::from_secs(r.optional("JWKS_REFRESH_SECS", 300)),
            trusted_proxies: r.optional("TRUSTED_PROXIES", Default::default()),
        };
        let mut settings = settings;
        settings.kafka_security =
            crate::kafka::KafkaSecurity::read(r, environment, settings.kafka_brokers.is_some());
        let replaced: Option<String> = r.maybe("TRUST_PROXY_HEADERS");
        r.check(
            "TRUST_PROXY_HEADERS",
            replaced.is_none(),
            "was replaced by TRUSTED_PROXIES: the networks of the gateway and ingress (CIDRs)",
        );
        r.check(
            "KAFKA_BROKERS",
            settings.kafka_brokers.is_some() || environment != Environment::Production,
            "is required in production (events would never leave the outbox)",
        );
        r.check(
            "KAFKA_TIMEOUT_MS",
            !settings.kafka_timeout.is_zero(),
            "must be positive",
        );
        r.check(
            "OUTBOX_SWEEP_SECS",
            !settings.outbox_sweep_every.is_zero(),
            "must be positive",
        );
        let db_url = settings.database_url.expose();
        r.check(
            "DATABASE_URL",
            db_url.is_empty() || is_postgres_url(db_url),
            "must be a postgres:// or postgresql:// URL",
        );
        let admin_url: Option<Secret<String>> = r.maybe("DATABASE_ADMIN_URL");
        if let Some(admin_url) = &admin_url {
            r.check(
                "DATABASE_ADMIN_URL",
                is_postgres_url(admin_url.expose()),
                "must be a postgres:// or postgresql:// URL",
            );
        }
        settings.database_admin_url = admin_url.unwrap_or_else(|| settings.database_url.clone());
        let redis_url = settings.redis_url.expose();
        // TLS to Redis (`rediss://`) is not built in (the redis crate's TLS features are
        // off): refused here, by name, rather than when the first command fails.
        r.check(
            "REDIS_URL",
            !redis_url.starts_with("rediss://"),
            "rediss:// (TLS) is not supported: reach Redis with redis:// on a private network",
        );
        r.check(
            "REDIS_URL",
            redis_url.is_empty()
                || redis_url.starts_with("redis://")
                || redis_url.starts_with("rediss://")
                || redis_url.starts_with("redis+cluster://"),
            "must be a redis:// URL, or redis+cluster://host:port,host:port,… for a Redis Cluster",
        );
        r.check("PORT", settings.port != 0, "must be between 1 and 65535");
        r.check(
            "JWKS_REFRESH_SECS",
            (5..=86_400).contains(&settings.jwks_refresh.as_secs()),
            "must be between 5 and 86400",
        );
        r.check(
            "INTERNAL_PORT",
            settings.internal_port != 0 && settings.internal_port != settings.port,
            "must be between 1 and 65535 and differ from PORT",
        );
        r.check(
            "DATABASE_POOL_SIZE",
            (1..=1000).contains(&settings.database_pool_size),
            "must be between 1 and 1000",
        );
        r.check(
            "DB_CONNECTION_SHARE",
            (1..=100).contains(&settings.db_connection_share),
            "must be a percentage between 1 and 100",
        );
        r.check(
            "DATABASE_TIMEOUT_MS",
            !settings.database_timeout.is_zero(),
            "must be positive",
        );
        r.check(
            "REDIS_TIMEOUT_MS",
            !settings.redis_timeout.is_zero(),
            "must be positive",
        );
        r.check(
            "READY_TIMEOUT_MS",
            !settings.ready_timeout.is_zero(),
            "must be positive",
        );
        settings
    }

    /// `KAFKA_BROKERS` with the client properties of the security settings and whether
    /// producers are idempotent (for `events::Connection`), or `None` when no broker is
    /// configured.
    pub fn kafka(&self) -> Option<KafkaClient<'_>> {
        self.kafka_brokers.as_deref().map(|brokers| {
            (
                brokers,
                self.kafka_security.client_properties(),
                self.kafka_idempotence,
            )
        })
    }

    /// `url` (a PostgreSQL URL) with the session settings of `service`'s request
    /// traffic, sent when each connection starts: `application_name` (so
    /// `pg_stat_activity` and the server's logs name the service) and, unless 0,
    /// `statement_timeout`. Tenant URLs derived from it keep them.
    pub fn session_url(&self, url: &str, service: &str) -> String {
        let Ok(mut parsed) = url::Url::parse(url) else {
            // Not a URL (a key=value string): left as it is.
            return url.to_owned();
        };
        let mut pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, v)| {
                k != "application_name" && !(k == "options" && v.contains("statement_timeout"))
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.push(("application_name".to_owned(), service.to_owned()));
        if !self.statement_timeout.is_zero() {
            pairs.push((
                "options".to_owned(),
                format!(
                    "-c statement_timeout={}",
                    self.statement_timeout.as_millis()
                ),
            ));
        }
        // Percent-encoded, never `+` for a space: libpq and tokio-postgres decode only
        // percent escapes in a URL.
        let percent_encode = |text: &str| {
            percent_encoding::utf8_percent_encode(text, UNRESERVED_ESCAPED).to_string()
        };
        let query = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        parsed.set_query(Some(&query));
        parsed.into()
    }

    pub fn bind_address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn internal_bind_address(&self) -> String {
        format!("{}:{}", self.host, self.internal_port)
    }
}

/// `SECRETS_KEYRING` (or `_FILE`): the local AES-256-GCM keyring of the `secrets` crate,
/// checked. Required in production unless `optional_in_production` (Vault transit is
/// configured); elsewhere the development keyring stands in when it is missing, and it is
/// refused in production.
pub fn read_keyring(
    r: &mut ConfigReader<'_>,
    environment: Environment,
    optional_in_production: bool,
) -> Secret<String> {
    let production = environment == Environment::Production;
    let keyring: Option<Secret<String>> = r.maybe("SECRETS_KEYRING");
    r.check(
        "SECRETS_KEYRING",
        keyring.is_some() || optional_in_production || !production,
        "is required in production (id=base64 of 32 random bytes)",
    );
    let keyring = keyring.unwrap_or_else(|| Secret::new(secrets::DEVELOPMENT_KEYRING.to_owned()));
    if let Err(e) = secrets::Keyring::parse(keyring.expose()) {
        r.check("SECRETS_KEYRING", false, &e.to_string());
    }
    r.check(
        "SECRETS_KEYRING",
        !(production && keyring.expose() == secrets::DEVELOPMENT_KEYRING),
        "must not be the development keyring in production",
    );
    keyring
}

/// Everything but RFC 3986's unreserved characters (letters, digits, `-._~`).
const UNRESERVED_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn ranged_and_positive_numbers_are_checked_and_name_their_bounds() {
        let env = env(&[("A", "0"), ("B", "33"), ("C", "5"), ("D", "-1"), ("E", "7")]);
        let mut r = ConfigReader::new(&env);
        assert_eq!(r.optional_in("A", 3u32, 1..=32, ""), 0);
        assert_eq!(r.optional_in("B", 3u32, 1..=32, " parts"), 33);
        assert_eq!(r.optional_in("C", 3u32, 1..=32, ""), 5);
        assert_eq!(r.optional_positive("D", 1i64, " of seconds"), -1);
        assert_eq!(r.optional_positive("E", 1u64, ""), 7);
        assert_eq!(r.optional_positive("F", 9u64, ""), 9, "the default");
        let errors = r.finish(()).expect_err("must fail");
        for (name, refused) in [
            ("A", true),
            ("B", true),
            ("C", false),
            ("D", true),
            ("E", false),
            ("F", false),
        ] {
            assert_eq!(errors.names(name), refused, "{name}: {errors}");
        }
        let text = errors.to_string();
        assert!(text.contains("between 1 and 32 parts"), "{text}");
        assert!(
            text.contains("must be a positive number of seconds"),
            "{text}"
        );
    }

    #[test]
    fn session_urls_name_the_service_and_carry_the_statement_timeout() {
        let vars = env(&[
            ("DATABASE_URL", "postgres://u:p@db:5432/main"),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "1500"),
        ]);
        let mut r = ConfigReader::new(&vars);
        let settings = CommonSettings::read(&mut r, 5001);
        let settings = r.finish(settings).expect("valid");
        let url = settings.session_url(
            "postgres://u:p@db:5432/main?sslmode=require&application_name=old",
            "document",
        );
        let parsed = url::Url::parse(&url).expect("a URL");
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("sslmode".to_owned(), "require".to_owned()),
                ("application_name".to_owned(), "document".to_owned()),
                ("options".to_owned(), "-c statement_timeout=1500".to_owned()),
            ]
        );
        assert_eq!(parsed.path(), "/main");
        assert_eq!(parsed.password(), Some("p"));
        assert!(
            url.ends_with("options=-c%20statement_timeout%3D1500"),
            "spaces as %20, as PostgreSQL clients decode them: {url}"
        );

        let vars = env(&[
            ("DATABASE_URL", "postgres://u:p@db:5432/main"),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("DATABASE_STATEMENT_TIMEOUT_MS", "0"),
        ]);
        let mut r = ConfigReader::new(&vars);
        let settings = CommonSettings::read(&mut r, 5001);
        let settings = r.finish(settings).expect("valid");
        assert_eq!(
            settings.session_url("postgres://u:p@db:5432/main", "auth"),
            "postgres://u:p@db:5432/main?application_name=auth"
        );
    }

    #[test]
    fn missing_required_settings_are_all_named() {
        let env = env(&[]);
        let mut r = ConfigReader::new(&env);
        CommonSettings::read(&mut r, 5001);
        let errors = r.finish(()).expect_err("must fail");
        assert!(errors.names("DATABASE_URL"), "{errors}");
        assert!(errors.names("REDIS_URL"), "{errors}");
        assert!(
            errors.to_string().contains("DATABASE_URL: is required"),
            "{errors}"
        );
    }

    #[test]
    fn invalid_values_are_named_without_echoing_them() {
        let env = env(&[
            ("DATABASE_URL", "mysql://secret-password@x/db"),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("PORT", "not-a-port"),
            ("LOG_FORMAT", "xml"),
        ]);
        let mut r = ConfigReader::new(&env);
        CommonSettings::read(&mut r, 5001);
        let errors = r.finish(()).expect_err("must fail");
        assert!(errors.names("DATABASE_URL"));
        assert!(errors.names("PORT"));
        assert!(errors.names("LOG_FORMAT"));
        assert!(!errors.names("REDIS_URL"));
        assert!(!errors.to_string().contains("secret-password"), "{errors}");
    }

    #[test]
    fn redis_urls_are_one_server_or_a_cluster_without_tls() {
        for (url, ok) in [
            ("redis://127.0.0.1:6379", true),
            ("redis+cluster://10.0.0.1:7000,10.0.0.2:7000", true),
            ("rediss://127.0.0.1:6380", false),
            ("http://127.0.0.1", false),
        ] {
            let env = env(&[("DATABASE_URL", "postgres://db/x"), ("REDIS_URL", url)]);
            let mut r = ConfigReader::new(&env);
            CommonSettings::read(&mut r, 5001);
            let result = r.finish(());
            assert_eq!(result.is_ok(), ok, "{url}: {result:?}");
        }
    }

    #[test]
    fn values_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("http-kit-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("db_url");
        std::fs::write(&path, "postgres://u:p@h/db\n").expect("write");
        let env = env(&[
            ("DATABASE_URL_FILE", path.to_str().expect("utf-8 path")),
            ("REDIS_URL", "redis://127.0.0.1"),
        ]);
        let mut r = ConfigReader::new(&env);
        let settings = CommonSettings::read(&mut r, 5002);
        let settings = r.finish(settings).expect("valid");
        assert_eq!(settings.database_url.expose(), "postgres://u:p@h/db");
        assert_eq!(settings.port, 5002);
        assert_eq!(format!("{:?}", settings.database_url), "[redacted]");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_admin_url_defaults_to_the_database_url_and_must_be_postgres() {
        let read = |pairs: &[(&str, &str)]| {
            let env = env(pairs);
            let mut r = ConfigReader::new(&env);
            let settings = CommonSettings::read(&mut r, 5002);
            r.finish(settings)
        };
        let base = [
            ("DATABASE_URL", "postgres://u@pooler:6432/db"),
            ("REDIS_URL", "redis://127.0.0.1"),
        ];
        let settings = read(&base).expect("valid");
        assert_eq!(
            settings.database_admin_url.expose(),
            "postgres://u@pooler:6432/db"
        );
        let settings = read(
            &[
                &base[..],
                &[("DATABASE_ADMIN_URL", "postgres://u@db:5432/db")],
            ]
            .concat(),
        )
        .expect("valid");
        assert_eq!(
            settings.database_admin_url.expose(),
            "postgres://u@db:5432/db"
        );
        assert_eq!(
            settings.database_url.expose(),
            "postgres://u@pooler:6432/db"
        );
        let errors = read(
            &[
                &base[..],
                &[("DATABASE_ADMIN_URL", "mysql://u:secret@db/db")],
            ]
            .concat(),
        )
        .expect_err("refused");
        assert!(errors.names("DATABASE_ADMIN_URL"), "{errors}");
        assert!(!errors.to_string().contains("secret"), "{errors}");
    }

    #[test]
    fn a_value_and_its_file_together_are_refused() {
        let env = env(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("DATABASE_URL_FILE", "/nonexistent"),
            ("REDIS_URL", "redis://127.0.0.1"),
        ]);
        let mut r = ConfigReader::new(&env);
        CommonSettings::read(&mut r, 5001);
        let errors = r.finish(()).expect_err("must fail");
        assert!(errors.to_string().contains("not both"), "{errors}");
    }

    #[test]
    fn production_defaults_to_json_logs() {
        let env = env(&[
            ("DATABASE_URL", "postgres://h/db"),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("ENVIRONMENT", "production"),
            ("KAFKA_BROKERS", "kafka:9092"),
            ("KAFKA_ALLOW_PLAINTEXT", "true"),
        ]);
        let mut r = ConfigReader::new(&env);
        let settings = CommonSettings::read(&mut r, 5001);
        let settings = r.finish(settings).expect("valid");
        assert_eq!(settings.log_format, LogFormat::Json);
    }

    #[test]
    fn production_refuses_to_run_without_kafka() {
        let production = [
            ("DATABASE_URL", "postgres://h/db"),
            ("REDIS_URL", "redis://127.0.0.1"),
            ("ENVIRONMENT", "production"),
        ];
        let refused = env(&production);
        let mut r = ConfigReader::new(&refused);
        let settings = CommonSettings::read(&mut r, 5001);
        let errors = r.finish(settings).expect_err("refused");
        assert!(errors.names("KAFKA_BROKERS"), "{errors}");
        // Elsewhere the events wait in the outbox.
        let development = env(&production[..2]);
        let mut r = ConfigReader::new(&development);
        let settings = CommonSettings::read(&mut r, 5001);
        assert_eq!(r.finish(settings).expect("valid").kafka_brokers, None);
    }
}
