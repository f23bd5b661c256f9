//! `USE_VAULT=true`: the services' secrets come from Vault KV v2 first
//! (`{VAULT_KV_MOUNT}/data/{VAULT_KV_PREFIX}/{NAME}`, field `value`; prefix
//! `saas-project/{ENVIRONMENT}` by default), falling back to the environment (docs/ARCHITECTURE.md,
//! Configuration). Vault is reached with AppRole (`VAULT_ADDR`, `VAULT_ROLE_ID`,
//! `VAULT_SECRET_ID`, each also as `_FILE`; `VAULT_NAMESPACE`, `VAULT_TIMEOUT_MS`). A Vault
//! that cannot answer stops the service at start, naming it: it never starts on
//! whatever the environment holds instead.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::{ConfigErrors, ConfigReader, EnvSource, Secret};

/// The settings that are secrets, looked up in Vault.
pub const SECRET_NAMES: &[&str] = &[
    "DATABASE_URL",
    "DATABASE_ADMIN_URL",
    "REDIS_URL",
    "INTERNAL_SERVICE_TOKEN",
    "JWT_PRIVATE_KEY",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "SMTP_URL",
    "SECRETS_KEYRING",
];

/// Values from Vault first, then the environment.
pub struct VaultOverlay<'a> {
    found: HashMap<String, String>,
    env: &'a dyn EnvSource,
}

impl EnvSource for VaultOverlay<'_> {
    fn var(&self, key: &str) -> Option<String> {
        if let Some(value) = self.found.get(key) {
            return Some(value.clone());
        }
        // A secret Vault holds must not also come from a `_FILE` of the environment.
        if let Some(name) = key.strip_suffix("_FILE") {
            if self.found.contains_key(name) {
                return None;
            }
        }
        self.env.var(key)
    }

    fn vars(&self) -> HashMap<String, String> {
        let mut vars = self.env.vars();
        for (name, value) in &self.found {
            vars.remove(&format!("{name}_FILE"));
            vars.insert(name.clone(), value.clone());
        }
        vars
    }
}

/// `None` without `USE_VAULT=true`; else the overlay, or the errors naming what failed.
pub fn overlay<'a>(env: &'a dyn EnvSource) -> Result<Option<VaultOverlay<'a>>, ConfigErrors> {
    let Some((settings, prefix)) = settings(env)? else {
        return Ok(None);
    };
    let mut r = ConfigReader::new(env);
    let found = match fetch(settings, prefix) {
        Ok(found) => found,
        Err(e) => {
            r.check(
                "VAULT_ADDR",
                false,
                &format!("Vault could not give the secrets: {e}"),
            );
            return r.finish(None).map(|_: Option<()>| None);
        }
    };
    r.finish(Some(VaultOverlay { found, env }))
}

/// How Vault KV is reached (`None` without `USE_VAULT=true`), and the prefix of the
/// platform's secrets: for the settings read at start ([`overlay`]) and for those
/// named later (the database servers' URL settings, `tenant_db::ServerUrls`).
pub fn settings(
    env: &dyn EnvSource,
) -> Result<Option<(secrets::VaultSettings, String)>, ConfigErrors> {
    let mut r = ConfigReader::new(env);
    let use_vault: bool = r.optional("USE_VAULT", false);
    if !use_vault {
        return r.finish(None);
    }
    let addr: String = r.required("VAULT_ADDR");
    let role_id: Secret<String> = r.required("VAULT_ROLE_ID");
    let secret_id: Secret<String> = r.required("VAULT_SECRET_ID");
    let namespace: Option<String> = r.maybe("VAULT_NAMESPACE");
    let timeout_ms: u64 = r.optional("VAULT_TIMEOUT_MS", 5000);
    let kv_mount: String = r.optional("VAULT_KV_MOUNT", "secret".to_owned());
    let environment: String = r.optional("ENVIRONMENT", "development".to_owned());
    let prefix: String = r.optional(
        "VAULT_KV_PREFIX",
        secrets::SecretSource::default_prefix(&environment),
    );
    let url = url::Url::parse(&addr)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"));
    r.check(
        "VAULT_ADDR",
        url.is_some() || addr.is_empty(),
        "must be an http(s) URL",
    );
    let (Some(url), true) = (url, r.is_clean()) else {
        return r.finish(None).map(|_: Option<()>| None);
    };
    let mut settings =
        secrets::VaultSettings::new(url, role_id.expose().clone(), secret_id.expose().clone());
    settings.namespace = namespace;
    settings.timeout = Duration::from_millis(timeout_ms);
    settings.kv_mount = kv_mount;
    r.finish(Some((settings, prefix)))
}

/// Every secret of [`SECRET_NAMES`] Vault holds (on a runtime of its own: settings are
/// read before the service's runtime exists).
fn fetch(
    settings: secrets::VaultSettings,
    prefix: String,
) -> Result<HashMap<String, String>, secrets::SecretsError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| secrets::SecretsError::Unavailable(e.to_string()))?;
    runtime.block_on(async move {
        let client = secrets::VaultClient::new(settings)?;
        client.authenticate().await?;
        let source = secrets::SecretSource::with_vault(client, prefix);
        let mut found = HashMap::new();
        for name in SECRET_NAMES {
            if let Some(value) = source.vault_only(name).await? {
                found.insert((*name).to_owned(), value);
            }
        }
        Ok(found)
    })
}
