//! Redis: the connection every service shares, with timeouts; key naming under the
//! configured prefix; token revocation, rate limits, one-time values (SSO state) and
//! short locks.

use std::future::Future;
use std::time::Duration;

mod broadcast;
mod one_time;
mod rate_limit;
mod revocation;

pub use broadcast::{Broadcast, Heard};
pub use one_time::OneTime;
pub use rate_limit::{RateDecision, RateLimit, RateLimiter};
pub use revocation::{Revocations, TokenRef};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use tokio::sync::OnceCell;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis URL is not valid: {0}")]
    Build(String),
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    #[error("Redis timed out")]
    Timeout,
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
}

/// Runs a Redis operation with a deadline: a Redis that hangs is an error, not a wait.
async fn with_timeout<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| CacheError::Timeout)?
}

/// One multiplexed connection shared by every request (commands are pipelined on it),
/// opened on first use and re-opened by itself after Redis comes back. A pool of
/// connections would add a PING per checkout for nothing.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    timeout: Duration,
    manager: Arc<OnceCell<ConnectionManager>>,
}

impl Redis {
    async fn connection(&self) -> Result<ConnectionManager, CacheError> {
        self.manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| CacheError::Unavailable(e.to_string()))
            })
            .await
            .cloned()
    }
}

/// A handle on Redis at `url`; nothing connects until the first command.
pub fn connect(url: &str, timeout: Duration) -> Result<Redis, CacheError> {
    let client = redis::Client::open(url).map_err(|e| CacheError::Build(e.to_string()))?;
    Ok(Redis {
        client,
        timeout,
        manager: Arc::new(OnceCell::new()),
    })
}

/// Runs `work` on the shared connection, all of it within `timeout`.
async fn with_connection<T>(
    redis: &Redis,
    timeout: Duration,
    work: impl AsyncFnOnce(&mut ConnectionManager) -> Result<T, CacheError>,
) -> Result<T, CacheError> {
    with_timeout(timeout, async {
        let mut conn = redis.connection().await?;
        work(&mut conn).await
    })
    .await
}

/// For `/ready`: `PING` answers `PONG` within `timeout`.
pub async fn ping(redis: &Redis, timeout: Duration) -> Result<(), CacheError> {
    with_connection(redis, timeout, async |conn| {
        let pong: String = redis::cmd("PING").query_async(conn).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CacheError::Unavailable(format!(
                "unexpected PING reply {pong:?}"
            )))
        }
    })
    .await
}

/// A readiness probe over `redis` (for `/ready`).
pub fn probe(
    redis: Redis,
    timeout: Duration,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
       + Send
       + Sync
       + 'static {
    move || {
        let redis = redis.clone();
        Box::pin(async move { ping(&redis, timeout).await.map_err(|e| e.to_string()) })
    }
}

/// Key names under one prefix, so services (and tests) can share a Redis.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `<prefix><kind>:<id>`, e.g. `revoked:<jti>`.
    pub fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix() {
        assert_eq!(
            Keys::new("test:abc:").key("revoked", "j1"),
            "test:abc:revoked:j1"
        );
        assert_eq!(Keys::default().key("revoked", "j1"), "revoked:j1");
    }
}
