//! What a service seals its stored secrets with: the local keyring or Vault transit,
//! chosen by configuration, plus an optional keyring kept only to open older local
//! ciphertexts after a move to Vault.

use std::borrow::Cow;

use crate::{Keyring, Sealed, SecretsError, VaultClient};

/// Key id prefix of transit ciphertexts: `vault-transit:{transit key name}`.
pub const TRANSIT_KEY_ID_PREFIX: &str = "vault-transit:";

/// Where new ciphertexts are sealed.
#[derive(Debug)]
pub enum CipherBackend {
    Local(Keyring),
    Transit { client: VaultClient, key: String },
}

/// Seals and opens strings, each bound to its place by associated data.
#[derive(Debug)]
pub struct Cipher {
    backend: CipherBackend,
    fallback_keyring: Option<Keyring>,
}

impl Cipher {
    pub fn new(backend: CipherBackend) -> Self {
        Self {
            backend,
            fallback_keyring: None,
        }
    }

    pub fn local(keyring: Keyring) -> Self {
        Self::new(CipherBackend::Local(keyring))
    }

    pub fn transit(client: VaultClient, key: impl Into<String>) -> Self {
        Self::new(CipherBackend::Transit {
            client,
            key: key.into(),
        })
    }

    /// A keyring used only to open local ciphertexts (moving from the keyring to Vault),
    /// or keys beyond the main keyring's.
    pub fn with_fallback_keyring(mut self, keyring: Keyring) -> Self {
        self.fallback_keyring = Some(keyring);
        self
    }

    /// The key id new ciphertexts get.
    pub fn active_key_id(&self) -> Cow<'_, str> {
        match &self.backend {
            CipherBackend::Local(keyring) => Cow::Borrowed(keyring.active_key_id()),
            CipherBackend::Transit { key, .. } => {
                Cow::Owned(format!("{TRANSIT_KEY_ID_PREFIX}{key}"))
            }
        }
    }

    /// Whether a stored value was sealed with the active key; if not, re-seal it when
    /// convenient (for example on the next write) so old keys can be retired. Transit key
    /// versions are Vault's business (`transit/rewrap`), not visible here.
    pub fn is_active_key_id(&self, key_id: &str) -> bool {
        key_id == self.active_key_id()
    }

    /// Seals `plaintext` with the active backend, bound to `aad`.
    pub async fn encrypt(&self, plaintext: &str, aad: &[u8]) -> Result<Sealed, SecretsError> {
        match &self.backend {
            CipherBackend::Local(keyring) => keyring.encrypt(plaintext.as_bytes(), aad),
            CipherBackend::Transit { client, key } => {
                let ciphertext = client
                    .transit_encrypt(key, plaintext.as_bytes(), aad)
                    .await?;
                Ok(Sealed {
                    key_id: format!("{TRANSIT_KEY_ID_PREFIX}{key}"),
                    ciphertext,
                })
            }
        }
    }

    /// Opens a stored value with the backend its key id names. A value that does not
    /// authenticate (altered, or moved to another row/column) is
    /// [`SecretsError::DecryptFailed`] from the keyring, and Vault's 400 as
    /// [`SecretsError::Rejected`] from transit.
    pub async fn decrypt(
        &self,
        sealed_key_id: &str,
        ciphertext: &str,
        aad: &[u8],
    ) -> Result<String, SecretsError> {
        let plaintext = if let Some(transit_key) = sealed_key_id.strip_prefix(TRANSIT_KEY_ID_PREFIX)
        {
            let CipherBackend::Transit { client, .. } = &self.backend else {
                return Err(SecretsError::BackendNotConfigured {
                    key_id: sealed_key_id.to_owned(),
                    reason: "it was sealed by Vault transit, and Vault is not configured",
                });
            };
            // The key named in the id, not the configured one: values sealed before a
            // change of transit key still open.
            client.transit_decrypt(transit_key, ciphertext, aad).await?
        } else {
            self.keyring_for(sealed_key_id)?
                .decrypt(sealed_key_id, ciphertext, aad)?
        };
        String::from_utf8(plaintext).map_err(|_| SecretsError::NotUtf8)
    }

    fn keyring_for(&self, key_id: &str) -> Result<&Keyring, SecretsError> {
        let primary = match &self.backend {
            CipherBackend::Local(keyring) => Some(keyring),
            CipherBackend::Transit { .. } => None,
        };
        let keyrings: Vec<&Keyring> = primary
            .into_iter()
            .chain(self.fallback_keyring.as_ref())
            .collect();
        if let Some(keyring) = keyrings.iter().find(|keyring| keyring.contains(key_id)) {
            return Ok(keyring);
        }
        if keyrings.is_empty() {
            return Err(SecretsError::BackendNotConfigured {
                key_id: key_id.to_owned(),
                reason: "it was sealed by a local keyring, and no keyring is configured",
            });
        }
        Err(SecretsError::UnknownKeyId(key_id.to_owned()))
    }
}
