//! One-time values (the SSO flow's `state`): stored with a lifetime, taken at most once
//! (`GETDEL`, atomic: two callbacks with the same state cannot both succeed), and
//! short exclusive locks with an expiry (one runner of a scheduled job at a time).

use std::time::Duration;

use crate::{with_connection, CacheError, Keys, Redis};

#[derive(Clone)]
pub struct OneTime {
    redis: Redis,
    keys: Keys,
    timeout: Duration,
}

impl OneTime {
    pub fn new(redis: Redis, keys: Keys, timeout: Duration) -> Self {
        Self {
            redis,
            keys,
            timeout,
        }
    }

    /// Stores `value` under `<prefix><kind>:<id>` for `ttl` unless the key exists:
    /// `Ok(false)` when it does (ids are random, so that means a collision or a replay).
    pub async fn put(
        &self,
        kind: &str,
        id: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let key = self.keys.key(kind, id);
        let millis = ttl.as_millis().max(1) as u64;
        with_connection(&self.redis, self.timeout, async |conn| {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("PX")
                .arg(millis)
                .arg("NX")
                .query_async(conn)
                .await?;
            Ok(set.is_some())
        })
        .await
    }

    /// Reads the value without taking it; `None` when absent or expired.
    pub async fn get(&self, kind: &str, id: &str) -> Result<Option<String>, CacheError> {
        let key = self.keys.key(kind, id);
        with_connection(&self.redis, self.timeout, async |conn| {
            let value: Option<String> = redis::cmd("GET").arg(&key).query_async(conn).await?;
            Ok(value)
        })
        .await
    }

    /// Takes the value (it is gone afterwards); `None` when absent, expired or taken.
    pub async fn take(&self, kind: &str, id: &str) -> Result<Option<String>, CacheError> {
        let key = self.keys.key(kind, id);
        with_connection(&self.redis, self.timeout, async |conn| {
            let value: Option<String> = redis::cmd("GETDEL").arg(&key).query_async(conn).await?;
            Ok(value)
        })
        .await
    }

    /// Takes the lock `<prefix>lock:<name>` for `ttl` if nobody holds it. The returned
    /// token releases it ([`OneTime::unlock`]); a holder that dies loses it at expiry.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<Option<String>, CacheError> {
        let token = uuid::Uuid::new_v4().to_string();
        Ok(self.put("lock", name, &token, ttl).await?.then_some(token))
    }

    /// Releases the lock if `token` still holds it (compare and delete, atomic).
    pub async fn unlock(&self, name: &str, token: &str) -> Result<bool, CacheError> {
        let key = self.keys.key("lock", name);
        with_connection(&self.redis, self.timeout, async |conn| {
            let deleted: i64 = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end",
            )
            .key(&key)
            .arg(token)
            .invoke_async(conn)
            .await?;
            Ok(deleted == 1)
        })
        .await
    }
}
