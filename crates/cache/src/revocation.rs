//! Token revocation: `revoked:<jti>` with the token's remaining lifetime as TTL, and
//! `revoked-family:<family>` for a whole login session (logout, refresh-token reuse).
//! Callers fail closed: an error here means "cannot tell", never "not revoked".

use std::time::Duration;

use crate::{with_connection, CacheError, Keys, Redis};

#[derive(Clone)]
pub struct Revocations {
    redis: Redis,
    keys: Keys,
    timeout: Duration,
}

impl Revocations {
    pub fn new(redis: Redis, keys: Keys, timeout: Duration) -> Self {
        Self {
            redis,
            keys,
            timeout,
        }
    }

    /// Sets `key` for `ttl` (at least one second).
    async fn mark(&self, key: String, ttl: Duration) -> Result<(), CacheError> {
        let seconds = ttl.as_secs().max(1);
        with_connection(&self.redis, self.timeout, async |conn| {
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("EX")
                .arg(seconds)
                .query_async(conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Marks the token `jti` revoked for `ttl`.
    pub async fn revoke(&self, jti: &str, ttl: Duration) -> Result<(), CacheError> {
        self.mark(self.keys.key("revoked", jti), ttl).await
    }

    /// Marks a whole token family (one login session) revoked for `ttl`.
    pub async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), CacheError> {
        self.mark(self.keys.key("revoked-family", family), ttl)
            .await
    }

    /// Whether the token `jti`, or its family, is revoked (one round trip).
    pub async fn is_revoked(&self, jti: &str, family: Option<&str>) -> Result<bool, CacheError> {
        let mut keys = vec![self.keys.key("revoked", jti)];
        if let Some(family) = family {
            keys.push(self.keys.key("revoked-family", family));
        }
        with_connection(&self.redis, self.timeout, async |conn| {
            let found: u32 = redis::cmd("EXISTS").arg(&keys).query_async(conn).await?;
            Ok(found > 0)
        })
        .await
    }
}
