//! The auth service's internal API: users by id or email.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::{TenantId, UserId};
use http_kit::Secret;
use serde::{Deserialize, Serialize};

use crate::{ClientError, Peer};

const SERVICE: &str = "auth service";

/// A user as the public API shows it (docs/API.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    /// Whether the user proved control of the email address.
    #[serde(default)]
    pub email_verified: bool,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

/// Where a session is opened from (the session list shows it).
#[derive(Debug, Clone, Default)]
pub struct SessionClient {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// A platform token pair issued by auth's internal API.
#[derive(Deserialize)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Lookup {
    users: Vec<UserSummary>,
}

#[derive(Clone)]
pub struct AuthClient(Peer);

impl AuthClient {
    /// The client of the peer `peers` names (its URL, the internal token, the call
    /// timeout), as every service builds it at start.
    pub fn from_peers(peers: &http_kit::Peers) -> Result<Self, ClientError> {
        Self::new(
            peers.auth_url.clone(),
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

    /// The user with this email, created without a password if there is none (SSO),
    /// named, its email verified when the directory asserted the domain; also says
    /// whether this call created it.
    pub async fn resolve_named(
        &self,
        email: &str,
        first_name: Option<&str>,
        last_name: Option<&str>,
        email_verified: bool,
    ) -> Result<(UserSummary, bool), ClientError> {
        #[derive(Deserialize)]
        struct Resolved {
            user: UserSummary,
            created: bool,
        }
        let mut body = serde_json::json!({ "email": email, "email_verified": email_verified });
        if let Some(first) = first_name {
            body["first_name"] = first.into();
        }
        if let Some(last) = last_name {
            body["last_name"] = last.into();
        }
        let resolved: Resolved = self.post_json("/internal/v1/users/resolve", &body).await?;
        Ok((resolved.user, resolved.created))
    }

    /// A new platform session (token pair) for an active user, from `tenant`'s SSO
    /// login through `directory` (its tokens carry `amr: ["sso"]` and `tid`), opened by
    /// the client described.
    pub async fn issue_sso_tokens(
        &self,
        user: UserId,
        tenant: TenantId,
        directory: &str,
        client: &SessionClient,
    ) -> Result<IssuedTokens, ClientError> {
        self.post_json(
            "/internal/v1/tokens",
            &serde_json::json!({
                "user_id": user,
                "sso": {"tenant_id": tenant, "directory_id": directory},
                "user_agent": client.user_agent,
                "client_address": client.address,
            }),
        )
        .await
    }

    /// Before linking a directory identity to this existing account by its email:
    /// auth removes a password chosen before the mailbox was proven, ending every
    /// session. Returns whether it did.
    pub async fn secure_for_sso_link(&self, user: UserId) -> Result<bool, ClientError> {
        #[derive(Deserialize)]
        struct Secured {
            password_removed: bool,
        }
        let secured: Secured = self
            .post_json(
                &format!("/internal/v1/users/{user}/secure-for-sso-link"),
                &serde_json::json!({}),
            )
            .await?;
        Ok(secured.password_removed)
    }

    /// Ends the sessions `user` obtained through `tenant`'s SSO login; how many.
    pub async fn revoke_sso_sessions(
        &self,
        user: UserId,
        tenant: TenantId,
    ) -> Result<usize, ClientError> {
        #[derive(Deserialize)]
        struct Revoked {
            sessions_revoked: usize,
        }
        let revoked: Revoked = self
            .post_json(
                &format!("/internal/v1/users/{user}/sso-sessions/{tenant}/revoke"),
                &serde_json::json!({}),
            )
            .await?;
        Ok(revoked.sessions_revoked)
    }

    /// Makes the user with `email` a platform administrator (`tenant init`).
    pub async fn make_platform_admin(&self, email: &str) -> Result<UserSummary, ClientError> {
        self.post_json(
            "/internal/v1/users/platform-admin",
            &serde_json::json!({ "email": email }),
        )
        .await
    }

    /// Rotates a platform refresh token through auth's public route (reuse detection and
    /// all): the new pair.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens, ClientError> {
        #[derive(Deserialize)]
        struct Refreshed {
            access_token: String,
            refresh_token: String,
            expires_in: u64,
        }
        let response = self
            .0
            .http
            .post(format!("{}/api/auth/refresh", self.0.base_url))
            .bearer_auth(refresh_token)
            .send()
            .await
            .map_err(|e| ClientError::Unavailable {
                service: SERVICE,
                reason: e.to_string(),
            })?;
        if !response.status().is_success() {
            return Err(ClientError::Status {
                service: SERVICE,
                status: response.status().as_u16(),
            });
        }
        let r: Refreshed = response
            .json()
            .await
            .map_err(|e| ClientError::Unavailable {
                service: SERVICE,
                reason: format!("bad body: {e}"),
            })?;
        Ok(IssuedTokens {
            access_token: r.access_token,
            refresh_token: r.refresh_token,
            token_type: "Bearer".to_owned(),
            expires_in: r.expires_in,
        })
    }

    /// Logs a platform session out through auth's public route: the access token and,
    /// when given, the refresh token's family are revoked.
    pub async fn logout(
        &self,
        access_token: &str,
        refresh_token: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut request = self
            .0
            .http
            .post(format!("{}/api/auth/logout", self.0.base_url))
            .bearer_auth(access_token);
        if let Some(refresh) = refresh_token {
            request = request.json(&serde_json::json!({ "refresh_token": refresh }));
        }
        let response = request.send().await.map_err(|e| ClientError::Unavailable {
            service: SERVICE,
            reason: e.to_string(),
        })?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ClientError::Status {
                service: SERVICE,
                status: response.status().as_u16(),
            })
        }
    }

    async fn post_json<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, ClientError> {
        let mut request = self
            .0
            .http
            .post(format!("{}{path}", self.0.base_url))
            .bearer_auth(self.0.token.expose())
            .json(body);
        if let Some(id) = http_kit::request_id::current() {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.map_err(|e| ClientError::Unavailable {
            service: SERVICE,
            reason: e.to_string(),
        })?;
        if !response.status().is_success() {
            return Err(ClientError::Status {
                service: SERVICE,
                status: response.status().as_u16(),
            });
        }
        response.json().await.map_err(|e| ClientError::Unavailable {
            service: SERVICE,
            reason: format!("bad body: {e}"),
        })
    }

    /// Creates a user with a password through the internal API (no per-address limits):
    /// `Ok(true)` created, `Ok(false)` the email exists.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        first_name: &str,
        last_name: &str,
    ) -> Result<bool, ClientError> {
        let response = self
            .0
            .http
            .post(format!("{}/internal/v1/users", self.0.base_url))
            .bearer_auth(self.0.token.expose())
            .json(&serde_json::json!({
                "email": email, "password": password, "first_name": first_name, "last_name": last_name
            }))
            .send()
            .await
            .map_err(|e| ClientError::Unavailable { service: SERVICE, reason: e.to_string() })?;
        match response.status().as_u16() {
            201 => Ok(true),
            409 => Ok(false),
            // The password or a name breaks the rules: say which.
            400 => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                Err(ClientError::Refused {
                    service: SERVICE,
                    reason: body["details"].to_string(),
                })
            }
            status => Err(ClientError::Status {
                service: SERVICE,
                status,
            }),
        }
    }

    /// The users with these ids that exist (at most 1,000 ids per call).
    pub async fn users(&self, ids: &[UserId]) -> Result<Vec<UserSummary>, ClientError> {
        self.lookup(ids, &[]).await
    }

    /// The users with these addresses (compared normalised) that exist.
    pub async fn users_by_email(&self, emails: &[&str]) -> Result<Vec<UserSummary>, ClientError> {
        self.lookup(&[], emails).await
    }

    /// The users with these ids or addresses that exist, each once (at most 1,000 ids
    /// and addresses per call).
    pub async fn lookup(
        &self,
        ids: &[UserId],
        emails: &[&str],
    ) -> Result<Vec<UserSummary>, ClientError> {
        if ids.is_empty() && emails.is_empty() {
            return Ok(Vec::new());
        }
        // `emails` only when asked for: an auth service of the release before accepts
        // `user_ids` alone (rolling deployments).
        let mut body = serde_json::json!({ "user_ids": ids });
        if !emails.is_empty() {
            body["emails"] = serde_json::json!(emails);
        }
        let mut request = self
            .0
            .http
            .post(format!("{}/internal/v1/users/lookup", self.0.base_url))
            .bearer_auth(self.0.token.expose())
            .json(&body);
        if let Some(id) = http_kit::request_id::current() {
            request = request.header("x-request-id", id);
        }
        let response = request.send().await.map_err(|e| ClientError::Unavailable {
            service: SERVICE,
            reason: e.to_string(),
        })?;
        if !response.status().is_success() {
            return Err(ClientError::Status {
                service: SERVICE,
                status: response.status().as_u16(),
            });
        }
        let lookup: Lookup = response
            .json()
            .await
            .map_err(|e| ClientError::Unavailable {
                service: SERVICE,
                reason: format!("bad body: {e}"),
            })?;
        Ok(lookup.users)
    }
}
