//! Redis: the connection every service shares, with timeouts; key naming under the
//! configured prefix; token revocation, rate limits, one-time values (SSO state) and
//! short locks.
//!
//! `REDIS_URL` names one server (`redis://`) or a Redis Cluster
//! (`redis+cluster://[user:password@]host:port,host:port,…`: the seed nodes; the client
//! learns the others and follows slot moves). Every use works on both: a command
//! touches one key, or its keys are read and written one by one on a cluster
//! (revocation), and pub/sub reaches every node of a cluster (docs/OPERATIONS.md,
//! "Redis Cluster").

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
use redis::cluster_async::ClusterConnection;
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
/// connections would add a PING per checkout for nothing. On a cluster: one connection
/// per node, commands routed by their key's slot.
#[derive(Clone)]
pub struct Redis {
    target: Target,
    timeout: Duration,
    connection: Arc<OnceCell<Conn>>,
}

#[derive(Clone)]
enum Target {
    Single(redis::Client),
    Cluster {
        client: Box<redis::cluster::ClusterClient>,
        /// The seed nodes, for subscriptions (pub/sub reaches every node).
        nodes: Vec<redis::Client>,
    },
}

/// A connection to one server or to a cluster.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Whether commands are spread over a cluster's nodes: a command or pipeline whose
    /// keys hash to different slots is refused there (CROSSSLOT).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl Redis {
    async fn connection(&self) -> Result<Conn, CacheError> {
        self.connection
            .get_or_try_init(|| async {
                match &self.target {
                    Target::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.timeout))
                            .set_response_timeout(Some(self.timeout))
                            .set_number_of_retries(1);
                        ConnectionManager::new_with_config(client.clone(), config)
                            .await
                            .map(Conn::Single)
                    }
                    Target::Cluster { client, .. } => {
                        client.get_async_connection().await.map(Conn::Cluster)
                    }
                }
                .map_err(|e| CacheError::Unavailable(e.to_string()))
            })
            .await
            .cloned()
    }

    /// Clients of the nodes to subscribe through, in the order to try them.
    fn subscription_nodes(&self) -> Vec<redis::Client> {
        match &self.target {
            Target::Single(client) => vec![client.clone()],
            Target::Cluster { nodes, .. } => nodes.clone(),
        }
    }
}

/// A handle on Redis at `url` (one server, or a cluster: `redis+cluster://…`); nothing
/// connects until the first command.
pub fn connect(url: &str, timeout: Duration) -> Result<Redis, CacheError> {
    let target = match url.strip_prefix("redis+cluster://") {
        None => {
            Target::Single(redis::Client::open(url).map_err(|e| CacheError::Build(e.to_string()))?)
        }
        Some(rest) => {
            let nodes = cluster_nodes(rest)?;
            let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()
                .map_err(|e| CacheError::Build(e.to_string()))?;
            let nodes = nodes
                .iter()
                .map(|node| redis::Client::open(node.as_str()))
                .collect::<Result<_, _>>()
                .map_err(|e| CacheError::Build(e.to_string()))?;
            Target::Cluster {
                client: Box::new(client),
                nodes,
            }
        }
    };
    Ok(Redis {
        target,
        timeout,
        connection: Arc::new(OnceCell::new()),
    })
}

/// `[user:password@]host:port,host:port,…[/]` → one `redis://` URL per seed node, each
/// with the credentials.
fn cluster_nodes(rest: &str) -> Result<Vec<String>, CacheError> {
    let rest = rest.trim_end_matches('/');
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| format!("redis://{credentials}{host}"))
        .collect();
    if nodes.is_empty() || hosts.contains(['/', '?']) {
        return Err(CacheError::Build(
            "a Redis Cluster URL is redis+cluster://[user:password@]host:port,host:port,… (no path or database)".into(),
        ));
    }
    Ok(nodes)
}

/// Runs `work` on the shared connection, all of it within `timeout`.
async fn with_connection<T>(
    redis: &Redis,
    timeout: Duration,
    work: impl AsyncFnOnce(&mut Conn) -> Result<T, CacheError>,
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
    fn cluster_urls_name_their_seed_nodes() {
        assert_eq!(
            cluster_nodes("10.0.0.1:7000,10.0.0.2:7000/").expect("valid"),
            vec!["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]
        );
        assert_eq!(
            cluster_nodes("user:p%40ss@a:1, b:2").expect("valid"),
            vec!["redis://user:p%40ss@a:1", "redis://user:p%40ss@b:2"]
        );
        assert!(cluster_nodes("").is_err());
        assert!(cluster_nodes("a:1/2").is_err());
        assert!(connect("redis+cluster://a:1,b:2", Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn keys_carry_the_prefix() {
        assert_eq!(
            Keys::new("test:abc:").key("revoked", "j1"),
            "test:abc:revoked:j1"
        );
        assert_eq!(Keys::default().key("revoked", "j1"), "revoked:j1");
    }
}
