//! Settings of the tenant service: the common ones (`http_kit::config`, default port
//! 5002) and those of tenant databases: `TENANT_TEMPLATE_DATABASE` (default
//! `tenant_template`), `TENANT_POOL_MAX_POOLS` (25), `TENANT_POOL_CONNECTIONS_PER_POOL`
//! (2), `TENANT_POOL_IDLE_TIMEOUT_SECS` (300), `TENANT_POOL_TIMEOUT_MS` (5000),
//! `TENANT_ADMIN_POOL_SIZE` (4), `TENANT_MIGRATION_CONCURRENCY` (4); and
//! `INTERNAL_SERVICE_TOKEN` (required, ≥ 32 characters) guarding the internal routes;
//! `TENANT_LIMIT_PER_USER` (10) tenants a user may create; `AUTH_SERVICE_URL`
//! (`http://127.0.0.1:5001`: its JWKS and user lookups), `JWT_ISSUER` and `JWT_AUDIENCE`
//! (`saas-platform`), `SERVICE_CALL_TIMEOUT_MS` (2000); `PROVISIONING_STALE_SECS` (300:
//! a tenant provisioning longer is taken as interrupted) and `PROVISIONING_SWEEP_SECS`
//! (60).

use std::time::Duration;

use http_kit::{CommonSettings, ConfigReader, Secret};
use tenant_db::{quote_identifier, TenantDbSettings};

pub const DEFAULT_PORT: u16 = 5002;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub tenant_db: TenantDbSettings,
    /// Default parallelism of `migrate-tenants`.
    pub migration_concurrency: usize,
    pub internal_token: Secret<String>,
    pub tenant_limit_per_user: u32,
    pub auth_service_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub service_call_timeout: Duration,
    pub provisioning_stale_after: Duration,
    pub provisioning_sweep_every: Duration,
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let template: String = r.optional("TENANT_TEMPLATE_DATABASE", "tenant_template".to_owned());
        r.check(
            "TENANT_TEMPLATE_DATABASE",
            quote_identifier(&template).is_some(),
            "must be [a-z0-9_], at most 63 bytes",
        );
        let mut tenant_db = TenantDbSettings::new(common.database_url.expose().clone(), template);
        tenant_db.max_pools = r.optional("TENANT_POOL_MAX_POOLS", tenant_db.max_pools);
        tenant_db.connections_per_pool = r.optional(
            "TENANT_POOL_CONNECTIONS_PER_POOL",
            tenant_db.connections_per_pool,
        );
        tenant_db.idle_timeout =
            Duration::from_secs(r.optional("TENANT_POOL_IDLE_TIMEOUT_SECS", 300));
        tenant_db.timeout = Duration::from_millis(r.optional("TENANT_POOL_TIMEOUT_MS", 5000));
        tenant_db.admin_pool_size = r.optional("TENANT_ADMIN_POOL_SIZE", tenant_db.admin_pool_size);
        r.check(
            "TENANT_POOL_MAX_POOLS",
            (1..=10_000).contains(&tenant_db.max_pools),
            "must be between 1 and 10000",
        );
        r.check(
            "TENANT_POOL_CONNECTIONS_PER_POOL",
            (1..=100).contains(&tenant_db.connections_per_pool),
            "must be between 1 and 100",
        );
        r.check(
            "TENANT_POOL_TIMEOUT_MS",
            !tenant_db.timeout.is_zero(),
            "must be positive",
        );
        r.check(
            "TENANT_ADMIN_POOL_SIZE",
            (1..=100).contains(&tenant_db.admin_pool_size),
            "must be between 1 and 100",
        );
        let migration_concurrency = r.optional("TENANT_MIGRATION_CONCURRENCY", 4);
        r.check(
            "TENANT_MIGRATION_CONCURRENCY",
            (1..=64).contains(&migration_concurrency),
            "must be between 1 and 64",
        );
        let internal_token: Secret<String> = r.required("INTERNAL_SERVICE_TOKEN");
        let token_len = internal_token.expose().len();
        r.check(
            "INTERNAL_SERVICE_TOKEN",
            token_len == 0 || token_len >= 32,
            "must be at least 32 characters",
        );
        let tenant_limit_per_user = r.optional("TENANT_LIMIT_PER_USER", 10);
        let auth_service_url = r.http_url("AUTH_SERVICE_URL", "http://127.0.0.1:5001");
        let service_call_timeout =
            Duration::from_millis(r.optional("SERVICE_CALL_TIMEOUT_MS", 2000));
        r.check(
            "SERVICE_CALL_TIMEOUT_MS",
            !service_call_timeout.is_zero(),
            "must be positive",
        );
        Self {
            common,
            tenant_db,
            migration_concurrency,
            internal_token,
            tenant_limit_per_user,
            auth_service_url,
            jwt_issuer: r.optional("JWT_ISSUER", "saas-platform".to_owned()),
            jwt_audience: r.optional("JWT_AUDIENCE", "saas-platform".to_owned()),
            service_call_timeout,
            provisioning_stale_after: Duration::from_secs(
                r.optional("PROVISIONING_STALE_SECS", 300),
            ),
            provisioning_sweep_every: Duration::from_secs(
                r.optional("PROVISIONING_SWEEP_SECS", 60).max(1),
            ),
        }
    }

    pub fn main_pool_settings(&self) -> main_db::PoolSettings {
        main_db::PoolSettings {
            max_size: self.common.database_pool_size,
            timeout: self.common.database_timeout,
        }
    }
}
