//! HashiCorp Vault over its HTTP API: AppRole login and token care, KV v2 reads, transit
//! encrypt/decrypt. The renewal policy is described in the crate documentation.

mod answer;
mod auth;
mod settings;
mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use url::Url;

use answer::{describe, expect_success, redirect_policy, vault_messages, Answer};
pub use settings::VaultSettings;
use token::Token;

use crate::SecretsError;

const TOKEN_HEADER: &str = "X-Vault-Token";
const NAMESPACE_HEADER: &str = "X-Vault-Namespace";

/// A Vault client holding one AppRole token. Cheap to clone (one shared token).
#[derive(Clone)]
pub struct VaultClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    settings: VaultSettings,
    namespace: Option<HeaderValue>,
    token: Mutex<Option<Token>>,
}

impl VaultClient {
    /// Checks the settings and builds the HTTP client; does not contact Vault (see
    /// [`VaultClient::authenticate`] to fail fast at start).
    pub fn new(settings: VaultSettings) -> Result<Self, SecretsError> {
        let mut settings = settings;
        if !matches!(settings.addr.scheme(), "http" | "https") || settings.addr.cannot_be_a_base() {
            return Err(SecretsError::InvalidSettings(
                "the Vault address must be an http:// or https:// URL".into(),
            ));
        }
        settings.addr.set_query(None);
        settings.addr.set_fragment(None);
        if settings.role_id.is_empty() || settings.secret_id.is_empty() {
            return Err(SecretsError::InvalidSettings(
                "the AppRole role_id and secret_id must not be empty".into(),
            ));
        }
        if settings.timeout.is_zero() {
            return Err(SecretsError::InvalidSettings(
                "the timeout must be above zero".into(),
            ));
        }
        for (what, mount) in [
            ("approle mount", &settings.approle_mount),
            ("KV mount", &settings.kv_mount),
            ("transit mount", &settings.transit_mount),
        ] {
            check_path(mount).map_err(|reason| {
                SecretsError::InvalidSettings(format!("the {what} {mount:?} {reason}"))
            })?;
        }
        let namespace = match settings.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            None => None,
            Some(namespace) => Some(HeaderValue::from_str(namespace).map_err(|_| {
                SecretsError::InvalidSettings("the namespace is not a valid header value".into())
            })?),
        };
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(redirect_policy())
            .build()
            .map_err(|err| {
                SecretsError::InvalidSettings(format!("HTTP client: {}", describe(&err)))
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                settings,
                namespace,
                token: Mutex::new(None),
            }),
        })
    }

    /// Makes sure a valid token is held: logs in, or renews, if needed. Use it at start
    /// (and in `check-config`) so wrong credentials stop the service at once.
    pub async fn authenticate(&self) -> Result<(), SecretsError> {
        self.current_token().await.map(drop)
    }

    /// Reads the latest version of the KV v2 secret at `path` (below the KV mount):
    /// its `data.data` fields, or `None` when there is no such secret.
    pub async fn kv_read(
        &self,
        path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, SecretsError> {
        check_path(path)
            .map_err(|reason| SecretsError::InvalidName(format!("KV path {path:?} {reason}")))?;
        let url = self.url(&[&self.inner.settings.kv_mount, "data", path])?;
        let answer = self.call("KV read", Method::GET, url, None).await?;
        if answer.status == StatusCode::NOT_FOUND {
            // KV v2 answers a missing secret with `{"errors":[]}`; a message means the
            // route itself is unknown (no such mount).
            let messages = vault_messages(&answer.body);
            if messages.is_empty() {
                return Ok(None);
            }
            return Err(SecretsError::NotFound(format!(
                "KV read {path}: {messages}"
            )));
        }
        let body = expect_success("KV read", answer)?;
        let fields = match body.get("data").and_then(|data| data.get("data")) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Object(fields)) => fields,
            Some(_) => {
                return Err(SecretsError::BadResponse(format!(
                    "KV read {path}: `data.data` is not an object"
                )))
            }
        };
        fields
            .iter()
            .map(|(name, value)| match value {
                Value::String(text) => Ok((name.clone(), text.clone())),
                _ => Err(SecretsError::BadResponse(format!(
                    "KV read {path}: field {name:?} is not a string"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// Encrypts with the transit key `key`; returns Vault's `vault:v{n}:…` ciphertext.
    /// A non-empty `aad` is sent as `associated_data` and must be given again to decrypt.
    pub async fn transit_encrypt(
        &self,
        key: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<String, SecretsError> {
        let mut body = json!({ "plaintext": STANDARD.encode(plaintext) });
        add_associated_data(&mut body, aad);
        let url = self.transit_url("encrypt", key)?;
        let answer = self
            .call("transit encrypt", Method::POST, url, Some(&body))
            .await?;
        let body = expect_success("transit encrypt", answer)?;
        body.get("data")
            .and_then(|data| data.get("ciphertext"))
            .and_then(Value::as_str)
            .filter(|ciphertext| ciphertext.starts_with("vault:v"))
            .map(str::to_owned)
            .ok_or_else(|| {
                SecretsError::BadResponse(
                    "transit encrypt: `data.ciphertext` is missing or not `vault:v…`".into(),
                )
            })
    }

    /// Decrypts a transit ciphertext of key `key` with the `aad` it was sealed with.
    pub async fn transit_decrypt(
        &self,
        key: &str,
        ciphertext: &str,
        aad: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        if !ciphertext.starts_with("vault:") {
            return Err(SecretsError::MalformedCiphertext(
                "a transit ciphertext starts with `vault:`",
            ));
        }
        let mut body = json!({ "ciphertext": ciphertext });
        add_associated_data(&mut body, aad);
        let url = self.transit_url("decrypt", key)?;
        let answer = self
            .call("transit decrypt", Method::POST, url, Some(&body))
            .await?;
        let body = expect_success("transit decrypt", answer)?;
        let encoded = body
            .get("data")
            .and_then(|data| data.get("plaintext"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                SecretsError::BadResponse("transit decrypt: `data.plaintext` is missing".into())
            })?;
        STANDARD.decode(encoded).map_err(|_| {
            SecretsError::BadResponse("transit decrypt: `data.plaintext` is not base64".into())
        })
    }

    /// Keeps the token fresh in the background (renewal two thirds into each lease, new
    /// login when needed), so that idle periods do not let it lapse. Optional: every call
    /// checks the token anyway. The task ends by itself once every clone of this client
    /// is dropped; abort the handle to stop it earlier.
    pub fn spawn_renewal(&self) -> JoinHandle<()> {
        let inner = Arc::downgrade(&self.inner);
        tokio::spawn(auth::renewal_loop(inner))
    }

    fn transit_url(&self, operation: &str, key: &str) -> Result<Url, SecretsError> {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            return Err(SecretsError::InvalidName(format!(
                "transit key name {key:?} must be one non-empty path segment"
            )));
        }
        self.url(&[&self.inner.settings.transit_mount, operation, key])
    }

    /// `{addr}/v1/{parts…}`, each `/`-separated segment percent-encoded.
    fn url(&self, parts: &[&str]) -> Result<Url, SecretsError> {
        let mut url = self.inner.settings.addr.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                SecretsError::InvalidSettings("the Vault address cannot take a path".into())
            })?;
            path.pop_if_empty().push("v1");
            for part in parts {
                path.extend(part.split('/').filter(|segment| !segment.is_empty()));
            }
        }
        Ok(url)
    }

    /// A request with the token; a 403 (revoked or expired token) logs in again and
    /// retries once.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Answer, SecretsError> {
        let token = self.current_token().await?;
        let answer = self
            .send(operation, method.clone(), url.clone(), Some(&token), body)
            .await?;
        if answer.status != StatusCode::FORBIDDEN {
            return Ok(answer);
        }
        tracing::info!(
            operation,
            "Vault answered 403; logging in again and retrying once"
        );
        self.discard_token(&token).await;
        let token = self.current_token().await?;
        let answer = self
            .send(operation, method, url, Some(&token), body)
            .await?;
        if answer.status == StatusCode::FORBIDDEN {
            return Err(SecretsError::Denied(format!(
                "{operation}: {}",
                vault_messages(&answer.body)
            )));
        }
        Ok(answer)
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        token: Option<&HeaderValue>,
        body: Option<&Value>,
    ) -> Result<Answer, SecretsError> {
        let mut request = self.inner.http.request(method, url);
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token.clone());
        }
        if let Some(namespace) = &self.inner.namespace {
            request = request.header(NAMESPACE_HEADER, namespace.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let unavailable = |err: reqwest::Error| {
            let reason = if err.is_timeout() {
                format!(
                    "no answer within {} ms",
                    self.inner.settings.timeout.as_millis()
                )
            } else {
                describe(&err)
            };
            SecretsError::Unavailable(format!("{operation}: {reason}"))
        };
        let response = request.send().await.map_err(unavailable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unavailable)?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("settings", &self.inner.settings)
            .field("token", &"[redacted]")
            .finish()
    }
}

fn add_associated_data(body: &mut Value, aad: &[u8]) {
    if !aad.is_empty() {
        body["associated_data"] = Value::String(STANDARD.encode(aad));
    }
}

/// A mount or secret path: `/`-separated, no empty, `.` or `..` segment.
fn check_path(path: &str) -> Result<(), &'static str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err("is empty");
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("has an empty, `.` or `..` segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(addr: &str) -> VaultClient {
        let settings = VaultSettings::new(Url::parse(addr).expect("url"), "role", "s3cr3t-id");
        VaultClient::new(settings).expect("client")
    }

    #[test]
    fn urls_keep_the_address_path_and_encode_segments() {
        let vault = client("https://vault.example/prefix/?x=1");
        assert_eq!(
            vault
                .url(&["secret", "data", "saas-project/prod/DB_URL"])
                .expect("url")
                .as_str(),
            "https://vault.example/prefix/v1/secret/data/saas-project/prod/DB_URL"
        );
        assert_eq!(
            vault.transit_url("encrypt", "a b").expect("url").as_str(),
            "https://vault.example/prefix/v1/transit/encrypt/a%20b"
        );
        assert!(vault.transit_url("encrypt", "../x").is_err());
    }

    #[test]
    fn paths_with_dot_segments_are_refused() {
        assert!(check_path("saas-project/prod/X").is_ok());
        assert!(check_path("a/../b").is_err());
        assert!(check_path("a//b").is_err());
        assert!(check_path("").is_err());
    }

    #[test]
    fn debug_redacts_the_secret_id() {
        let text = format!("{:?}", client("http://127.0.0.1:8200"));
        assert!(!text.contains("s3cr3t-id"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let mut settings =
            VaultSettings::new(Url::parse("ftp://x").expect("url"), "role", "secret");
        assert!(matches!(
            VaultClient::new(settings.clone()),
            Err(SecretsError::InvalidSettings(_))
        ));
        settings.addr = Url::parse("http://x").expect("url");
        settings.kv_mount = "../sys".into();
        assert!(matches!(
            VaultClient::new(settings),
            Err(SecretsError::InvalidSettings(_))
        ));
    }
}
