//! How a service reaches the other services and checks the platform's tokens, read and
//! built the same way in every service: the peers' internal URLs, the internal-API
//! token, the JWT issuer and audience, the timeout of a call to a peer
//! (docs/CONFIGURATION.md, "Common to the services").

use std::sync::Arc;
use std::time::Duration;

use crate::config::{CommonSettings, ConfigReader, Secret};
use crate::identity::{
    CachedRoles, InternalToken, JwksClient, KeySource, RoleLookup, TokenVerifier, VerifierSettings,
    ROLE_CHANNEL,
};
use crate::lifecycle::Background;

/// `AUTH_SERVICE_URL`, `TENANT_SERVICE_URL`, `INTERNAL_SERVICE_TOKEN`, `JWT_ISSUER`,
/// `JWT_AUDIENCE`, `SERVICE_CALL_TIMEOUT_MS`.
#[derive(Debug, Clone)]
pub struct Peers {
    /// The auth service's internal listener (its JWKS, user look-ups, token issuing).
    pub auth_url: String,
    /// The tenant service's internal listener (memberships, tenant databases).
    pub tenant_url: String,
    /// Sent to, and required from, the other services' internal APIs.
    pub internal_token: Secret<String>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// Timeout of one call to another service.
    pub call_timeout: Duration,
}

/// How long a JWT's time claims may be off (clock skew between the services).
const LEEWAY_SECS: u64 = 30;
/// Roles of tenant members are cached this long at most (changes are also broadcast).
const ROLE_TTL: Duration = Duration::from_secs(30);
/// Memberships cached per instance.
const ROLE_ENTRIES: usize = 10_000;
/// The JWKS is refetched for an unknown key id at most this often.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(5);

impl Peers {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let internal_token: Secret<String> = r.required("INTERNAL_SERVICE_TOKEN");
        let token_len = internal_token.expose().len();
        r.check(
            "INTERNAL_SERVICE_TOKEN",
            token_len == 0 || token_len >= 32,
            "must be at least 32 characters",
        );
        Self {
            auth_url: r.http_url("AUTH_SERVICE_URL", "http://127.0.0.1:6001"),
            tenant_url: r.http_url("TENANT_SERVICE_URL", "http://127.0.0.1:6002"),
            internal_token,
            jwt_issuer: r.optional("JWT_ISSUER", "saas-platform".to_owned()),
            jwt_audience: r.optional("JWT_AUDIENCE", "saas-platform".to_owned()),
            call_timeout: Duration::from_millis(r.optional_positive(
                "SERVICE_CALL_TIMEOUT_MS",
                2000,
                " of milliseconds",
            )),
        }
    }

    /// What the internal routes of this service require from their callers.
    pub fn internal_token(&self) -> InternalToken {
        InternalToken(self.internal_token.clone())
    }

    /// Verifies platform tokens with auth's public keys (its JWKS, refetched every
    /// `JWKS_REFRESH_SECS` and on an unknown key id) and the revocations in Redis.
    pub fn verifier(
        &self,
        common: &CommonSettings,
        redis: &cache::Redis,
    ) -> anyhow::Result<TokenVerifier> {
        let keys = JwksClient::new(
            format!("{}/.well-known/jwks.json", self.auth_url),
            self.call_timeout,
            JWKS_MIN_REFETCH,
        )?
        .refreshing_every(common.jwks_refresh);
        Ok(self.verifier_with(Arc::new(keys), common, redis))
    }

    /// A verifier with keys of the caller's choosing (auth, which holds them).
    pub fn verifier_with(
        &self,
        keys: Arc<dyn KeySource>,
        common: &CommonSettings,
        redis: &cache::Redis,
    ) -> TokenVerifier {
        TokenVerifier::new(
            keys,
            cache::Revocations::new(
                redis.clone(),
                cache::Keys::new(common.redis_key_prefix.clone()),
                common.redis_timeout,
            ),
            &VerifierSettings {
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
                leeway_secs: LEEWAY_SECS,
            },
        )
    }
}

/// The callers' roles in tenants, from `lookup` (the tenant service's internal API),
/// cached and dropped as soon as a change is broadcast over Redis; the listener is one
/// of `background`'s tasks.
pub fn cached_roles(
    lookup: Arc<dyn RoleLookup>,
    common: &CommonSettings,
    redis: &cache::Redis,
    background: &mut Background,
) -> Arc<CachedRoles> {
    let roles = Arc::new(CachedRoles::new(lookup, ROLE_TTL, ROLE_ENTRIES));
    let listener = roles.follow(cache::Broadcast::new(
        redis,
        &cache::Keys::new(common.redis_key_prefix.clone()),
        ROLE_CHANNEL,
    ));
    background.adopt_cancellable("role-changes", listener);
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<Peers, crate::ConfigErrors> {
        let env: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut r = ConfigReader::new(&env);
        let peers = Peers::read(&mut r);
        r.finish(peers)
    }

    #[test]
    fn the_internal_token_is_required_and_long_and_the_timeout_positive() {
        let errors = read(&[]).expect_err("no token");
        assert!(errors.names("INTERNAL_SERVICE_TOKEN"), "{errors}");
        let errors = read(&[("INTERNAL_SERVICE_TOKEN", "short")]).expect_err("short");
        assert!(
            errors.to_string().contains("at least 32 characters"),
            "{errors}"
        );
        let errors = read(&[
            ("INTERNAL_SERVICE_TOKEN", &"t".repeat(32)),
            ("SERVICE_CALL_TIMEOUT_MS", "0"),
        ])
        .expect_err("zero timeout");
        assert!(errors.names("SERVICE_CALL_TIMEOUT_MS"), "{errors}");
        let peers = read(&[
            ("INTERNAL_SERVICE_TOKEN", &"t".repeat(32)),
            ("AUTH_SERVICE_URL", "http://auth:6001"),
        ])
        .expect("valid");
        assert_eq!(peers.auth_url, "http://auth:6001");
        assert_eq!(peers.tenant_url, "http://127.0.0.1:6002");
        assert_eq!(peers.call_timeout, Duration::from_millis(2000));
    }
}
