//! The tenant service's internal API: tenants, memberships, a user's tenants.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{Role, TenantId, TenantStatus, UserId};
use http_kit::identity::{AuditFuture, MemberAccess, RoleFuture, RoleLookup};
use http_kit::Secret;
use serde::{Deserialize, Serialize};

use crate::{ClientError, Peer};

const SERVICE: &str = "tenant service";

/// A tenant as the public API shows it (docs/API.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: TenantId,
    pub name: String,
    pub database_name: String,
    pub is_active: bool,
    pub status: TenantStatus,
    pub auth_method: String,
    pub sso_domain_whitelist: Vec<String>,
    pub sso_auto_provisioning: bool,
    pub sso_default_role: Role,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub created_by: Option<UserId>,
}

/// A tenant with the user's membership in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserTenant {
    #[serde(flatten)]
    pub tenant: TenantSummary,
    pub role: Role,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: DateTime<Utc>,
}

/// A membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Membership {
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantId,
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    pub role: Role,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub joined_at: DateTime<Utc>,
    /// Set when the tenant admits only tokens of its SSO login through this directory
    /// (its `auth_method` is `sso`). Internal: the public membership bodies leave it
    /// out, and so does the API document (the schema is shared with public answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub sso_only_directory: Option<String>,
}

/// The Redis broadcast channel on which the tenant service announces that a tenant's
/// database moved to another server (the message: the tenant id).
pub const TENANT_MOVED_CHANNEL: &str = "tenant-moved";

/// A tenant database and the server that holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantDatabase {
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantId,
    pub database_name: String,
    /// Absent from a tenant service older than database servers: the main one.
    #[serde(default)]
    pub server: DatabaseServer,
}

/// A PostgreSQL server holding tenant databases, as other services reach it: by the
/// setting that holds its request-traffic URL, which each resolves in its own
/// environment (docs/OPERATIONS.md, "Database servers").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatabaseServer {
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    pub name: String,
    /// The name of the setting (never the URL).
    pub url_ref: String,
}

impl Default for DatabaseServer {
    /// The main database's own server.
    fn default() -> Self {
        Self {
            id: uuid::Uuid::from_u128(1),
            name: "main".to_owned(),
            url_ref: "DATABASE_URL".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantDatabases {
    pub databases: Vec<TenantDatabase>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserTenants {
    pub tenants: Vec<UserTenant>,
}

/// A tenant's SSO settings as its row mirrors them: the body of
/// `PUT /internal/v1/tenants/{id}/sso`, which the sso service sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantSso {
    /// `local`, `sso` or `both`.
    pub auth_method: String,
    pub sso_domain_whitelist: Vec<String>,
    pub sso_auto_provisioning: bool,
    pub sso_default_role: Role,
    /// The configured directory (Entra `tid`): SSO-only tenants admit its tokens only.
    #[serde(default)]
    pub sso_directory_id: Option<String>,
}

/// The body of `PUT /internal/v1/tenants/{id}/members/{user}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMembership {
    pub role: Role,
}

/// The body of `POST /internal/v1/tenants/{id}/sso-bypass`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoBypass {
    #[schema(value_type = String, format = Uuid)]
    pub user_id: UserId,
    /// The session (`fam`) of the token used.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub session_id: Option<uuid::Uuid>,
}

#[derive(Clone)]
pub struct TenantClient(Peer);

impl TenantClient {
    /// The client of the peer `peers` names (its URL, the internal token, the call
    /// timeout), as every service builds it at start.
    pub fn from_peers(peers: &http_kit::Peers) -> Result<Self, ClientError> {
        Self::new(
            peers.tenant_url.clone(),
            peers.internal_token.clone(),
            peers.call_timeout,
        )
    }

    pub fn new(
        base_url: impl Into<String>,
        token: Secret<String>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Peer::new(SERVICE, base_url, token, timeout).map(Self)
    }

    /// GET `path`: `None` on 404.
    async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
    ) -> Result<Option<T>, ClientError> {
        self.call(self.0.http.get(format!("{}{path}", self.0.base_url)))
            .await
    }

    /// Sends `request` with the internal token and the request id: the JSON body of a
    /// 200, `None` on 404, an error otherwise.
    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, ClientError> {
        let mut request = request.bearer_auth(self.0.token.expose());
        if let Some(id) = http_kit::request_id::current() {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.map_err(|e| ClientError::Unavailable {
            service: SERVICE,
            reason: e.to_string(),
        })?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => response
                .json()
                .await
                .map(Some)
                .map_err(|e| ClientError::Unavailable {
                    service: SERVICE,
                    reason: format!("bad body: {e}"),
                }),
            status => Err(ClientError::Status {
                service: SERVICE,
                status,
            }),
        }
    }

    /// Every tenant database that exists (for the outbox relay's sweeps).
    pub async fn databases(&self) -> Result<Vec<TenantDatabase>, ClientError> {
        let list: Option<TenantDatabases> = self.get("/internal/v1/tenant-databases").await?;
        Ok(list.map(|l| l.databases).unwrap_or_default())
    }

    /// A tenant's database and its server (any status but purged); `None` when the
    /// tenant does not exist or its database is gone.
    pub async fn database(&self, tenant: TenantId) -> Result<Option<TenantDatabase>, ClientError> {
        self.get(&format!("/internal/v1/tenants/{tenant}/database"))
            .await
    }

    /// [`Self::database`], or, from a tenant service older than database servers
    /// (which has no such route and answers 404), the tenant's database on the main
    /// server: for connecting to a tenant a caller has found to exist, during a
    /// rolling upgrade in either order. Never for deciding that a database is gone.
    pub async fn database_to_connect(
        &self,
        tenant: TenantId,
    ) -> Result<Option<TenantDatabase>, ClientError> {
        if let Some(found) = self.database(tenant).await? {
            return Ok(Some(found));
        }
        Ok(self.tenant(tenant).await?.map(|summary| TenantDatabase {
            tenant_id: summary.id,
            database_name: summary.database_name,
            server: DatabaseServer::default(),
        }))
    }

    pub async fn tenant(&self, tenant: TenantId) -> Result<Option<TenantSummary>, ClientError> {
        self.get(&format!("/internal/v1/tenants/{tenant}")).await
    }

    pub async fn membership(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<Membership>, ClientError> {
        self.get(&format!("/internal/v1/tenants/{tenant}/members/{user}"))
            .await
    }

    /// Adds `user` to an active tenant with `role`, or sets its role (SSO
    /// auto-provisioning). `None` when the tenant or the user does not exist.
    pub async fn set_membership(
        &self,
        tenant: TenantId,
        user: UserId,
        role: Role,
    ) -> Result<Option<Membership>, ClientError> {
        let url = format!(
            "{}/internal/v1/tenants/{tenant}/members/{user}",
            self.0.base_url
        );
        self.call(self.0.http.put(url).json(&SetMembership { role }))
            .await
    }

    /// Mirrors a tenant's SSO settings into its row (the sso service owns them).
    /// `None` when the tenant does not exist.
    pub async fn set_sso(
        &self,
        tenant: TenantId,
        sso: &TenantSso,
    ) -> Result<Option<TenantSummary>, ClientError> {
        let url = format!("{}/internal/v1/tenants/{tenant}/sso", self.0.base_url);
        self.call(self.0.http.put(url).json(sso)).await
    }

    /// The active tenants of `user`, most recently joined first.
    pub async fn tenants_of_user(&self, user: UserId) -> Result<Vec<UserTenant>, ClientError> {
        Ok(self
            .get::<UserTenants>(&format!("/internal/v1/users/{user}/tenants"))
            .await?
            .map(|t| t.tenants)
            .unwrap_or_default())
    }

    /// Records in the tenant's audit log that a platform administrator entered it
    /// (SSO-only) with a token of another sign-in.
    pub async fn record_sso_bypass(
        &self,
        tenant: TenantId,
        user: UserId,
        session: Option<uuid::Uuid>,
    ) -> Result<(), ClientError> {
        let url = format!(
            "{}/internal/v1/tenants/{tenant}/sso-bypass",
            self.0.base_url
        );
        let recorded: Option<serde_json::Value> = self
            .call(self.0.http.post(url).json(&SsoBypass {
                user_id: user,
                session_id: session,
            }))
            .await?;
        recorded.map(|_| ()).ok_or(ClientError::Status {
            service: SERVICE,
            status: 404,
        })
    }
}

impl RoleLookup for TenantClient {
    fn access(&self, tenant: TenantId, user: UserId) -> RoleFuture<'_> {
        Box::pin(async move {
            self.membership(tenant, user)
                .await
                .map(|m| {
                    m.map(|m| MemberAccess {
                        role: m.role,
                        sso_only_directory: m.sso_only_directory,
                    })
                })
                .map_err(|e| e.to_string())
        })
    }

    fn record_sso_bypass(
        &self,
        tenant: TenantId,
        user: UserId,
        session: Option<uuid::Uuid>,
    ) -> AuditFuture<'_> {
        Box::pin(async move {
            TenantClient::record_sso_bypass(self, tenant, user, session)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
