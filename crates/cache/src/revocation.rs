//! Token revocation: `revoked:<jti>` with the token's remaining lifetime as TTL, and
//! `revoked-family:<family>` for a whole login session (logout, refresh-token reuse).
//! Callers fail closed: an error here means "cannot tell", never "not revoked".

use std::time::Duration;

use crate::{CacheError, Keys, RedisPool};

#[derive(Clone)]
pub struct Revocations {
    pool: RedisPool,
    keys: Keys,
    timeout: Duration,
}

impl Revocations {
    pub fn new(pool: RedisPool, keys: Keys, timeout: Duration) -> Self {
        Self {
            pool,
            keys,
            timeout,
        }
    }

    /// Marks `jti` revoked for `ttl` (at least one second).
    pub async fn revoke(&self, jti: &str, ttl: Duration) -> Result<(), CacheError> {
        let key = self.keys.key("revoked", jti);
        let seconds = ttl.as_secs().max(1);
        crate::with_timeout(self.timeout, async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| CacheError::Unavailable(e.to_string()))?;
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("EX")
                .arg(seconds)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Marks a whole token family (one login session) revoked for `ttl`.
    pub async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), CacheError> {
        let key = self.keys.key("revoked-family", family);
        let seconds = ttl.as_secs().max(1);
        crate::with_timeout(self.timeout, async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| CacheError::Unavailable(e.to_string()))?;
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("EX")
                .arg(seconds)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Whether the token `jti`, or its family, is revoked (one round trip).
    pub async fn is_revoked(&self, jti: &str, family: Option<&str>) -> Result<bool, CacheError> {
        let mut keys = vec![self.keys.key("revoked", jti)];
        if let Some(family) = family {
            keys.push(self.keys.key("revoked-family", family));
        }
        crate::with_timeout(self.timeout, async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| CacheError::Unavailable(e.to_string()))?;
            let found: u32 = redis::cmd("EXISTS")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
            Ok(found > 0)
        })
        .await
    }
}
