//! Fixed-window rate limits in Redis: `INCR` a counter that expires with its window.

use std::time::Duration;

use crate::{with_connection, CacheError, Keys, Redis};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Allowed,
    /// Over the limit; try again after this long.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Clone)]
pub struct RateLimiter {
    redis: Redis,
    keys: Keys,
    timeout: Duration,
}

impl RateLimiter {
    pub fn new(redis: Redis, keys: Keys, timeout: Duration) -> Self {
        Self {
            redis,
            keys,
            timeout,
        }
    }

    /// Counts one hit on `bucket` (e.g. `login:ip:1.2.3.4`): at most `limit` per
    /// `window`.
    pub async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, CacheError> {
        let key = self.keys.key("ratelimit", bucket);
        let window_secs = window.as_secs().max(1);
        with_connection(&self.redis, self.timeout, async |conn| {
            let (count, ttl): (u64, i64) = redis::pipe()
                .atomic()
                .cmd("INCR")
                .arg(&key)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(window_secs)
                .arg("NX")
                .ignore()
                .cmd("TTL")
                .arg(&key)
                .query_async(conn)
                .await?;
            if count > u64::from(limit) {
                let retry = u64::try_from(ttl).unwrap_or(window_secs).max(1);
                Ok(RateDecision::Limited {
                    retry_after: Duration::from_secs(retry),
                })
            } else {
                Ok(RateDecision::Allowed)
            }
        })
        .await
    }

    /// Forgets the hits on `bucket` (after a successful login, for the account).
    pub async fn reset(&self, bucket: &str) -> Result<(), CacheError> {
        let key = self.keys.key("ratelimit", bucket);
        with_connection(&self.redis, self.timeout, async |conn| {
            let _: () = redis::cmd("DEL").arg(&key).query_async(conn).await?;
            Ok(())
        })
        .await
    }
}
