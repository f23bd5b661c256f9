//! Which PostgreSQL server holds a tenant database, and its URLs.
//!
//! A database server (docs/OPERATIONS.md, "Database servers") is known by an id and the
//! names of the settings that hold its URLs, never by the URLs: each service resolves
//! those names in its own settings, like any secret (Vault KV with `USE_VAULT=true`,
//! then `NAME` or the file named by `NAME_FILE`). The main database's server is always
//! there, under the ids and names of [`MAIN_SERVER_ID`], [`MAIN_URL_REF`] and
//! [`MAIN_ADMIN_URL_REF`], resolved from the service's own settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::{TenantDbError, TenantDbSettings};

/// The main database's own server, registered first by the main migrations.
pub const MAIN_SERVER_ID: Uuid = Uuid::from_u128(1);
/// The setting holding the main server's request-traffic URL.
pub const MAIN_URL_REF: &str = "DATABASE_URL";
/// The setting holding the main server's administration URL.
pub const MAIN_ADMIN_URL_REF: &str = "DATABASE_ADMIN_URL";

/// Resolves the settings named by database servers to URLs, once per name.
pub struct ServerUrls {
    main_url: String,
    main_admin_url: String,
    environment: Arc<HashMap<String, String>>,
    resolved: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for ServerUrls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerUrls").finish_non_exhaustive()
    }
}

impl ServerUrls {
    /// The main server's URLs come from `settings` (already read, Vault included);
    /// other names from the settings it kept (`TenantDbSettings::environment`).
    pub fn new(settings: &TenantDbSettings) -> Self {
        Self {
            main_url: settings.server_url.clone(),
            main_admin_url: settings.admin_server_url.clone(),
            environment: settings.environment.clone(),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The URL in the setting `name`: a PostgreSQL URL, or an error naming the setting
    /// (never its value). Values are kept for the life of the process: a changed URL
    /// takes a restart, as for `DATABASE_URL`.
    pub async fn resolve(&self, name: &str) -> Result<String, TenantDbError> {
        match name {
            MAIN_URL_REF => return Ok(self.main_url.clone()),
            MAIN_ADMIN_URL_REF => return Ok(self.main_admin_url.clone()),
            _ => {}
        }
        if let Some(url) = self.lock().get(name) {
            return Ok(url.clone());
        }
        let setting = |reason: String| TenantDbError::ServerSetting {
            name: name.to_owned(),
            reason,
        };
        let environment = &self.environment;
        let value = match self.in_vault(name).await.map_err(setting)? {
            Some(value) => Some(value),
            None => secrets::from_variables(name, |key| environment.get(key).cloned())
                .await
                .map_err(|e| setting(e.to_string()))?,
        };
        let value = value
            .ok_or_else(|| setting(format!("is not set (nor {name}_FILE) in this service")))?;
        check_url(&value).map_err(setting)?;
        self.lock().insert(name.to_owned(), value.clone());
        Ok(value)
    }

    /// The setting `name` from Vault KV, with `USE_VAULT=true` (as the service's
    /// secrets at start, `http_kit::vault_env`); `None` without Vault or when Vault has
    /// no such secret. A Vault that cannot answer is an error, never a fall-back to the
    /// environment.
    async fn in_vault(&self, name: &str) -> Result<Option<String>, String> {
        let environment: &HashMap<String, String> = &self.environment;
        let Some((settings, prefix)) =
            http_kit::vault_env::settings(environment).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let client = secrets::VaultClient::new(settings).map_err(|e| format!("Vault: {e}"))?;
        client
            .authenticate()
            .await
            .map_err(|e| format!("Vault: {e}"))?;
        secrets::SecretSource::with_vault(client, prefix)
            .vault_only(name)
            .await
            .map_err(|e| format!("Vault: {e}"))
    }

    /// Settings for a server whose URLs are in `url_ref` and `admin_url_ref`, with the
    /// pool limits and template of `base`. A service that administers no database
    /// (document, event-worker) needs only `url_ref`: without `admin_url_ref` it
    /// administers through `url_ref`.
    pub async fn settings_for(
        &self,
        base: &TenantDbSettings,
        url_ref: &str,
        admin_url_ref: Option<&str>,
    ) -> Result<TenantDbSettings, TenantDbError> {
        let url = self.resolve(url_ref).await?;
        let admin = match admin_url_ref {
            Some(name) => self.resolve(name).await?,
            None => url.clone(),
        };
        let mut settings = base.clone();
        settings.server_url = url;
        settings.admin_server_url = admin;
        Ok(settings)
    }

    /// Records in `pools` that the database `name` is on `server`, whose
    /// request-traffic URL is in the setting `url_ref` (resolved here; the main server
    /// needs nothing), as the tenant service's internal API gives them; the name,
    /// checked.
    pub async fn place(
        &self,
        pools: &crate::TenantPoolCache,
        name: &str,
        server: Uuid,
        url_ref: &str,
    ) -> Result<domain::TenantDatabaseName, TenantDbError> {
        let database = domain::TenantDatabaseName::parse(name)
            .map_err(|e| TenantDbError::Pool(format!("tenant database name {name:?}: {e}")))?;
        let url = if server == MAIN_SERVER_ID {
            String::new()
        } else {
            self.resolve(url_ref).await?
        };
        pools.place(&database, server, &url);
        Ok(database)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A PostgreSQL URL with a host; the reason otherwise (never the value, which holds a
/// password).
pub fn check_url(value: &str) -> Result<(), String> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") && url.has_host() => Ok(()),
        Ok(_) => Err("must be a postgres:// or postgresql:// URL with a host".to_owned()),
        Err(e) => Err(format!("is not a URL ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn main_refs_resolve_to_the_services_own_settings() {
        let settings = TenantDbSettings::new("postgres://app@db/main", "tpl")
            .with_admin_server_url("postgres://admin@db/main");
        let urls = ServerUrls::new(&settings);
        assert_eq!(
            urls.resolve("DATABASE_URL").await.expect("resolved"),
            "postgres://app@db/main"
        );
        assert_eq!(
            urls.resolve("DATABASE_ADMIN_URL").await.expect("resolved"),
            "postgres://admin@db/main"
        );
    }

    #[tokio::test]
    async fn with_vault_a_server_setting_comes_from_vault_first_then_the_environment() {
        let vault = testkit::TestVault::start(&[(
            "saas-project/test/TENANT_DB_9_URL",
            "postgres://vault@db9/x",
        )])
        .await
        .expect("vault");
        let with_vault = |addr: &str| {
            let mut settings = TenantDbSettings::new("postgres://db/main", "tpl");
            settings.environment = Arc::new(
                [
                    ("USE_VAULT", "true"),
                    ("VAULT_ADDR", addr),
                    ("VAULT_ROLE_ID", testkit::VAULT_ROLE_ID),
                    ("VAULT_SECRET_ID", testkit::VAULT_SECRET_ID),
                    ("VAULT_TIMEOUT_MS", "1000"),
                    ("ENVIRONMENT", "test"),
                    ("TENANT_DB_9_URL", "postgres://env@db9/x"),
                    ("TENANT_DB_8_URL", "postgres://env@db8/x"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            );
            ServerUrls::new(&settings)
        };
        let urls = with_vault(&vault.addr);
        assert_eq!(
            urls.resolve("TENANT_DB_9_URL").await.expect("resolved"),
            "postgres://vault@db9/x",
            "Vault first"
        );
        assert_eq!(
            urls.resolve("TENANT_DB_8_URL").await.expect("resolved"),
            "postgres://env@db8/x",
            "not in Vault: the environment"
        );
        // A Vault that does not answer is an error naming the setting, never the
        // environment's value instead.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let addr = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let failed = with_vault(&addr)
            .resolve("TENANT_DB_8_URL")
            .await
            .expect_err("Vault down")
            .to_string();
        assert!(
            failed.contains("TENANT_DB_8_URL") && failed.contains("Vault"),
            "{failed}"
        );
    }

    #[tokio::test]
    async fn a_missing_setting_is_named_and_bad_urls_refused_without_their_value() {
        let mut settings = TenantDbSettings::new("postgres://db/main", "tpl");
        settings.environment = Arc::new(HashMap::from([
            (
                "SECOND_URL".to_owned(),
                "postgres://u:p@second:5433/x".to_owned(),
            ),
            ("BOTH_URL".to_owned(), "postgres://u:p@second/x".to_owned()),
            ("BOTH_URL_FILE".to_owned(), "/dev/null".to_owned()),
        ]));
        let urls = ServerUrls::new(&settings);
        assert_eq!(
            urls.resolve("SECOND_URL").await.expect("resolved"),
            "postgres://u:p@second:5433/x"
        );
        let both = urls
            .resolve("BOTH_URL")
            .await
            .expect_err("refused")
            .to_string();
        assert!(both.contains("not both"), "{both}");
        let missing = urls
            .resolve("TENANT_DB_TEST_SURELY_UNSET_URL")
            .await
            .expect_err("refused")
            .to_string();
        assert!(
            missing.contains("TENANT_DB_TEST_SURELY_UNSET_URL") && missing.contains("not set"),
            "{missing}"
        );
        assert!(check_url("postgresql://u:p@h:5433/d").is_ok());
        let bad = check_url("mysql://u:secret@h/d").expect_err("not postgres");
        assert!(!bad.contains("secret"), "{bad}");
        assert!(check_url("postgres:///only-a-socket").is_err());
    }
}
