//! Token revocation: `revoked:<jti>` with the token's remaining lifetime as TTL,
//! `revoked-family:<family>` for a whole login session (logout, refresh-token reuse, a
//! session revoked from the session list), and `revoked-before:<user>` holding a Unix
//! time before which every token of the user is refused (password reset, deactivation,
//! sign out everywhere). Callers fail closed: an error here means "cannot tell", never
//! "not revoked".

use std::time::Duration;

use crate::{with_connection, CacheError, Keys, Redis};

#[derive(Clone)]
pub struct Revocations {
    redis: Redis,
    keys: Keys,
    timeout: Duration,
}

/// What identifies a token for the revocation check.
#[derive(Debug, Clone, Copy)]
pub struct TokenRef<'a> {
    pub jti: &'a str,
    /// The session (refresh family), when the token has one.
    pub family: Option<&'a str>,
    pub user: &'a str,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
}

impl Revocations {
    pub fn new(redis: Redis, keys: Keys, timeout: Duration) -> Self {
        Self {
            redis,
            keys,
            timeout,
        }
    }

    /// Sets every `(key, value, ttl)` (TTL at least one second) in one round trip; on
    /// a cluster, where the keys live in different slots, one command each, at once.
    async fn mark(&self, entries: Vec<(String, String, Duration)>) -> Result<(), CacheError> {
        if entries.is_empty() {
            return Ok(());
        }
        let set = |key: &str, value: &str, ttl: &Duration| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("EX").arg(ttl.as_secs().max(1));
            cmd
        };
        with_connection(&self.redis, self.timeout, async |conn| {
            if conn.is_cluster() {
                let writes = entries.iter().map(|(key, value, ttl)| {
                    let mut conn = conn.clone();
                    let cmd = set(key, value, ttl);
                    async move { cmd.query_async::<()>(&mut conn).await }
                });
                futures_util::future::try_join_all(writes).await?;
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for (key, value, ttl) in &entries {
                pipe.add_command(set(key, value, ttl)).ignore();
            }
            let _: () = pipe.query_async(conn).await?;
            Ok(())
        })
        .await
    }

    /// Marks the token `jti` revoked for `ttl`.
    pub async fn revoke(&self, jti: &str, ttl: Duration) -> Result<(), CacheError> {
        self.mark(vec![(self.keys.key("revoked", jti), "1".into(), ttl)])
            .await
    }

    /// Marks a whole token family (one login session) revoked for `ttl`.
    pub async fn revoke_family(&self, family: &str, ttl: Duration) -> Result<(), CacheError> {
        self.revoke_families(&[family], ttl).await
    }

    /// Marks several sessions revoked for `ttl`, in one round trip.
    pub async fn revoke_families(
        &self,
        families: &[&str],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.mark(
            families
                .iter()
                .map(|f| (self.keys.key("revoked-family", f), "1".to_owned(), ttl))
                .collect(),
        )
        .await
    }

    /// Refuses every token of `user` issued before `cutoff` (Unix seconds), for `ttl`
    /// (the longest lifetime of a token), and the given sessions, in one round trip.
    /// The sessions cover tokens issued within the cut-off's second.
    pub async fn revoke_user_before(
        &self,
        user: &str,
        cutoff: i64,
        families: &[&str],
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut entries = vec![(
            self.keys.key("revoked-before", user),
            cutoff.to_string(),
            ttl,
        )];
        entries.extend(
            families
                .iter()
                .map(|f| (self.keys.key("revoked-family", f), "1".to_owned(), ttl)),
        );
        self.mark(entries).await
    }

    /// Whether the token is revoked: by its `jti`, its session, or its user's cut-off
    /// (one round trip).
    pub async fn is_revoked(&self, token: TokenRef<'_>) -> Result<bool, CacheError> {
        let mut keys = vec![
            self.keys.key("revoked-before", token.user),
            self.keys.key("revoked", token.jti),
        ];
        if let Some(family) = token.family {
            keys.push(self.keys.key("revoked-family", family));
        }
        with_connection(&self.redis, self.timeout, async |conn| {
            // One MGET; on a cluster (keys in different slots), one GET each, at once.
            let values: Vec<Option<String>> = if conn.is_cluster() {
                let reads = keys.iter().map(|key| {
                    let mut conn = conn.clone();
                    async move { redis::cmd("GET").arg(key).query_async(&mut conn).await }
                });
                futures_util::future::try_join_all(reads).await?
            } else {
                redis::cmd("MGET").arg(&keys).query_async(conn).await?
            };
            let mut values = values.into_iter();
            let cut = values
                .next()
                .flatten()
                .is_some_and(|cutoff| cutoff.parse::<i64>().map_or(true, |c| token.issued_at < c));
            Ok(cut || values.any(|v| v.is_some()))
        })
        .await
    }
}
