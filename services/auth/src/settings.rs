//! Settings of the auth service: the common ones (`http_kit::config`, port 5001) and
//! `JWT_PRIVATE_KEY` (Ed25519 PKCS#8 PEM, required; `auth generate-key` makes one),
//! `JWT_KEY_ID` (default: derived from the public key), `JWT_ADDITIONAL_JWKS` (a JWKS
//! document of previous public keys still accepted, for rotation), `JWT_ISSUER`
//! (`saas-platform`), `JWT_AUDIENCE` (`saas-platform`), `ACCESS_TOKEN_TTL_SECS` (900),
//! `REFRESH_TOKEN_TTL_SECS` (604800), `BCRYPT_COST` (12), `BCRYPT_THREADS` (cores), `LOGIN_RATE_LIMIT_PER_IP`
//! (30), `LOGIN_RATE_LIMIT_PER_ACCOUNT` (10), `LOGIN_RATE_LIMIT_WINDOW_SECS` (300),
//! `TRUST_PROXY_HEADERS` (false), `INTERNAL_SERVICE_TOKEN` (required, ≥ 32 characters),
//! `TENANT_SERVICE_URL` (`http://127.0.0.1:5002`), `SERVICE_CALL_TIMEOUT_MS` (2000).

use std::time::Duration;

use http_kit::{CommonSettings, ConfigReader, Secret};

use crate::keys::SigningKeys;

pub const DEFAULT_PORT: u16 = 5001;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub keys: SigningKeys,
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub bcrypt_cost: u32,
    /// Threads hashing passwords (at a lower CPU priority).
    pub bcrypt_threads: usize,
    pub login_limit_per_ip: u32,
    pub login_limit_per_account: u32,
    pub login_limit_window: Duration,
    /// Take the client address from `X-Forwarded-For` / `Forwarded` (behind the gateway).
    pub trust_proxy_headers: bool,
    pub internal_token: Secret<String>,
    /// The tenant service's internal API (a user's tenants).
    pub tenant_service_url: String,
    pub service_call_timeout: Duration,
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let pem: Secret<String> = r.required("JWT_PRIVATE_KEY");
        let key_id: Option<String> = r.maybe("JWT_KEY_ID");
        let additional: Option<String> = r.maybe("JWT_ADDITIONAL_JWKS");
        let keys = if pem.expose().is_empty() {
            SigningKeys::default()
        } else {
            match SigningKeys::from_pem(pem.expose(), key_id, additional.as_deref()) {
                Ok(keys) => keys,
                Err(reason) => {
                    r.check("JWT_PRIVATE_KEY", false, &reason);
                    SigningKeys::default()
                }
            }
        };
        let settings = Self {
            common,
            keys,
            issuer: r.optional("JWT_ISSUER", "saas-platform".to_owned()),
            audience: r.optional("JWT_AUDIENCE", "saas-platform".to_owned()),
            access_ttl: Duration::from_secs(r.optional("ACCESS_TOKEN_TTL_SECS", 900)),
            refresh_ttl: Duration::from_secs(r.optional("REFRESH_TOKEN_TTL_SECS", 604_800)),
            bcrypt_cost: r.optional("BCRYPT_COST", 12),
            bcrypt_threads: r.optional(
                "BCRYPT_THREADS",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            ),
            login_limit_per_ip: r.optional("LOGIN_RATE_LIMIT_PER_IP", 30),
            login_limit_per_account: r.optional("LOGIN_RATE_LIMIT_PER_ACCOUNT", 10),
            login_limit_window: Duration::from_secs(
                r.optional("LOGIN_RATE_LIMIT_WINDOW_SECS", 300),
            ),
            trust_proxy_headers: r.optional("TRUST_PROXY_HEADERS", false),
            internal_token: r.required("INTERNAL_SERVICE_TOKEN"),
            tenant_service_url: r.http_url("TENANT_SERVICE_URL", "http://127.0.0.1:5002"),
            service_call_timeout: Duration::from_millis(
                r.optional("SERVICE_CALL_TIMEOUT_MS", 2000),
            ),
        };
        r.check(
            "SERVICE_CALL_TIMEOUT_MS",
            !settings.service_call_timeout.is_zero(),
            "must be positive",
        );
        r.check(
            "BCRYPT_COST",
            (4..=31).contains(&settings.bcrypt_cost),
            "must be between 4 and 31",
        );
        r.check(
            "BCRYPT_THREADS",
            (1..=256).contains(&settings.bcrypt_threads),
            "must be between 1 and 256",
        );
        r.check(
            "ACCESS_TOKEN_TTL_SECS",
            (60..=86_400).contains(&settings.access_ttl.as_secs()),
            "must be between 60 and 86400",
        );
        r.check(
            "REFRESH_TOKEN_TTL_SECS",
            settings.refresh_ttl > settings.access_ttl
                && settings.refresh_ttl.as_secs() <= 90 * 86_400,
            "must be longer than the access token's and at most 90 days",
        );
        r.check(
            "LOGIN_RATE_LIMIT_PER_IP",
            settings.login_limit_per_ip > 0,
            "must be positive",
        );
        r.check(
            "LOGIN_RATE_LIMIT_PER_ACCOUNT",
            settings.login_limit_per_account > 0,
            "must be positive",
        );
        r.check(
            "LOGIN_RATE_LIMIT_WINDOW_SECS",
            !settings.login_limit_window.is_zero(),
            "must be positive",
        );
        let token_len = settings.internal_token.expose().len();
        r.check(
            "INTERNAL_SERVICE_TOKEN",
            token_len == 0 || token_len >= 32,
            "must be at least 32 characters",
        );
        settings
    }
}
