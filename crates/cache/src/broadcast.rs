//! Redis pub/sub: one message to every replica of every service listening, within
//! milliseconds. Delivery is best effort (a subscriber that is disconnected misses what
//! was published meanwhile), so a listener is told each time its subscription starts
//! again, and must treat that as "anything may have changed" (the role cache clears
//! itself). Used for role-cache invalidation (docs/DESIGN-NOTES.md, "Tenant roles and
//! their cache").

use std::time::Duration;

use futures_util::StreamExt;

use crate::{with_connection, CacheError, Keys, Redis};

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// The subscription is (again) in place: messages may have been missed before it.
    Subscribed,
    /// A message published on the channel.
    Message(String),
}

/// How often a subscription is checked with `PING` (by default): a connection that died
/// silently is noticed within this (plus the Redis timeout).
const PING_EVERY: Duration = Duration::from_secs(5);
/// The longest wait between attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A named channel under the key prefix (`<prefix>broadcast:<name>`).
#[derive(Clone)]
pub struct Broadcast {
    redis: Redis,
    channel: String,
    ping_every: Duration,
}

impl Broadcast {
    pub fn new(redis: &Redis, keys: &Keys, name: &str) -> Self {
        Self {
            redis: redis.clone(),
            channel: keys.key("broadcast", name),
            ping_every: PING_EVERY,
        }
    }

    /// Checks the subscription every `every` instead of every 5 s.
    pub fn with_ping_every(mut self, every: Duration) -> Self {
        self.ping_every = every.max(Duration::from_millis(1));
        self
    }

    /// Publishes `message`; answers how many subscribers received it.
    pub async fn publish(&self, message: &str) -> Result<usize, CacheError> {
        let channel = self.channel.clone();
        let message = message.to_owned();
        with_connection(&self.redis, self.redis.timeout, async move |conn| {
            let receivers: usize = redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&message)
                .query_async(conn)
                .await?;
            Ok(receivers)
        })
        .await
    }

    /// Listens for ever: subscribes (again after any failure, backing off up to 5 s),
    /// tells `on` about each (re)subscription and each message. Spawn it.
    pub async fn listen(self, mut on: impl FnMut(Heard) + Send) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.subscribe().await {
                Ok((mut sink, mut stream)) => {
                    backoff = Duration::from_millis(100);
                    on(Heard::Subscribed);
                    let mut ping = tokio::time::interval(self.ping_every);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            message = stream.next() => match message {
                                Some(message) => match message.get_payload::<String>() {
                                    Ok(payload) => on(Heard::Message(payload)),
                                    Err(e) => tracing::warn!(channel = %self.channel, error = %e, "unreadable broadcast"),
                                },
                                None => break,
                            },
                            _ = ping.tick() => {
                                // Any answer will do: a subscribed RESP2 connection
                                // answers `["pong", ""]`, not `PONG` (read as a String,
                                // that failed every time, and the subscription was
                                // dropped and made again every 5 s).
                                let alive = tokio::time::timeout(self.redis.timeout, sink.ping::<redis::Value>()).await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    break;
                                }
                            }
                        }
                    }
                    tracing::warn!(channel = %self.channel, "broadcast subscription lost; subscribing again");
                }
                Err(e) => {
                    tracing::warn!(channel = %self.channel, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot subscribe to broadcasts");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Subscribes through the first node that answers (on a cluster, a message
    /// published on any node reaches the subscribers of every node).
    async fn subscribe(
        &self,
    ) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), CacheError> {
        let mut last = CacheError::Unavailable("no Redis node to subscribe through".into());
        for node in self.redis.subscription_nodes() {
            let attempt = crate::with_timeout(self.redis.timeout, async {
                let pubsub = node.get_async_pubsub().await?;
                let (mut sink, stream) = pubsub.split();
                sink.subscribe(&self.channel).await?;
                Ok((sink, stream))
            })
            .await;
            match attempt {
                Ok(subscribed) => return Ok(subscribed),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
