//! Settings of the event-worker: the common ones of `http_kit::config` (default port
//! 5005; `KAFKA_BROKERS` is where it consumes), and
//! the settings of `http_kit::Peers` (`TENANT_SERVICE_URL`, `AUTH_SERVICE_URL`,
//! `INTERNAL_SERVICE_TOKEN`, …),
//! `CONSUMER_GROUP_PREFIX` (`event-worker`), `CONSUMER_MAX_ATTEMPTS` (5),
//! `CONSUMER_MAX_BATCH` (500), `CONSUMER_COMMIT_INTERVAL_MS` (1000),
//! `CONSUMER_SESSION_TIMEOUT_MS` (45000), `CONSUMER_FETCH_WAIT_MS` (500), `CONSUMER_LAG_SAMPLE_SECS` (15); webhooks: `WEBHOOK_TIMEOUT_MS` (10000),
//! `WEBHOOK_RETRY_FOR_SECS` (86400), `WEBHOOK_MIN_BACKOFF_MS` (5000),
//! `WEBHOOK_MAX_BACKOFF_MS` (3600000), `WEBHOOK_CONCURRENCY` (16),
//! `WEBHOOK_ALLOW_PRIVATE_TARGETS` (false; refused in production); object storage as
//! the document service reads it (`S3_*`; required in production) and the tenant pool
//! limits (`TENANT_POOL_*`); email: `SMTP_URL` (none: no email), `SMTP_FROM`
//! (`SaaS Platform <no-reply@localhost>`), `SMTP_TIMEOUT_MS` (10000);
//! `PROCESSED_EVENTS_RETENTION_DAYS` (14); `SECRETS_KEYRING` (required in production:
//! webhook signing secrets are sealed with it).

use std::time::Duration;

use http_kit::{CommonSettings, ConfigReader, Peers, Secret};

pub const DEFAULT_PORT: u16 = 5005;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub peers: Peers,
    /// Each consumer's group is `<prefix>.<consumer>` (e.g. `event-worker.audit-log`).
    pub consumer_group_prefix: String,
    /// Attempts of an event whose handling fails before it is dead-lettered.
    pub consumer_max_attempts: u32,
    pub consumer_max_batch: usize,
    pub consumer_commit_interval: Duration,
    pub consumer_session_timeout: Duration,
    /// `CONSUMER_FETCH_WAIT_MS`: how long an empty fetch waits at the broker.
    pub consumer_fetch_wait: Duration,
    /// How often consumer lag is sampled (`kafka_consumer_lag`).
    pub consumer_lag_every: Duration,
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Object storage, for file processing and purging deleted tenants' objects;
    /// without it (development only) those consumers do not run.
    pub storage: Option<storage::StorageSettings>,
    pub tenant_db: tenant_db::TenantDbSettings,
    /// Email; without it (development only) notifications are not sent.
    pub smtp: Option<crate::notifications::SmtpSettings>,
    /// How long processed event ids are kept (beyond any redelivery).
    pub processed_events_retention: Duration,
    /// Seals webhook signing secrets at rest (`SECRETS_KEYRING`).
    pub secrets_keyring: Secret<String>,
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let peers = Peers::read(r);
        let consumer_max_attempts = r.optional_in("CONSUMER_MAX_ATTEMPTS", 5u32, 1..=100, "");
        let consumer_max_batch = r.optional_in("CONSUMER_MAX_BATCH", 500usize, 1..=10_000, "");
        let commit_ms = r.optional_in("CONSUMER_COMMIT_INTERVAL_MS", 1000u64, 1..=600_000, "");
        let lag_secs = r.optional_in("CONSUMER_LAG_SAMPLE_SECS", 15u64, 1..=3600, "");
        let session_ms = r.optional("CONSUMER_SESSION_TIMEOUT_MS", 45_000u64);
        let fetch_wait_ms = r.optional_in("CONSUMER_FETCH_WAIT_MS", 500u64, 1..=10_000, "");
        r.check(
            "CONSUMER_SESSION_TIMEOUT_MS",
            (1000..=300_000).contains(&session_ms),
            "must be between 1000 and 300000",
        );
        let webhook_timeout = r.optional_in("WEBHOOK_TIMEOUT_MS", 10_000u64, 100..=120_000, "");
        let webhook_retry_for = r.optional("WEBHOOK_RETRY_FOR_SECS", 86_400u64);
        r.check(
            "WEBHOOK_RETRY_FOR_SECS",
            (1..=30 * 86_400).contains(&webhook_retry_for),
            "must be between 1 and 2592000 (30 days)",
        );
        let webhook_min_backoff = r.optional("WEBHOOK_MIN_BACKOFF_MS", 5_000u64);
        let webhook_max_backoff = r.optional("WEBHOOK_MAX_BACKOFF_MS", 3_600_000u64);
        r.check(
            "WEBHOOK_MIN_BACKOFF_MS",
            webhook_min_backoff >= 10 && webhook_min_backoff <= webhook_max_backoff,
            "must be at least 10 and at most WEBHOOK_MAX_BACKOFF_MS",
        );
        let webhook_concurrency = r.optional_in("WEBHOOK_CONCURRENCY", 16usize, 1..=256, "");
        let webhooks = crate::webhooks::WebhookSettings {
            timeout: Duration::from_millis(webhook_timeout),
            retry_for: Duration::from_secs(webhook_retry_for),
            min_backoff: Duration::from_millis(webhook_min_backoff),
            max_backoff: Duration::from_millis(webhook_max_backoff),
            allow_private_targets: r.optional("WEBHOOK_ALLOW_PRIVATE_TARGETS", false),
            concurrency: webhook_concurrency,
        };
        r.check(
            "WEBHOOK_ALLOW_PRIVATE_TARGETS",
            !(webhooks.allow_private_targets
                && common.environment == http_kit::config::Environment::Production),
            "must not be true in production",
        );
        let storage = r
            .maybe::<String>("S3_ENDPOINT_URL")
            .is_some()
            .then(|| storage::StorageSettings::read(r));
        r.check(
            "S3_ENDPOINT_URL",
            storage.is_some() || common.environment != http_kit::config::Environment::Production,
            "is required in production (file processing and tenant purges need it)",
        );
        // File processing and purges only: few tenant connections at once.
        let mut tenant_db = tenant_db::TenantDbSettings::new(
            common.session_url(common.database_url.expose(), crate::INFO.name),
            "tenant_template",
        )
        .with_admin_server_url(common.database_url.expose().clone())
        .with_max_pools(4);
        tenant_db.read_pool_limits(r);
        let smtp_url: Option<Secret<String>> = r.maybe("SMTP_URL");
        if let Some(url) = &smtp_url {
            r.check(
                "SMTP_URL",
                url.expose().starts_with("smtp://") || url.expose().starts_with("smtps://"),
                "must be an smtp:// or smtps:// URL",
            );
        }
        let smtp_from: String =
            r.optional("SMTP_FROM", "SaaS Platform <no-reply@localhost>".to_owned());
        r.check(
            "SMTP_FROM",
            smtp_from.parse::<lettre::message::Mailbox>().is_ok(),
            "must be a mailbox such as \"Name <address@example.com>\"",
        );
        let smtp = smtp_url.map(|url| crate::notifications::SmtpSettings {
            url,
            from: smtp_from,
            timeout: Duration::from_millis(r.optional("SMTP_TIMEOUT_MS", 10_000)),
        });
        let retention_days = r.optional("PROCESSED_EVENTS_RETENTION_DAYS", 14u64);
        r.check(
            "PROCESSED_EVENTS_RETENTION_DAYS",
            (1..=3650).contains(&retention_days),
            "must be between 1 and 3650 (keep it above Kafka's retention)",
        );
        let consumer_group_prefix: String =
            r.optional("CONSUMER_GROUP_PREFIX", "event-worker".to_owned());
        r.check(
            "CONSUMER_GROUP_PREFIX",
            !consumer_group_prefix.trim().is_empty(),
            "must not be blank",
        );
        let secrets_keyring = http_kit::config::read_keyring(r, common.environment, false);
        Self {
            common,
            peers,
            consumer_group_prefix,
            consumer_max_attempts,
            consumer_max_batch,
            consumer_commit_interval: Duration::from_millis(commit_ms),
            consumer_session_timeout: Duration::from_millis(session_ms),
            consumer_fetch_wait: Duration::from_millis(fetch_wait_ms),
            consumer_lag_every: Duration::from_secs(lag_secs),
            webhooks,
            storage,
            tenant_db,
            smtp,
            processed_events_retention: Duration::from_secs(retention_days * 86_400),
            secrets_keyring,
        }
    }

    /// The settings of consumer `name` (group `<prefix>.<name>`) over `topics`, with
    /// batches of at most `max_batch` when the handler does slow work per event.
    pub fn consumer(
        &self,
        connection: &events::Connection,
        name: &str,
        topics: Vec<events::Topic>,
        max_batch: Option<usize>,
    ) -> events::ConsumerSettings {
        let mut c = events::ConsumerSettings::new(
            connection.clone(),
            format!("{}.{name}", self.consumer_group_prefix),
            topics,
        );
        c.max_attempts = self.consumer_max_attempts;
        c.max_batch = max_batch.map_or(self.consumer_max_batch, |m| m.min(self.consumer_max_batch));
        c.send_timeout = self.common.kafka_timeout;
        c.commit_interval = self.consumer_commit_interval;
        c.session_timeout = self.consumer_session_timeout;
        c.fetch_wait = self.consumer_fetch_wait;
        c
    }
}
