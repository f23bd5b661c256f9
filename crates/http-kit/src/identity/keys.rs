//! Where verification keys come from: auth's own keys ([`StaticKeys`]) or auth's JWKS
//! over HTTP ([`JwksClient`]), cached by `kid` and refetched on an unknown `kid` at most
//! once per `min_refetch`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;

use super::Jwks;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing keys unavailable: {0}")]
    Unavailable(String),
}

pub type KeyFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<DecodingKey>, KeyError>> + Send + 'a>>;

pub trait KeySource: Send + Sync {
    /// The key with this `kid`, `None` when there is none.
    fn key<'a>(&'a self, kid: &'a str) -> KeyFuture<'a>;
}

fn decode_jwks(jwks: &Jwks) -> HashMap<String, DecodingKey> {
    jwks.keys
        .iter()
        .filter(|k| k.is_ed25519())
        .filter_map(|k| {
            DecodingKey::from_ed_components(&k.x)
                .ok()
                .map(|d| (k.kid.clone(), d))
        })
        .collect()
}

/// Keys known in advance (auth verifies with its own public keys).
#[derive(Clone, Default)]
pub struct StaticKeys {
    keys: Arc<HashMap<String, DecodingKey>>,
}

impl StaticKeys {
    pub fn from_jwks(jwks: &Jwks) -> Self {
        Self {
            keys: Arc::new(decode_jwks(jwks)),
        }
    }
}

impl KeySource for StaticKeys {
    fn key<'a>(&'a self, kid: &'a str) -> KeyFuture<'a> {
        Box::pin(std::future::ready(Ok(self.keys.get(kid).cloned())))
    }
}

struct Cached {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

/// Auth's JWKS over HTTP, cached by `kid`.
#[derive(Clone)]
pub struct JwksClient {
    url: String,
    http: reqwest::Client,
    min_refetch: Duration,
    cache: Arc<RwLock<Cached>>,
    /// When the last fetch was attempted, successful or not: a failing JWKS is not
    /// asked again for every request.
    attempted_at: Arc<RwLock<Option<Instant>>>,
    /// One fetch at a time.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl JwksClient {
    pub fn new(
        url: impl Into<String>,
        timeout: Duration,
        min_refetch: Duration,
    ) -> Result<Self, KeyError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| KeyError::Unavailable(e.to_string()))?;
        Ok(Self {
            url: url.into(),
            http,
            min_refetch,
            cache: Arc::new(RwLock::new(Cached {
                keys: HashMap::new(),
                fetched_at: None,
            })),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            attempted_at: Arc::new(RwLock::new(None)),
        })
    }

    fn cached(&self, kid: &str) -> (Option<DecodingKey>, Option<Instant>) {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        (cache.keys.get(kid).cloned(), cache.fetched_at)
    }

    async fn fetch(&self) -> Result<(), KeyError> {
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| KeyError::Unavailable(format!("fetching JWKS: {e}")))?;
        if !response.status().is_success() {
            return Err(KeyError::Unavailable(format!(
                "JWKS answered {}",
                response.status()
            )));
        }
        let jwks: Jwks = response
            .json()
            .await
            .map_err(|e| KeyError::Unavailable(format!("JWKS is not valid: {e}")))?;
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        cache.keys = decode_jwks(&jwks);
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }
}

impl KeySource for JwksClient {
    fn key<'a>(&'a self, kid: &'a str) -> KeyFuture<'a> {
        Box::pin(async move {
            if let (Some(key), _) = self.cached(kid) {
                return Ok(Some(key));
            }
            let _guard = self.fetching.lock().await;
            // Another task may have fetched while this one waited.
            let (key, fetched_at) = self.cached(kid);
            if key.is_some() {
                return Ok(key);
            }
            if fetched_at.is_some_and(|at| at.elapsed() < self.min_refetch) {
                // An unknown kid does not make every request refetch.
                return Ok(None);
            }
            let attempted = *self.attempted_at.read().unwrap_or_else(|p| p.into_inner());
            if attempted.is_some_and(|at| at.elapsed() < self.min_refetch) {
                return Err(KeyError::Unavailable(
                    "the last JWKS fetch failed moments ago".into(),
                ));
            }
            *self.attempted_at.write().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            self.fetch().await?;
            Ok(self.cached(kid).0)
        })
    }
}
