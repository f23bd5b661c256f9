//! Settings of the auth service: the common ones (`http_kit::config`, port 5001) and
//! `JWT_PRIVATE_KEY` (Ed25519 PKCS#8 PEM, required; `auth generate-key` makes one),
//! `JWT_KEY_ID` (default: derived from the public key), `JWT_ADDITIONAL_JWKS` (a JWKS
//! document of previous public keys still accepted, for rotation), `JWT_ISSUER`
//! and `JWT_AUDIENCE` (`http_kit::Peers`), `ACCESS_TOKEN_TTL_SECS` (900),
//! `REFRESH_TOKEN_TTL_SECS` (604800), `REFRESH_REUSE_INTERVAL_SECS` (10), `BCRYPT_COST` (12), `BCRYPT_THREADS` (cores), `LOGIN_RATE_LIMIT_PER_IP`
//! (100 failed logins per client address), `LOGIN_RATE_LIMIT_PER_ACCOUNT` (10 failed
//! logins per account and client address), `LOGIN_RATE_LIMIT_WINDOW_SECS` (900),
//! and the settings of `http_kit::Peers` (`INTERNAL_SERVICE_TOKEN`, `TENANT_SERVICE_URL`,
//! `SERVICE_CALL_TIMEOUT_MS`).
//!
//! The account lifecycle: `PUBLIC_APP_URL` (`http://localhost:3000`; required in
//! production, `https://` or localhost; the links of emails), `EMAIL_VERIFICATION_TTL_SECS` (86400),
//! `PASSWORD_RESET_TTL_SECS` (1800), `REQUIRE_VERIFIED_EMAIL` (false),
//! `SECRETS_KEYRING` (seals the links on their way to the mailer; required in
//! production), and the throttles (`count/window`, see [`Throttles`]).

use std::time::Duration;

use cache::RateLimit;
use http_kit::{CommonSettings, ConfigReader, Peers, Secret};

use crate::keys::SigningKeys;

pub const DEFAULT_PORT: u16 = 5001;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub keys: SigningKeys,
    /// `JWT_ISSUER`, `JWT_AUDIENCE`, `INTERNAL_SERVICE_TOKEN`, the tenant service's
    /// internal API (a user's tenants), `SERVICE_CALL_TIMEOUT_MS`.
    pub peers: Peers,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// A rotated refresh token presented again within this answers the same new pair
    /// (two tabs refreshing at once) instead of ending the session; 0 turns it off.
    pub refresh_reuse_interval: Duration,
    pub bcrypt_cost: u32,
    /// Threads hashing passwords (at a lower CPU priority).
    pub bcrypt_threads: usize,
    /// Failed logins per client address and window.
    pub login_limit_per_ip: u32,
    /// Failed logins per (account, client address) and window; a success clears it.
    pub login_limit_per_account: u32,
    pub login_limit_window: Duration,
    /// The front end's public URL: the links of emails are built on it.
    pub public_app_url: String,
    pub email_verification_ttl: Duration,
    pub password_reset_ttl: Duration,
    /// Login of an unverified account answers 403 `email_not_verified`.
    pub require_verified_email: bool,
    /// Seals the links of emails on their way through the outbox and Kafka.
    pub secrets_keyring: Secret<String>,
    pub throttles: Throttles,
}

/// The rate limits of the account endpoints (Redis, fixed windows), per client address
/// and per email or user where there is one.
#[derive(Debug, Clone, Copy)]
pub struct Throttles {
    pub register_per_ip: RateLimit,
    pub register_per_email: RateLimit,
    pub resend_verification_per_ip: RateLimit,
    pub resend_verification_per_email: RateLimit,
    pub verify_email_per_ip: RateLimit,
    pub password_forgot_per_ip: RateLimit,
    pub password_forgot_per_email: RateLimit,
    pub password_reset_per_ip: RateLimit,
    pub password_change_per_user: RateLimit,
}

impl Throttles {
    fn read(r: &mut ConfigReader<'_>) -> Self {
        Self {
            register_per_ip: r.optional("REGISTER_RATE_LIMIT_PER_IP", RateLimit::new(20, 3600)),
            register_per_email: r
                .optional("REGISTER_RATE_LIMIT_PER_EMAIL", RateLimit::new(5, 3600)),
            resend_verification_per_ip: r.optional(
                "RESEND_VERIFICATION_RATE_LIMIT_PER_IP",
                RateLimit::new(10, 3600),
            ),
            resend_verification_per_email: r.optional(
                "RESEND_VERIFICATION_RATE_LIMIT_PER_EMAIL",
                RateLimit::new(3, 3600),
            ),
            verify_email_per_ip: r
                .optional("VERIFY_EMAIL_RATE_LIMIT_PER_IP", RateLimit::new(30, 3600)),
            password_forgot_per_ip: r.optional(
                "PASSWORD_FORGOT_RATE_LIMIT_PER_IP",
                RateLimit::new(10, 3600),
            ),
            password_forgot_per_email: r.optional(
                "PASSWORD_FORGOT_RATE_LIMIT_PER_EMAIL",
                RateLimit::new(3, 3600),
            ),
            password_reset_per_ip: r
                .optional("PASSWORD_RESET_RATE_LIMIT_PER_IP", RateLimit::new(10, 3600)),
            password_change_per_user: r.optional(
                "PASSWORD_CHANGE_RATE_LIMIT_PER_USER",
                RateLimit::new(10, 3600),
            ),
        }
    }
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let environment = common.environment;
        let explicit_app_url = r.maybe::<String>("PUBLIC_APP_URL").is_some();
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
            peers: Peers::read(r),
            access_ttl: Duration::from_secs(r.optional("ACCESS_TOKEN_TTL_SECS", 900)),
            refresh_ttl: Duration::from_secs(r.optional("REFRESH_TOKEN_TTL_SECS", 604_800)),
            refresh_reuse_interval: Duration::from_secs(
                r.optional("REFRESH_REUSE_INTERVAL_SECS", 10),
            ),
            bcrypt_cost: r.optional("BCRYPT_COST", 12),
            bcrypt_threads: r.optional(
                "BCRYPT_THREADS",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(2),
            ),
            login_limit_per_ip: r.optional("LOGIN_RATE_LIMIT_PER_IP", 100),
            login_limit_per_account: r.optional("LOGIN_RATE_LIMIT_PER_ACCOUNT", 10),
            login_limit_window: Duration::from_secs(
                r.optional("LOGIN_RATE_LIMIT_WINDOW_SECS", 900),
            ),
            public_app_url: r
                .http_url("PUBLIC_APP_URL", "http://localhost:3000")
                .trim_end_matches('/')
                .to_owned(),
            email_verification_ttl: Duration::from_secs(
                r.optional("EMAIL_VERIFICATION_TTL_SECS", 86_400),
            ),
            password_reset_ttl: Duration::from_secs(r.optional("PASSWORD_RESET_TTL_SECS", 1800)),
            require_verified_email: r.optional("REQUIRE_VERIFIED_EMAIL", false),
            secrets_keyring: http_kit::config::read_keyring(r, environment, false),
            throttles: Throttles::read(r),
        };
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
            "REFRESH_REUSE_INTERVAL_SECS",
            settings.refresh_reuse_interval.as_secs() <= 60,
            "must be between 0 and 60",
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
        let production = environment == http_kit::config::Environment::Production;
        let local = url::Url::parse(&settings.public_app_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .is_some_and(|h| h == "localhost" || h == "127.0.0.1");
        r.check(
            "PUBLIC_APP_URL",
            !production
                || !explicit_app_url
                || local
                || settings.public_app_url.starts_with("https://"),
            "must be an https:// URL (or a localhost one) in production",
        );
        r.check(
            "PUBLIC_APP_URL",
            !production || explicit_app_url,
            "must be set in production (the front end the emailed links open)",
        );
        r.check(
            "EMAIL_VERIFICATION_TTL_SECS",
            (300..=30 * 86_400).contains(&settings.email_verification_ttl.as_secs()),
            "must be between 300 (5 minutes) and 2592000 (30 days)",
        );
        r.check(
            "PASSWORD_RESET_TTL_SECS",
            (300..=86_400).contains(&settings.password_reset_ttl.as_secs()),
            "must be between 300 (5 minutes) and 86400 (1 day)",
        );
        settings
    }
}
