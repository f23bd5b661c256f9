//! Settings of the sso service: the common ones of `http_kit::config` (default port
//! 5004), and
//! - the settings of `http_kit::Peers` (`TENANT_SERVICE_URL`, `AUTH_SERVICE_URL`,
//!   `INTERNAL_SERVICE_TOKEN`, …);
//! - `SSO_AUTHORITY_URL` (`https://login.microsoftonline.com`): a tenant's issuer is
//!   `{authority}/{provider_tenant_id}/v2.0`; `http://` only outside production;
//! - `SSO_GRAPH_URL` (`https://graph.microsoft.com`): where group overage is resolved;
//! - `SSO_PUBLIC_URL` (`http://localhost:4999`, the gateway): the default redirect URI
//!   is `{SSO_PUBLIC_URL}/api/auth/sso/azure/callback`, login URLs are built on it;
//! - `SSO_ALLOWED_RETURN_ORIGINS` (none): comma-separated origins (`https://app.example.com`)
//!   a login's `return_url` may point at;
//! - `SSO_STATE_TTL_SECS` (600): how long a login may take;
//! - `SSO_LOGIN_RATE_LIMIT_PER_IP` (`30/5m`): logins (and links) started per client
//!   address (`TRUST_PROXY_HEADERS` behind the gateway);
//! - `SSO_PROVIDER_TIMEOUT_MS` (5000): every call to Entra ID and Graph;
//! - `SSO_METADATA_CACHE_SECS` (3600): how long a tenant's discovery document and keys
//!   are kept (an unknown `kid` refetches the keys at once);
//! - `SSO_REFRESH_INTERVAL_SECS` (60) and `SSO_REFRESH_WINDOW_SECS` (1800): the token
//!   refresh job's period, and how close to expiry a token is refreshed;
//! - `SECRETS_KEYRING`: the local AES-256-GCM keyring (`id=base64key,…`, the first
//!   encrypts); required unless Vault transit is configured; outside production a fixed
//!   development key is used when it is missing (with a warning);
//! - `USE_VAULT` (false) with `VAULT_ADDR`, `VAULT_ROLE_ID`, `VAULT_SECRET_ID` (required
//!   then), `VAULT_NAMESPACE`, `VAULT_TRANSIT_KEY` (`saas-sso`), `VAULT_TIMEOUT_MS` (5000):
//!   tokens and client secrets are encrypted by Vault transit (AppRole login, renewed);
//!   the keyring still opens what it sealed before.

use std::time::Duration;

use http_kit::config::Environment;
use http_kit::{CommonSettings, ConfigReader, Peers, Secret};

pub const DEFAULT_PORT: u16 = 5004;

pub use secrets::DEVELOPMENT_KEYRING;

#[derive(Debug, Clone)]
pub struct VaultSettings {
    pub addr: String,
    pub role_id: Secret<String>,
    pub secret_id: Secret<String>,
    pub namespace: Option<String>,
    pub transit_key: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub peers: Peers,
    pub authority_url: String,
    pub graph_url: String,
    pub public_url: String,
    pub allowed_return_origins: Vec<String>,
    pub state_ttl: Duration,
    pub provider_timeout: Duration,
    pub metadata_cache: Duration,
    pub refresh_interval: Duration,
    pub refresh_window: Duration,
    pub keyring: Secret<String>,
    pub vault: Option<VaultSettings>,
    /// Logins (and links) started per client address.
    pub login_limit_per_ip: cache::RateLimit,
}

/// `scheme://host[:port]` of an absolute http(s) URL, lowercased; `None` otherwise.
pub fn origin_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return None;
    }
    Some(parsed.origin().ascii_serialization())
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let production = common.environment == Environment::Production;
        let peers = Peers::read(r);
        let authority_url = r
            .http_url("SSO_AUTHORITY_URL", "https://login.microsoftonline.com")
            .trim_end_matches('/')
            .to_owned();
        r.check(
            "SSO_AUTHORITY_URL",
            !production || authority_url.starts_with("https://"),
            "must be https:// in production",
        );
        let graph_url = r
            .http_url("SSO_GRAPH_URL", "https://graph.microsoft.com")
            .trim_end_matches('/')
            .to_owned();
        r.check(
            "SSO_GRAPH_URL",
            !production || graph_url.starts_with("https://"),
            "must be https:// in production",
        );
        let public_url = r
            .http_url("SSO_PUBLIC_URL", "http://localhost:4999")
            .trim_end_matches('/')
            .to_owned();
        let origins: String = r.optional("SSO_ALLOWED_RETURN_ORIGINS", String::new());
        let mut allowed_return_origins = Vec::new();
        for entry in origins.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match origin_of(entry) {
                Some(origin) if origin == entry.trim_end_matches('/').to_ascii_lowercase() => {
                    allowed_return_origins.push(origin)
                }
                _ => r.check(
                    "SSO_ALLOWED_RETURN_ORIGINS",
                    false,
                    "must be comma-separated origins such as https://app.example.com (no path)",
                ),
            }
        }
        let state_ttl = r.optional_in("SSO_STATE_TTL_SECS", 600u64, 30..=3600, "");
        let provider_timeout = r.optional_in("SSO_PROVIDER_TIMEOUT_MS", 5000u64, 100..=60_000, "");
        let metadata_cache = r.optional("SSO_METADATA_CACHE_SECS", 3600u64);
        r.check(
            "SSO_METADATA_CACHE_SECS",
            metadata_cache <= 86_400,
            "must be at most 86400",
        );
        let refresh_interval = r.optional_in("SSO_REFRESH_INTERVAL_SECS", 60u64, 1..=3600, "");
        let refresh_window = r.optional_in("SSO_REFRESH_WINDOW_SECS", 1800u64, 60..=86_400, "");
        let use_vault: bool = r.optional("USE_VAULT", false);
        let vault = use_vault.then(|| VaultSettings {
            addr: r.required("VAULT_ADDR"),
            role_id: r.required("VAULT_ROLE_ID"),
            secret_id: r.required("VAULT_SECRET_ID"),
            namespace: r.maybe("VAULT_NAMESPACE"),
            transit_key: r.optional("VAULT_TRANSIT_KEY", "saas-sso".to_owned()),
            timeout: Duration::from_millis(r.optional("VAULT_TIMEOUT_MS", 5000)),
        });
        if let Some(v) = &vault {
            r.check(
                "VAULT_ADDR",
                http_kit::config::is_http_url(&v.addr),
                "must be an http(s) URL",
            );
            r.check(
                "VAULT_ADDR",
                !production || v.addr.starts_with("https://"),
                "must be https:// in production",
            );
            r.check(
                "VAULT_TRANSIT_KEY",
                !v.transit_key.is_empty() && !v.transit_key.contains('/'),
                "must be one path segment",
            );
        }
        let keyring = http_kit::config::read_keyring(r, common.environment, vault.is_some());
        Self {
            common,
            peers,
            authority_url,
            graph_url,
            public_url,
            allowed_return_origins,
            state_ttl: Duration::from_secs(state_ttl),
            provider_timeout: Duration::from_millis(provider_timeout),
            metadata_cache: Duration::from_secs(metadata_cache),
            refresh_interval: Duration::from_secs(refresh_interval),
            refresh_window: Duration::from_secs(refresh_window),
            keyring,
            vault,
            login_limit_per_ip: r.optional(
                "SSO_LOGIN_RATE_LIMIT_PER_IP",
                cache::RateLimit::new(30, 300),
            ),
        }
    }

    /// The redirect URI a configuration without its own uses.
    pub fn default_redirect_uri(&self) -> String {
        format!("{}/api/auth/sso/azure/callback", self.public_url)
    }

    /// The public login route of a tenant.
    pub fn login_url(&self, tenant: domain::TenantId) -> String {
        format!("{}/api/auth/sso/azure/login/{tenant}", self.public_url)
    }
}
