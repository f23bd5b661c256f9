//! How to reach Vault. Built by the service from its environment (the service's config
//! module names the variables); `Debug` never shows the `secret_id`.

use std::fmt;
use std::time::Duration;

use url::Url;

/// Where Vault is, how to log in (AppRole), and where the engines are mounted.
#[derive(Clone)]
pub struct VaultSettings {
    /// Vault's base address, e.g. `https://vault.internal:8200` (a path prefix is kept).
    pub addr: Url,
    pub role_id: String,
    pub secret_id: String,
    /// Vault Enterprise namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Deadline for connecting and for each whole request.
    pub timeout: Duration,
    /// Mount of the AppRole auth method (default `approle`).
    pub approle_mount: String,
    /// Mount of the KV version 2 engine (default `secret`).
    pub kv_mount: String,
    /// Mount of the transit engine (default `transit`).
    pub transit_mount: String,
}

impl VaultSettings {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Settings with the default mounts, no namespace and a 5 s timeout.
    pub fn new(addr: Url, role_id: impl Into<String>, secret_id: impl Into<String>) -> Self {
        Self {
            addr,
            role_id: role_id.into(),
            secret_id: secret_id.into(),
            namespace: None,
            timeout: Self::DEFAULT_TIMEOUT,
            approle_mount: "approle".into(),
            kv_mount: "secret".into(),
            transit_mount: "transit".into(),
        }
    }
}

impl fmt::Debug for VaultSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSettings")
            .field("addr", &self.addr.as_str())
            .field("role_id", &self.role_id)
            .field("secret_id", &"[redacted]")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("approle_mount", &self.approle_mount)
            .field("kv_mount", &self.kv_mount)
            .field("transit_mount", &self.transit_mount)
            .finish()
    }
}
