//! Settings of the tenant service: the common ones (`http_kit::config`, default port
//! 5002) and those of tenant databases: `TENANT_TEMPLATE_DATABASE` (default
//! `tenant_template`), the tenant pool limits (`TENANT_POOL_*`,
//! `tenant_db::TenantDbSettings::read_pool_limits`; 2 pools here),
//! `TENANT_ADMIN_POOL_SIZE` (2), `TENANT_MIGRATION_CONCURRENCY` (4); and
//! the settings of `http_kit::Peers` (`INTERNAL_SERVICE_TOKEN` guarding the internal
//! routes, `AUTH_SERVICE_URL`, …); `TENANT_LIMIT_PER_USER` (10) tenants a user may
//! create; `PROVISIONING_STALE_SECS` (300:
//! a tenant provisioning longer is taken as interrupted) and `PROVISIONING_SWEEP_SECS`
//! (60).
//!
//! Moves (`tenant move`, [`crate::moving::MoveSettings`]): `MOVE_KEEP_SOURCE_SECS`
//! (900: a moved tenant's source is dropped this long after the switch),
//! `MOVE_TIMEOUT_SECS` (3600: the copy's limit), `MOVE_STALE_SECS` (60: a move without
//! heartbeat this long was interrupted), `MOVE_PG_DUMP` and `MOVE_PG_RESTORE`
//! (`pg_dump`, `pg_restore`: the tools, at least the servers' major version).
//!
//! Invitations: `PUBLIC_APP_URL` (`http://localhost:3000`; required in production,
//! `https://` or localhost: the front end the invitation links open),
//! `SECRETS_KEYRING` (seals the links on their way to the mailer; required in
//! production), `INVITATION_TTL_SECS` (604800: 7 days), `INVITATION_MAX_PENDING` (1000
//! pending invitations per tenant), and the throttles (`count/window`, see
//! [`InvitationSettings`]).

use std::time::Duration;

use cache::RateLimit;
use http_kit::{CommonSettings, ConfigReader, Peers, Secret};
use tenant_db::{quote_identifier, TenantDbSettings};

pub const DEFAULT_PORT: u16 = 5002;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub tenant_db: TenantDbSettings,
    /// Default parallelism of `migrate-tenants`.
    pub migration_concurrency: usize,
    pub tenant_limit_per_user: u32,
    /// `INTERNAL_SERVICE_TOKEN` (guarding the internal routes), `AUTH_SERVICE_URL` (its
    /// JWKS and user look-ups), `JWT_ISSUER`, `JWT_AUDIENCE`, `SERVICE_CALL_TIMEOUT_MS`.
    pub peers: Peers,
    pub provisioning_stale_after: Duration,
    pub provisioning_sweep_every: Duration,
    /// The front end's public URL: invitation links are built on it.
    pub public_app_url: String,
    /// Seals invitation links on their way through the outbox and Kafka.
    pub secrets_keyring: Secret<String>,
    pub invitations: InvitationSettings,
    pub moves: crate::moving::MoveSettings,
}

/// How long invitations live, how many may be pending, and their rate limits (Redis,
/// fixed windows).
#[derive(Debug, Clone, Copy)]
pub struct InvitationSettings {
    /// `INVITATION_TTL_SECS`: how long a link can be accepted.
    pub ttl: Duration,
    /// `INVITATION_MAX_PENDING`: pending, unexpired invitations per tenant.
    pub max_pending: u32,
    /// `INVITATION_RATE_LIMIT_PER_TENANT` (`100/1h`): invitations sent by a tenant.
    pub per_tenant: RateLimit,
    /// `INVITATION_RATE_LIMIT_PER_EMAIL` (`5/1h`): invitations of one address by a tenant
    /// (re-sending included), so an address cannot be flooded.
    pub per_email: RateLimit,
    /// `INVITATION_TOKEN_RATE_LIMIT_PER_IP` (`100/1h`): previews and acceptances (each
    /// counted on its own) per client address.
    pub token_per_ip: RateLimit,
}

impl InvitationSettings {
    fn read(r: &mut ConfigReader<'_>) -> Self {
        let settings = Self {
            ttl: Duration::from_secs(r.optional("INVITATION_TTL_SECS", 604_800)),
            max_pending: r.optional("INVITATION_MAX_PENDING", 1000),
            per_tenant: r.optional(
                "INVITATION_RATE_LIMIT_PER_TENANT",
                RateLimit::new(100, 3600),
            ),
            per_email: r.optional("INVITATION_RATE_LIMIT_PER_EMAIL", RateLimit::new(5, 3600)),
            token_per_ip: r.optional(
                "INVITATION_TOKEN_RATE_LIMIT_PER_IP",
                RateLimit::new(100, 3600),
            ),
        };
        r.check(
            "INVITATION_TTL_SECS",
            (300..=30 * 86_400).contains(&settings.ttl.as_secs()),
            "must be between 300 and 2592000 (30 days)",
        );
        r.check(
            "INVITATION_MAX_PENDING",
            (1..=100_000).contains(&settings.max_pending),
            "must be between 1 and 100000",
        );
        settings
    }
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let environment = common.environment;
        let explicit_app_url = r.maybe::<String>("PUBLIC_APP_URL").is_some();
        let public_app_url = r
            .http_url("PUBLIC_APP_URL", "http://localhost:3000")
            .trim_end_matches('/')
            .to_owned();
        check_public_app_url(r, environment, explicit_app_url, &public_app_url);
        let secrets_keyring = http_kit::config::read_keyring(r, environment, false);
        let invitations = InvitationSettings::read(r);
        let template: String = r.optional("TENANT_TEMPLATE_DATABASE", "tenant_template".to_owned());
        r.check(
            "TENANT_TEMPLATE_DATABASE",
            quote_identifier(&template).is_some(),
            "must be [a-z0-9_], at most 63 bytes",
        );
        // Tenant connections here serve provisioning and purges (migrations open their
        // own): few at once.
        let mut tenant_db = TenantDbSettings::new(
            common.session_url(common.database_url.expose(), crate::INFO.name),
            template,
        )
        .with_admin_server_url(common.database_admin_url.expose().clone())
        .with_max_pools(2);
        tenant_db.read_pool_limits(r);
        tenant_db.admin_pool_size = r.optional("TENANT_ADMIN_POOL_SIZE", tenant_db.admin_pool_size);
        r.check(
            "TENANT_ADMIN_POOL_SIZE",
            (1..=100).contains(&tenant_db.admin_pool_size),
            "must be between 1 and 100",
        );
        let migration_concurrency = r.optional_in("TENANT_MIGRATION_CONCURRENCY", 4, 1..=64, "");
        let tenant_limit_per_user = r.optional("TENANT_LIMIT_PER_USER", 10);
        let peers = Peers::read(r);
        let moves = crate::moving::MoveSettings {
            keep_source: Duration::from_secs(r.optional_in(
                "MOVE_KEEP_SOURCE_SECS",
                900,
                0..=604_800,
                "",
            )),
            timeout: Duration::from_secs(r.optional_in("MOVE_TIMEOUT_SECS", 3600, 10..=86_400, "")),
            stale_after: Duration::from_secs(r.optional_in("MOVE_STALE_SECS", 60, 1..=3600, "")),
            pg_dump: r.optional("MOVE_PG_DUMP", "pg_dump".to_owned()),
            pg_restore: r.optional("MOVE_PG_RESTORE", "pg_restore".to_owned()),
        };
        Self {
            common,
            tenant_db,
            migration_concurrency,
            tenant_limit_per_user,
            peers,
            provisioning_stale_after: Duration::from_secs(
                r.optional("PROVISIONING_STALE_SECS", 300),
            ),
            provisioning_sweep_every: Duration::from_secs(
                r.optional("PROVISIONING_SWEEP_SECS", 60).max(1),
            ),
            public_app_url,
            secrets_keyring,
            invitations,
            moves,
        }
    }

    /// A pool of the main database for a command (the service makes its own with
    /// `main_db::service_pool`).
    pub fn command_pool(&self) -> Result<main_db::DbPool, main_db::DbError> {
        main_db::build_pool(
            self.common.database_url.expose(),
            &self.main_pool_settings(),
        )
    }

    pub fn main_pool_settings(&self) -> main_db::PoolSettings {
        main_db::PoolSettings {
            max_size: self.common.database_pool_size,
            timeout: self.common.database_timeout,
        }
    }
}

/// In production the links must open the real front end: set explicitly, and on
/// `https://` (or localhost), as auth checks its own.
fn check_public_app_url(
    r: &mut ConfigReader<'_>,
    environment: http_kit::config::Environment,
    explicit: bool,
    url: &str,
) {
    let production = environment == http_kit::config::Environment::Production;
    let local = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .is_some_and(|h| h == "localhost" || h == "127.0.0.1");
    r.check(
        "PUBLIC_APP_URL",
        !production || !explicit || local || url.starts_with("https://"),
        "must be an https:// URL (or a localhost one) in production",
    );
    r.check(
        "PUBLIC_APP_URL",
        !production || explicit,
        "must be set in production (the front end the invitation links open)",
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://localhost/saas_platform"),
            ("REDIS_URL", "redis://localhost"),
            ("INTERNAL_SERVICE_TOKEN", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let mut r = ConfigReader::new(&env);
        let settings = Settings::read(&mut r);
        r.finish(settings).map_err(|e| e.to_string())
    }

    #[test]
    fn invitations_last_a_week_by_default_and_their_settings_are_checked() {
        let settings = read(&[]).expect("defaults");
        assert_eq!(settings.invitations.ttl, Duration::from_secs(604_800));
        assert_eq!(settings.invitations.max_pending, 1000);
        assert_eq!(settings.public_app_url, "http://localhost:3000");
        let settings = read(&[
            ("INVITATION_TTL_SECS", "3600"),
            ("PUBLIC_APP_URL", "https://app.example.com/"),
            ("INVITATION_RATE_LIMIT_PER_EMAIL", "2/1d"),
        ])
        .expect("valid");
        assert_eq!(settings.invitations.ttl, Duration::from_secs(3600));
        assert_eq!(settings.public_app_url, "https://app.example.com");
        assert_eq!(settings.invitations.per_email, RateLimit::new(2, 86_400));
        for (name, value) in [
            ("INVITATION_TTL_SECS", "10"),
            ("INVITATION_TTL_SECS", "9999999"),
            ("INVITATION_MAX_PENDING", "0"),
            ("INVITATION_RATE_LIMIT_PER_TENANT", "lots"),
            ("SECRETS_KEYRING", "not a keyring"),
        ] {
            let error = read(&[(name, value)]).expect_err(name);
            assert!(error.contains(name), "{name}: {error}");
        }
    }

    #[test]
    fn production_needs_the_front_end_url_and_a_keyring() {
        let error = read(&[("ENVIRONMENT", "production")]).expect_err("production");
        assert!(error.contains("PUBLIC_APP_URL"), "{error}");
        assert!(error.contains("SECRETS_KEYRING"), "{error}");
        let error = read(&[
            ("ENVIRONMENT", "production"),
            ("PUBLIC_APP_URL", "http://app.example.com"),
        ])
        .expect_err("plain http");
        assert!(error.contains("https://"), "{error}");
    }
}
