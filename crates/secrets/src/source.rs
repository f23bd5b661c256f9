//! Secrets at start: Vault KV first (when configured), then the process environment
//! (`NAME`, or the file named by `NAME_FILE`).
//!
//! Vault layout: one KV v2 secret per name, `{kv_mount}/data/{prefix}/{NAME}`, whose
//! `value` field is the secret, e.g.
//! `vault kv put secret/saas-project/production/AZURE_CLIENT_SECRET value=…`.
//! An empty value counts as unset, here as in the environment.

use crate::{SecretsError, VaultClient};

/// The field of a KV secret that holds the value.
const VALUE_FIELD: &str = "value";

/// Reads named secrets from Vault KV, falling back to the environment.
#[derive(Debug, Clone)]
pub struct SecretSource {
    vault: Option<VaultKv>,
}

#[derive(Debug, Clone)]
struct VaultKv {
    client: VaultClient,
    prefix: String,
}

impl SecretSource {
    /// Without Vault: the environment only.
    pub fn environment_only() -> Self {
        Self { vault: None }
    }

    /// Vault KV under `prefix` (below the KV mount), then the environment.
    pub fn with_vault(client: VaultClient, prefix: impl Into<String>) -> Self {
        Self {
            vault: Some(VaultKv {
                client,
                prefix: prefix.into().trim_matches('/').to_owned(),
            }),
        }
    }

    /// The platform's prefix: `saas-project/{environment}`.
    pub fn default_prefix(environment: &str) -> String {
        format!("saas-project/{environment}")
    }

    /// The secret `name`, or `None` when neither Vault nor the environment has it.
    /// Vault being unreachable is an error: falling back then could start a service
    /// with a stale or development value.
    pub async fn get(&self, name: &str) -> Result<Option<String>, SecretsError> {
        if let Some(value) = self.vault_only(name).await? {
            return Ok(Some(value));
        }
        from_environment(name).await
    }

    /// The secret `name` from Vault alone (`None` without Vault or when Vault has no
    /// such secret), for callers that read the environment themselves.
    pub async fn vault_only(&self, name: &str) -> Result<Option<String>, SecretsError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(SecretsError::InvalidName(format!(
                "secret {name:?}: use letters, digits and '_'"
            )));
        }
        let Some(vault) = &self.vault else {
            return Ok(None);
        };
        let path = if vault.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", vault.prefix)
        };
        let Some(fields) = vault.client.kv_read(&path).await? else {
            return Ok(None);
        };
        let value = fields.get(VALUE_FIELD).ok_or_else(|| {
            SecretsError::BadResponse(format!("KV secret {path} has no {VALUE_FIELD:?} field"))
        })?;
        if value.is_empty() {
            return Ok(None);
        }
        tracing::debug!(secret = name, source = "vault", "secret read");
        Ok(Some(value.clone()))
    }
}

/// `NAME`, or the content of the file named by `NAME_FILE` without its trailing newline.
async fn from_environment(name: &str) -> Result<Option<String>, SecretsError> {
    from_variables(name, |key| std::env::var(key).ok()).await
}

/// `NAME`, or the content of the file named by `NAME_FILE`, from the variables `lookup`
/// gives (a service's settings), as for the process environment.
pub async fn from_variables(
    name: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, SecretsError> {
    let file_var = format!("{name}_FILE");
    let direct = lookup(name).filter(|value| !value.is_empty());
    let file = lookup(&file_var).filter(|path| !path.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(SecretsError::Environment {
            name: name.to_owned(),
            reason: format!("set either {name} or {file_var}, not both"),
        }),
        (Some(value), None) => {
            tracing::debug!(secret = name, source = "environment", "secret read");
            Ok(Some(value))
        }
        (None, Some(path)) => {
            let content = tokio::fs::read_to_string(&path).await.map_err(|err| {
                SecretsError::Environment {
                    name: file_var.clone(),
                    reason: format!("cannot read {path}: {err}"),
                }
            })?;
            let value = content.trim_end_matches(['\n', '\r']);
            tracing::debug!(secret = name, source = "file", "secret read");
            Ok((!value.is_empty()).then(|| value.to_owned()))
        }
        (None, None) => Ok(None),
    }
}
