//! What every handler of the sso service shares.

use std::sync::Arc;

use chrono::Utc;
use domain::TenantId;
use http_kit::ApiError;
use main_db::DbPool;

use crate::azure::{AppRegistration, Azure, AzureError, AzureTokens};
use crate::graph::Graph;
use crate::settings::Settings;
use crate::store::{self, ConfigRow, SealedTokens};

pub struct App {
    pub db: DbPool,
    pub azure: Arc<Azure>,
    pub graph: Graph,
    pub tenants: clients::TenantClient,
    /// Members' roles and the tenant's SSO-only rule, cached (the tenant-role
    /// extractor's); [`App::mirror`] forgets a tenant's when its rule changes.
    pub roles: Arc<http_kit::identity::CachedRoles>,
    pub auth: clients::AuthClient,
    pub one_time: cache::OneTime,
    pub cipher: secrets::Cipher,
    pub revocations: cache::Revocations,
    pub limiter: cache::RateLimiter,
    pub redis: cache::Redis,
    pub relay: events::RelayHandle,
    pub settings: Arc<Settings>,
}

pub type Conn = main_db::DbConnection;

pub fn service(e: clients::ClientError) -> ApiError {
    ApiError::dependency("Platform service", e)
}

/// How an error of the identity provider reaches the client.
pub fn provider(e: AzureError) -> ApiError {
    match e {
        AzureError::Unavailable(detail) => ApiError::dependency("Identity provider", detail),
        AzureError::Discovery(detail) => {
            tracing::warn!(reason = %detail, "identity provider configuration refused");
            ApiError::bad_request_code(
                "sso_configuration_invalid",
                "The identity provider's configuration could not be used",
            )
        }
        AzureError::Refused { code } => ApiError::bad_request_code(
            "azure_error",
            format!("The identity provider refused the request ({code})"),
        ),
        AzureError::InvalidGrant => ApiError::bad_request_code(
            "azure_error",
            "The identity provider refused the authorization code (invalid_grant)",
        ),
        AzureError::InvalidIdToken(detail) => {
            tracing::warn!(reason = %detail, "ID token rejected");
            ApiError::bad_request_code("invalid_id_token", "The ID token was rejected")
        }
    }
}

/// `enqueue` writes an event to the outbox inside the caller's transaction.
pub use main_db::{enqueue, TxError};

/// Associated data binding a ciphertext to its column and row.
pub fn aad(column: &str, row: impl std::fmt::Display) -> Vec<u8> {
    format!("{column}:{row}").into_bytes()
}

impl App {
    /// An `audit.events` event `{"action": action, …data}` of `tenant` by `actor`, with
    /// the request's id; the caller enqueues it ([`enqueue`]) in the transaction of the
    /// change it reports, then calls [`App::published`].
    pub fn audit_event(
        &self,
        tenant: TenantId,
        actor: Option<domain::UserId>,
        action: &str,
        data: serde_json::Value,
    ) -> Result<events::EventEnvelope, ApiError> {
        let record = events::AuditRecord::new(action, data);
        Ok(events::EventEnvelope::of(&record, Some(tenant), actor)
            .map_err(ApiError::internal)?
            .with_request_id(http_kit::request_id::current()))
    }

    /// Counts a login (or link) started from `client`: 429 with `Retry-After` past
    /// `SSO_LOGIN_RATE_LIMIT_PER_IP`.
    pub async fn throttle_login(&self, client: &http_kit::ClientIp) -> Result<(), ApiError> {
        let Some(ip) = &client.0 else {
            return Ok(());
        };
        match self
            .limiter
            .check(
                &format!("sso-login:ip:{ip}"),
                self.settings.login_limit_per_ip,
            )
            .await
            .map_err(|e| ApiError::dependency("Redis", e))?
        {
            cache::RateDecision::Allowed => Ok(()),
            cache::RateDecision::Limited { retry_after } => Err(ApiError::RateLimited {
                retry_after_secs: retry_after.as_secs(),
            }),
        }
    }

    /// After the commit that wrote events: the relay publishes them now.
    pub fn published(&self) {
        self.relay.nudge(events::OutboxDb::Main);
    }

    pub async fn conn(&self) -> Result<Conn, ApiError> {
        Ok(self.db.get().await?)
    }

    pub async fn seal(&self, value: &str, aad: &[u8]) -> Result<(String, String), ApiError> {
        let sealed = self
            .cipher
            .encrypt(value, aad)
            .await
            .map_err(|e| ApiError::dependency("Encryption", e))?;
        Ok((sealed.ciphertext, sealed.key_id))
    }

    pub async fn open(
        &self,
        key_id: &str,
        ciphertext: &str,
        aad: &[u8],
    ) -> Result<String, ApiError> {
        self.cipher
            .decrypt(key_id, ciphertext, aad)
            .await
            .map_err(|e| ApiError::internal(anyhow::anyhow!("decrypting a stored secret: {e}")))
    }

    /// The tenant's configuration; 404 `sso_not_configured` when it has none.
    pub async fn config(&self, tenant: TenantId) -> Result<ConfigRow, ApiError> {
        let mut conn = self.conn().await?;
        store::config(&mut conn, tenant)
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("SSO configuration"))
    }

    /// The app registration of a configuration, its client secret decrypted.
    pub async fn registration(&self, config: &ConfigRow) -> Result<AppRegistration, ApiError> {
        let client_secret = match (&config.client_secret_encrypted, &config.encryption_key_id) {
            (Some(secret), Some(key)) => Some(
                self.open(
                    key,
                    secret,
                    &aad("tenant_sso_configs.client_secret", config.tenant_id),
                )
                .await?,
            ),
            _ => None,
        };
        Ok(AppRegistration {
            provider_tenant_id: config.provider_tenant_id.clone(),
            client_id: config.client_id.clone(),
            client_secret,
            redirect_uri: config
                .redirect_uri
                .clone()
                .unwrap_or_else(|| self.settings.default_redirect_uri()),
        })
    }

    /// Seals an identity's Azure tokens under one key id.
    pub async fn seal_tokens(
        &self,
        identity: uuid::Uuid,
        tokens: &AzureTokens,
    ) -> Result<SealedTokens, ApiError> {
        let (access, key_id) = self
            .seal(
                &tokens.access_token,
                &aad("user_azure_identities.access_token", identity),
            )
            .await?;
        let same_key = |k: String| {
            if k == key_id {
                Ok(())
            } else {
                Err(ApiError::ServiceUnavailable(
                    "The encryption key changed during the request; retry".into(),
                ))
            }
        };
        let refresh = match &tokens.refresh_token {
            Some(r) => {
                let (c, k) = self
                    .seal(r, &aad("user_azure_identities.refresh_token", identity))
                    .await?;
                same_key(k)?;
                Some(c)
            }
            None => None,
        };
        let id_token = match &tokens.id_token {
            Some(t) => {
                let (c, k) = self
                    .seal(t, &aad("user_azure_identities.id_token", identity))
                    .await?;
                same_key(k)?;
                Some(c)
            }
            None => None,
        };
        let expires_in = chrono::Duration::from_std(tokens.expires_in)
            .unwrap_or_else(|_| chrono::Duration::hours(1));
        Ok(SealedTokens {
            access,
            refresh,
            id_token,
            key_id,
            expires_at: Utc::now() + expires_in,
        })
    }

    /// Mirrors the configuration into the tenant's row (auth method, domains,
    /// auto-provisioning, default role).
    pub async fn mirror(
        &self,
        tenant: TenantId,
        auth_method: &str,
        config: Option<&ConfigRow>,
    ) -> Result<(), ApiError> {
        let sso = clients::TenantSso {
            auth_method: auth_method.to_owned(),
            sso_domain_whitelist: config.map(ConfigRow::domains).unwrap_or_default(),
            sso_auto_provisioning: config.is_some_and(|c| c.auto_provisioning),
            sso_default_role: config
                .and_then(|c| c.default_role.parse().ok())
                .unwrap_or(domain::Role::Viewer),
            sso_directory_id: config.map(|c| c.provider_tenant_id.clone()),
        };
        self.tenants
            .set_sso(tenant, &sso)
            .await
            .map_err(service)?
            .ok_or(ApiError::NotFound("Tenant"))?;
        // This replica applies the new sign-in rule at once.
        self.roles.invalidate_tenant(tenant);
        Ok(())
    }
}
