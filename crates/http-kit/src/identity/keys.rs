//! Where verification keys come from: auth's own keys ([`StaticKeys`]) or auth's JWKS
//! over HTTP ([`JwksClient`]), cached and fetched again on an unknown `kid` (at most
//! once per `min_refetch`) and once the set is older than `JWKS_REFRESH_SECS`.

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
    /// How long a fetched key set is used before it is fetched again: a key removed
    /// from auth's JWKS stops verifying within this.
    refresh_every: Duration,
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
            refresh_every: DEFAULT_REFRESH,
            cache: Arc::new(RwLock::new(Cached {
                keys: HashMap::new(),
                fetched_at: None,
            })),
            fetching: Arc::new(tokio::sync::Mutex::new(())),
            attempted_at: Arc::new(RwLock::new(None)),
        })
    }

    /// Sets how long a fetched key set is used (`JWKS_REFRESH_SECS`).
    pub fn refreshing_every(mut self, every: Duration) -> Self {
        self.refresh_every = every;
        self
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
    /// A known key of a set fetched less than `refresh_every` ago is used as is. Else
    /// the set is fetched again (once at a time, at most every `min_refetch`) and
    /// replaces the old one, so a removed key stops verifying. If auth cannot answer,
    /// a key of the old set goes on verifying (logged) rather than every request failing.
    fn key<'a>(&'a self, kid: &'a str) -> KeyFuture<'a> {
        Box::pin(async move {
            let fresh =
                |at: Option<Instant>| at.is_some_and(|at| at.elapsed() < self.refresh_every);
            if let (Some(key), at) = self.cached(kid) {
                if fresh(at) {
                    return Ok(Some(key));
                }
            }
            let _guard = self.fetching.lock().await;
            // Another task may have fetched while this one waited.
            let (key, fetched_at) = self.cached(kid);
            if key.is_some() && fresh(fetched_at) {
                return Ok(key);
            }
            if fetched_at.is_some_and(|at| at.elapsed() < self.min_refetch) {
                // An unknown kid does not make every request refetch.
                return Ok(key);
            }
            let attempted = *self.attempted_at.read().unwrap_or_else(|p| p.into_inner());
            if attempted.is_some_and(|at| at.elapsed() < self.min_refetch) {
                return match key {
                    Some(stale) => Ok(Some(stale)),
                    None => Err(KeyError::Unavailable(
                        "the last JWKS fetch failed moments ago".into(),
                    )),
                };
            }
            *self.attempted_at.write().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            match self.fetch().await {
                Ok(()) => Ok(self.cached(kid).0),
                Err(e) => match key {
                    Some(stale) => {
                        tracing::warn!(error = %e, "JWKS refresh failed; the keys fetched before go on verifying");
                        Ok(Some(stale))
                    }
                    None => Err(e),
                },
            }
        })
    }
}

/// How long a fetched key set is used by default (`JWKS_REFRESH_SECS`).
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use std::sync::Mutex;

    fn jwk(kid: &str, byte: u8) -> serde_json::Value {
        use base64::Engine;
        // Any 32 bytes decode as an Ed25519 public key for this purpose.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([byte; 32]);
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x})
    }

    #[tokio::test]
    async fn a_key_removed_from_the_jwks_stops_verifying_after_the_refresh() {
        let served = web::Data::new(Mutex::new(vec![jwk("old", 1), jwk("new", 2)]));
        let state = served.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        let server = HttpServer::new(move || {
            App::new().app_data(state.clone()).route(
                "/jwks",
                web::get().to(
                    |keys: web::Data<Mutex<Vec<serde_json::Value>>>| async move {
                        let keys = keys.lock().expect("lock").clone();
                        HttpResponse::Ok().json(serde_json::json!({ "keys": keys }))
                    },
                ),
            )
        })
        .workers(1)
        .listen(listener)
        .expect("listen")
        .run();
        tokio::spawn(server);

        let client = JwksClient::new(&url, Duration::from_secs(2), Duration::ZERO)
            .expect("client")
            .refreshing_every(Duration::from_millis(200));
        assert!(client.key("old").await.expect("fetch").is_some());
        served.lock().expect("lock").retain(|k| k["kid"] != "old");
        // Within the refresh period the set fetched before is used.
        assert!(client.key("old").await.expect("cached").is_some());
        // Once the period is over, the set is fetched again and the key is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while client.key("old").await.expect("refetch").is_some() {
            assert!(Instant::now() < deadline, "the removed key still verifies");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(client.key("new").await.expect("kept").is_some());
    }
}
