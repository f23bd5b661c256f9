//! The crate's one error type. No variant ever carries a key, a token, a `secret_id` or a
//! plaintext: only positions, key ids, paths and Vault's own error messages.

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The keyring string is malformed; the message names the entry by position.
    #[error("invalid keyring: {0}")]
    InvalidKeyring(String),
    /// A ciphertext names a key id the keyring does not hold.
    #[error("no key with id {0:?} in the keyring")]
    UnknownKeyId(String),
    /// The stored ciphertext is not valid base64 (or not a Vault ciphertext string).
    #[error("ciphertext is malformed: {0}")]
    MalformedCiphertext(&'static str),
    /// The ciphertext is shorter than nonce + tag.
    #[error("ciphertext is too short: {len} bytes, at least {min} expected")]
    CiphertextTooShort { len: usize, min: usize },
    /// The tag does not verify: wrong key, wrong associated data, or altered ciphertext.
    #[error("ciphertext does not authenticate (wrong key, wrong associated data, or altered)")]
    DecryptFailed,
    /// Sealing failed (the random generator or the cipher refused).
    #[error("encryption failed: {0}")]
    EncryptFailed(&'static str),
    /// The decrypted bytes are not UTF-8 where a string was expected.
    #[error("decrypted value is not UTF-8")]
    NotUtf8,
    /// A ciphertext belongs to a backend this process is not configured with.
    #[error("cannot open a ciphertext of key id {key_id:?}: {reason}")]
    BackendNotConfigured {
        key_id: String,
        reason: &'static str,
    },
    /// Vault settings cannot work (bad address, empty mount or key name…).
    #[error("invalid Vault settings: {0}")]
    InvalidSettings(String),
    /// Vault cannot be reached, timed out, or answered 5xx/429.
    #[error("Vault unavailable: {0}")]
    Unavailable(String),
    /// Vault refused the credentials, or a fresh token was still refused (403).
    #[error("Vault denied access: {0}")]
    Denied(String),
    /// Vault answered 404 where something must exist.
    #[error("not found in Vault: {0}")]
    NotFound(String),
    /// Vault refused the request itself (400 and other 4xx), with Vault's messages.
    #[error("Vault rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Vault answered something that does not follow its API.
    #[error("unexpected answer from Vault: {0}")]
    BadResponse(String),
    /// A secret name, KV path or transit key name that cannot be used.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// `NAME` and `NAME_FILE` conflict, or `NAME_FILE` cannot be read.
    #[error("{name}: {reason}")]
    Environment { name: String, reason: String },
}
