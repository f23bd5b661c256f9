//! The local AES-256-GCM keyring: parsed from `id=base64key,…`, the first key seals,
//! every key opens. Layout of a sealed value: `base64(nonce[12] || ciphertext || tag[16])`.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::SecretsError;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;
const MAX_KEY_ID_LEN: usize = 64;

/// What gets stored: the id of the key that sealed it, beside the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub ciphertext: String,
}

/// AES-256-GCM keys by id; the first one is the active (sealing) key.
pub struct Keyring {
    /// Never empty: parsing refuses an empty keyring.
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl Keyring {
    /// Parses `id=base64key[,id=base64key…]`; see the crate documentation.
    pub fn parse(text: &str) -> Result<Self, SecretsError> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        if text.trim().is_empty() {
            return Err(SecretsError::InvalidKeyring("it is empty".into()));
        }
        for (index, entry) in text.split(',').enumerate() {
            let position = index + 1;
            let entry = entry.trim();
            let invalid =
                |reason: &str| SecretsError::InvalidKeyring(format!("entry {position}: {reason}"));
            if entry.is_empty() {
                return Err(invalid("is empty (stray comma?)"));
            }
            // Neither part is ever echoed: a key pasted without its id would show up as
            // the "id".
            let Some((id, encoded)) = entry.split_once('=') else {
                return Err(invalid("is not of the form id=base64key"));
            };
            let id = id.trim();
            if !is_valid_key_id(id) {
                return Err(invalid("key id must be 1 to 64 of [A-Za-z0-9_.-]"));
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| invalid("key is not valid standard base64"))?;
            if bytes.len() != KEY_LEN {
                return Err(invalid(&format!(
                    "key is {} bytes, AES-256 needs exactly {KEY_LEN}",
                    bytes.len()
                )));
            }
            if let Some(first) = keys.iter().position(|(known, _)| known == id) {
                return Err(invalid(&format!(
                    "repeats the key id of entry {}",
                    first + 1
                )));
            }
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| invalid("key is not a valid AES-256 key"))?;
            keys.push((id.to_owned(), LessSafeKey::new(key)));
        }
        Ok(Self {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// A new random key, base64: the value to put after `id=` in a keyring string.
    pub fn generate_key() -> Result<String, SecretsError> {
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SecretsError::EncryptFailed("the system random generator failed"))?;
        Ok(STANDARD.encode(key))
    }

    /// The id of the key that seals.
    pub fn active_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Every id, the active one first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// Whether `key_id` is one of this keyring's keys.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.iter().any(|(id, _)| id == key_id)
    }

    /// Seals `plaintext` with the active key, bound to `aad`.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Sealed, SecretsError> {
        let (key_id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SecretsError::EncryptFailed("the system random generator failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| SecretsError::EncryptFailed("AES-256-GCM refused the input"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(Sealed {
            key_id: key_id.clone(),
            ciphertext: STANDARD.encode(out),
        })
    }

    /// Opens a ciphertext sealed by the key `key_id` with the same `aad`.
    pub fn decrypt(
        &self,
        key_id: &str,
        ciphertext: &str,
        aad: &[u8],
    ) -> Result<Vec<u8>, SecretsError> {
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .map(|(_, key)| key)
            .ok_or_else(|| SecretsError::UnknownKeyId(key_id.to_owned()))?;
        let mut bytes = STANDARD
            .decode(ciphertext.trim())
            .map_err(|_| SecretsError::MalformedCiphertext("not valid standard base64"))?;
        let min = NONCE_LEN + TAG_LEN;
        if bytes.len() < min {
            return Err(SecretsError::CiphertextTooShort {
                len: bytes.len(),
                min,
            });
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[..NONCE_LEN]);
        let plaintext_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut bytes[NONCE_LEN..],
            )
            .map_err(|_| SecretsError::DecryptFailed)?
            .len();
        bytes.drain(..NONCE_LEN);
        bytes.truncate(plaintext_len);
        Ok(bytes)
    }
}

impl FromStr for Keyring {
    type Err = SecretsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("active_key_id", &self.active_key_id())
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// `[A-Za-z0-9_.-]{1,64}`.
pub(crate) fn is_valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_follow_the_documented_alphabet() {
        assert!(is_valid_key_id("k2026a"));
        assert!(is_valid_key_id("prod.2026-01_a"));
        assert!(is_valid_key_id(&"a".repeat(64)));
        assert!(!is_valid_key_id(""));
        assert!(!is_valid_key_id(&"a".repeat(65)));
        assert!(!is_valid_key_id("vault-transit:x"));
        assert!(!is_valid_key_id("a b"));
    }

    #[test]
    fn an_entry_without_id_is_refused_without_echoing_it() {
        let key = Keyring::generate_key().expect("key");
        let error = Keyring::parse(&key).expect_err("no id");
        let message = error.to_string();
        assert!(message.contains("entry 1"), "{message}");
        assert!(!message.contains(key.trim_end_matches('=')), "{message}");
    }

    #[test]
    fn whitespace_around_entries_is_accepted() {
        let a = Keyring::generate_key().expect("key");
        let b = Keyring::generate_key().expect("key");
        let keyring = Keyring::parse(&format!(" a = {a} ,\n b={b}\n")).expect("parse");
        assert_eq!(keyring.key_ids().collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn an_empty_plaintext_round_trips() {
        let keyring =
            Keyring::parse(&format!("a={}", Keyring::generate_key().expect("key"))).expect("parse");
        let sealed = keyring.encrypt(b"", b"aad").expect("encrypt");
        assert_eq!(
            keyring
                .decrypt(&sealed.key_id, &sealed.ciphertext, b"aad")
                .expect("decrypt"),
            b""
        );
    }
}
