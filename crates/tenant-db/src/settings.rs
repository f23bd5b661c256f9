//! Settings of tenant databases. Read by the services that use them from:
//! `TENANT_TEMPLATE_DATABASE` (default `tenant_template`), `TENANT_POOL_MAX_POOLS`
//! (the service's default: document 8, event-worker 4, tenant 2),
//! `TENANT_POOL_CONNECTIONS_PER_POOL` (2), `TENANT_POOL_BURST` (half of pools × connections
//! per pool), `TENANT_POOL_IDLE_TIMEOUT_SECS` (300),
//! `TENANT_POOL_TIMEOUT_MS` (5000), `TENANT_ADMIN_POOL_SIZE` (2); the server is the
//! one of `DATABASE_URL` (administration and migrations: `DATABASE_ADMIN_URL`). The defaults keep the whole platform at one replica each
//! under 60 connections (docs/DESIGN-NOTES.md, "Connection budget").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct TenantDbSettings {
    /// Any database URL on the server that holds tenant databases (the main database's);
    /// tenant URLs are this URL with the database name replaced.
    pub server_url: String,
    /// The same server for administration and migrations (`DATABASE_ADMIN_URL`, by
    /// default `server_url`): CREATE/DROP DATABASE, the template, and migrations, which
    /// take session-level advisory locks and so must not go through a
    /// transaction-mode pooler.
    pub admin_server_url: String,
    /// The template every tenant database is created from.
    pub template_database: String,
    /// At most this many tenant pools are open at once.
    pub max_pools: usize,
    /// Each tenant pool's share of the budget: the budget is `max_pools` × this.
    pub connections_per_pool: usize,
    /// The most connections one pool may open while the budget has room
    /// (`TENANT_POOL_BURST`); `None`: half the budget, at least `connections_per_pool`.
    pub burst: Option<usize>,
    /// A pool unused this long is closed.
    pub idle_timeout: Duration,
    /// A pool unused this long is quiet: its idle connections may be closed for a busy
    /// pool when the budget is spent (1 s).
    pub quiet_after: Duration,
    /// Waiting for, creating and recycling a connection each give up after this.
    pub timeout: Duration,
    /// Connections for CREATE/DROP DATABASE.
    pub admin_pool_size: usize,
    /// The service's settings as read at start, where the URL settings other database
    /// servers name are looked up (`crate::ServerUrls`).
    pub environment: Arc<HashMap<String, String>>,
}

impl TenantDbSettings {
    pub fn new(server_url: impl Into<String>, template_database: impl Into<String>) -> Self {
        let server_url = server_url.into();
        Self {
            admin_server_url: server_url.clone(),
            server_url,
            template_database: template_database.into(),
            max_pools: 8,
            connections_per_pool: 2,
            burst: None,
            idle_timeout: Duration::from_secs(300),
            quiet_after: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            admin_pool_size: 2,
            environment: Arc::default(),
        }
    }

    /// Administration and migrations through `url` (`DATABASE_ADMIN_URL`).
    pub fn with_admin_server_url(mut self, url: impl Into<String>) -> Self {
        self.admin_server_url = url.into();
        self
    }

    /// With a service's own default of `TENANT_POOL_MAX_POOLS`.
    pub fn with_max_pools(mut self, max_pools: usize) -> Self {
        self.max_pools = max_pools;
        self
    }

    /// Reads and checks `TENANT_POOL_MAX_POOLS`, `TENANT_POOL_CONNECTIONS_PER_POOL`,
    /// `TENANT_POOL_BURST`, `TENANT_POOL_IDLE_TIMEOUT_SECS` and `TENANT_POOL_TIMEOUT_MS`
    /// over the defaults, and keeps the settings for the other database servers' URL
    /// settings.
    pub fn read_pool_limits(&mut self, r: &mut http_kit::ConfigReader<'_>) {
        self.environment = Arc::new(r.vars());
        self.max_pools = r.optional("TENANT_POOL_MAX_POOLS", self.max_pools);
        self.connections_per_pool = r.optional(
            "TENANT_POOL_CONNECTIONS_PER_POOL",
            self.connections_per_pool,
        );
        self.burst = r.maybe("TENANT_POOL_BURST");
        self.idle_timeout = Duration::from_secs(
            r.optional("TENANT_POOL_IDLE_TIMEOUT_SECS", self.idle_timeout.as_secs()),
        );
        self.timeout = Duration::from_millis(r.optional(
            "TENANT_POOL_TIMEOUT_MS",
            u64::try_from(self.timeout.as_millis()).unwrap_or(5000),
        ));
        r.check(
            "TENANT_POOL_MAX_POOLS",
            (1..=10_000).contains(&self.max_pools),
            "must be between 1 and 10000",
        );
        r.check(
            "TENANT_POOL_CONNECTIONS_PER_POOL",
            (1..=100).contains(&self.connections_per_pool),
            "must be between 1 and 100",
        );
        r.check(
            "TENANT_POOL_BURST",
            self.burst.is_none_or(|b| {
                (self.connections_per_pool..=self.connection_bound()).contains(&b)
            }),
            "must be between TENANT_POOL_CONNECTIONS_PER_POOL and TENANT_POOL_MAX_POOLS × TENANT_POOL_CONNECTIONS_PER_POOL",
        );
        r.check(
            "TENANT_POOL_IDLE_TIMEOUT_SECS",
            self.idle_timeout.as_secs() > 0,
            "must be a positive number of seconds",
        );
        r.check(
            "TENANT_POOL_TIMEOUT_MS",
            !self.timeout.is_zero(),
            "must be positive",
        );
    }

    /// The most tenant connections that can ever be open at once.
    pub fn connection_bound(&self) -> usize {
        self.max_pools * self.connections_per_pool
    }

    /// The most connections one pool may open: `TENANT_POOL_BURST`, by default half
    /// the budget, never less than a pool's share nor more than the budget.
    pub fn burst(&self) -> usize {
        let bound = self.connection_bound();
        self.burst
            .unwrap_or(bound / 2)
            .clamp(self.connections_per_pool.min(bound), bound)
    }

    /// The tenant pools' share of a service's connection budget, named by the settings
    /// that size it (`main_db::database_checks`).
    pub fn budget_part(&self) -> (&'static str, usize) {
        (
            "TENANT_POOL_MAX_POOLS × TENANT_POOL_CONNECTIONS_PER_POOL",
            self.connection_bound(),
        )
    }

    /// The URL of database `name` on the same server, for request traffic.
    pub fn url_for(&self, name: &str) -> String {
        with_database(&self.server_url, name)
    }

    /// The URL of database `name` for administration and migrations.
    pub fn admin_url_for(&self, name: &str) -> String {
        with_database(&self.admin_server_url, name)
    }
}

impl std::fmt::Debug for TenantDbSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantDbSettings")
            .field("server_url", &redact_password(&self.server_url))
            .field("admin_server_url", &redact_password(&self.admin_server_url))
            .field("template_database", &self.template_database)
            .field("max_pools", &self.max_pools)
            .field("connections_per_pool", &self.connections_per_pool)
            .field("burst", &self.burst())
            .field("idle_timeout", &self.idle_timeout)
            .field("quiet_after", &self.quiet_after)
            .field("timeout", &self.timeout)
            .field("admin_pool_size", &self.admin_pool_size)
            .finish()
    }
}

/// `url` with its database replaced by `name`.
pub(crate) fn with_database(url: &str, name: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            url.set_path(&format!("/{name}"));
            url.to_string()
        }
        // Settings validation makes this unreachable; fall back to the raw URL.
        Err(_) => url.to_owned(),
    }
}

/// The URL with its password replaced, for output.
fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "[unparseable URL]".to_owned(),
    }
}

/// A double-quoted identifier, for names that are not `TenantDatabaseName`s (the
/// template). Refuses anything outside `[a-z0-9_]`, at most 63 bytes.
pub fn quote_identifier(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    ok.then(|| format!("\"{name}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_urls_replace_only_the_database() {
        let s = TenantDbSettings::new(
            "postgres://u:p%40ss@db.example:6543/saas_platform?sslmode=require",
            "tpl",
        );
        assert_eq!(
            s.url_for("tenant_a_00000001"),
            "postgres://u:p%40ss@db.example:6543/tenant_a_00000001?sslmode=require"
        );
        assert_eq!(
            s.connection_bound(),
            16,
            "8 pools of 2: the document service's default"
        );
    }

    #[test]
    fn a_pool_may_burst_to_half_the_budget_within_its_share_and_the_budget() {
        let mut s = TenantDbSettings::new("postgres://h/db", "tpl");
        assert_eq!(s.burst(), 8, "half of 8 × 2");
        s.max_pools = 1;
        assert_eq!(s.burst(), 2, "never below a pool's share");
        s.max_pools = 4;
        s.burst = Some(100);
        assert_eq!(s.burst(), 8, "never above the budget");
        s.burst = Some(3);
        assert_eq!(s.burst(), 3);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let s = TenantDbSettings::new("postgres://u:hunter2@h/db", "tpl");
        let text = format!("{s:?}");
        assert!(
            !text.contains("hunter2") && text.contains("u:%5Bredacted%5D@h"),
            "{text}"
        );
    }

    #[test]
    fn only_safe_identifiers_are_quoted() {
        assert_eq!(
            quote_identifier("tenant_template").as_deref(),
            Some("\"tenant_template\"")
        );
        for bad in ["", "a\"b", "Tenant", "a b", "x;drop", &"a".repeat(64)] {
            assert_eq!(quote_identifier(bad), None, "{bad:?}");
        }
    }
}
