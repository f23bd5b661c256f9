//! Redis: the connection pool every service shares, with timeouts; key naming under the
//! configured prefix; token revocation and rate limits (one-time SSO state comes with
//! the SSO service).

use std::future::Future;
use std::time::Duration;

mod rate_limit;
mod revocation;

pub use rate_limit::{RateDecision, RateLimiter};
pub use revocation::Revocations;

use deadpool_redis::{Config, Pool, Runtime};

pub use deadpool_redis::Connection as RedisConnection;

pub type RedisPool = Pool;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis pool could not be built: {0}")]
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

/// Runs `work` on a pooled connection, all of it within `timeout`.
async fn with_connection<T>(
    pool: &RedisPool,
    timeout: Duration,
    work: impl AsyncFnOnce(&mut RedisConnection) -> Result<T, CacheError>,
) -> Result<T, CacheError> {
    with_timeout(timeout, async {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| CacheError::Unavailable(e.to_string()))?;
        work(&mut conn).await
    })
    .await
}

/// Builds the pool; connections open on first use.
pub fn build_pool(url: &str, max_size: usize, timeout: Duration) -> Result<RedisPool, CacheError> {
    Config::from_url(url)
        .builder()
        .map_err(|e| CacheError::Build(e.to_string()))?
        .max_size(max_size)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| CacheError::Build(e.to_string()))
}

/// For `/ready`: `PING` answers `PONG` within `timeout`.
pub async fn ping(pool: &RedisPool, timeout: Duration) -> Result<(), CacheError> {
    let work = async {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| CacheError::Unavailable(e.to_string()))?;
        let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(CacheError::Unavailable(format!(
                "unexpected PING reply {pong:?}"
            )))
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| CacheError::Timeout)?
}

/// A readiness probe over `pool` (for `/ready`).
pub fn probe(
    pool: RedisPool,
    timeout: Duration,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
       + Send
       + Sync
       + 'static {
    move || {
        let pool = pool.clone();
        Box::pin(async move { ping(&pool, timeout).await.map_err(|e| e.to_string()) })
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
