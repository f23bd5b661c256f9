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

/// A limit: at most `count` hits per `window`. Written `count/window` in settings, the
/// window in seconds or with a unit: `10/3600`, `10/1h`, `30/5m`, `5/30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub window: Duration,
}

impl RateLimit {
    pub const fn new(count: u32, window_secs: u64) -> Self {
        Self {
            count,
            window: Duration::from_secs(window_secs),
        }
    }
}

impl std::str::FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a limit like 10/1h (count/window; s, m, h or d)");
        let (count, window) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let window = window.trim();
        let (number, unit) = match window.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            Some((at, _)) => window.split_at(at),
            None => (window, "s"),
        };
        let number: u64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "s" => number,
            "m" => number.saturating_mul(60),
            "h" => number.saturating_mul(3600),
            "d" => number.saturating_mul(86_400),
            _ => return Err(bad()),
        };
        if count == 0 || seconds == 0 || seconds > 7 * 86_400 {
            return Err(format!(
                "{text:?}: the count must be positive and the window between 1 s and 7 days"
            ));
        }
        Ok(Self::new(count, seconds))
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.window.as_secs())
    }
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

    /// Whether `bucket` already holds `limit` hits, without counting one (limits on
    /// failures: checked before the attempt, counted after a failed one).
    pub async fn peek(&self, bucket: &str, limit: u32) -> Result<RateDecision, CacheError> {
        let key = self.keys.key("ratelimit", bucket);
        with_connection(&self.redis, self.timeout, async |conn| {
            let (count, ttl): (Option<u64>, i64) = redis::pipe()
                .cmd("GET")
                .arg(&key)
                .cmd("TTL")
                .arg(&key)
                .query_async(conn)
                .await?;
            if count.unwrap_or(0) >= u64::from(limit) {
                Ok(RateDecision::Limited {
                    retry_after: Duration::from_secs(u64::try_from(ttl).unwrap_or(1).max(1)),
                })
            } else {
                Ok(RateDecision::Allowed)
            }
        })
        .await
    }

    /// Counts one hit on `bucket` against `limit`.
    pub async fn check(&self, bucket: &str, limit: RateLimit) -> Result<RateDecision, CacheError> {
        self.hit(bucket, limit.count, limit.window).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_units() {
        assert_eq!("10/1h".parse(), Ok(RateLimit::new(10, 3600)));
        assert_eq!(" 30 / 5m ".parse(), Ok(RateLimit::new(30, 300)));
        assert_eq!("5/30".parse(), Ok(RateLimit::new(5, 30)));
        assert_eq!("5/30s".parse(), Ok(RateLimit::new(5, 30)));
        assert_eq!("2/1d".parse(), Ok(RateLimit::new(2, 86_400)));
        for bad in [
            "", "10", "0/1h", "10/0", "10/1w", "x/1h", "10/h", "10/8d", "-1/1h",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
        assert_eq!(RateLimit::new(3, 60).to_string(), "3/60s");
    }
}
