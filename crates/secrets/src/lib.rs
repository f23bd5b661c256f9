//! Secrets at rest and secrets at start: a local AES-256-GCM keyring, a HashiCorp Vault
//! client (AppRole, KV v2, transit), the [`Cipher`] the SSO service seals Azure client
//! secrets and OAuth tokens with, and the [`SecretSource`] that reads settings from Vault
//! with the process environment as fallback.
//!
//! # Keyring string
//!
//! `SECRETS_KEYRING`-style value: comma-separated `id=key` entries, for example
//! `k2026a=BASE64KEY,k2025=BASE64KEY2`.
//! - id: `[A-Za-z0-9_.-]{1,64}`, unique within the keyring;
//! - key: standard base64 (with padding) of exactly 32 random bytes
//!   ([`Keyring::generate_key`] makes one);
//! - the **first** entry is the active key: it seals everything new; every entry opens.
//!
//! Rotation: put a new key first and keep the old ones after it until every row has been
//! re-sealed (see [`Cipher::is_active_key_id`]); then drop the old ones.
//! Parse errors name the entry by position and never echo ids or key material.
//!
//! # Sealed values
//!
//! A [`Sealed`] value is what gets stored: `key_id` in one column, `ciphertext` in another.
//! - Local keyring: `key_id` is the keyring id (`k2026a`); `ciphertext` is
//!   `base64(nonce[12] || AES-256-GCM ciphertext || tag[16])`, standard base64 with
//!   padding, the nonce random per encryption.
//! - Vault transit: `key_id` is `vault-transit:{transit key name}`; `ciphertext` is
//!   Vault's own `vault:v{version}:…` string (the key version lives in it, so Vault key
//!   rotation needs nothing here). The `:` keeps transit ids apart from keyring ids.
//!
//! Both backends bind the ciphertext to its place with associated data (`aad`), for example
//! `b"user_azure_identities.access_token:<row id>"`: a ciphertext copied to another row
//! or column does not open. Transit passes it as Vault's `associated_data` parameter
//! (AEAD key types such as the default `aes256-gcm96`; the parameter exists since late
//! 2022, and an older Vault ignores it, so the binding then rests on the key id and row
//! alone); an empty `aad` is not sent.
//!
//! # Vault paths (Vault's HTTP API)
//!
//! - login: `POST {addr}/v1/auth/{approle_mount}/login` `{"role_id","secret_id"}`;
//! - renewal: `POST {addr}/v1/auth/token/renew-self` `{}`;
//! - KV v2 read: `GET {addr}/v1/{kv_mount}/data/{path}` → `data.data`; 404 = absent;
//! - transit: `POST {addr}/v1/{transit_mount}/encrypt/{key}` `{"plaintext"}` and
//!   `POST {addr}/v1/{transit_mount}/decrypt/{key}` `{"ciphertext"}` (base64 plaintexts).
//!
//! Every request carries `X-Vault-Token` (not the login) and `X-Vault-Namespace` when a
//! namespace is set, and has a deadline (`VaultSettings::timeout`, for connecting and for
//! the whole request).
//!
//! # Token renewal policy
//!
//! Checked lazily before every call, and optionally ahead of time by
//! [`VaultClient::spawn_renewal`]:
//! - once two thirds of the token's lease have passed, a renewable token is renewed with
//!   `renew-self`; a token that is not renewable, whose renewal fails, or whose renewed
//!   lease is under half of the lease of its login (its `max_ttl` is near) is replaced by
//!   a new login;
//! - if neither works but the current token has not expired yet, it is still used (Vault
//!   may be back before it expires), and the next call tries again;
//! - a call answered 403 (revoked or expired token) logs in again and is retried once; a
//!   second 403 is [`SecretsError::Denied`];
//! - a lease of 0 (a token that never expires) is never renewed.
//!
//! # Settings from Vault
//!
//! [`SecretSource::get`] reads the KV v2 secret `{prefix}/{NAME}` (prefix usually
//! `saas-project/{environment}`, see [`SecretSource::default_prefix`]) and takes its
//! `value` field; when Vault has no such secret it falls back to `NAME`, or to the file
//! named by `NAME_FILE`. Vault being unreachable is an error, never a silent fallback.
//!
//! Tokens, `secret_id`s, keys and plaintexts appear in no error, log line or `Debug`
//! output.

mod cipher;
mod error;
mod keyring;
mod source;
mod vault;

pub use cipher::{Cipher, CipherBackend, TRANSIT_KEY_ID_PREFIX};

/// A keyring for development and tests only (services refuse it in production): the
/// 32 bytes `development-key-not-for-prod!!!!` under the id `dev`.
pub const DEVELOPMENT_KEYRING: &str = "dev=ZGV2ZWxvcG1lbnQta2V5LW5vdC1mb3ItcHJvZCEhISE=";
pub use error::SecretsError;
pub use keyring::{Keyring, Sealed};
pub use source::{from_variables, SecretSource};
pub use vault::{VaultClient, VaultSettings};
