//! The auth service's internal API: users by id.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::UserId;
use http_kit::Secret;
use serde::{Deserialize, Serialize};

use crate::ClientError;

const SERVICE: &str = "auth service";

/// A user as API.md shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Lookup {
    users: Vec<UserSummary>,
}

#[derive(Clone)]
pub struct AuthClient {
    base_url: String,
    token: Secret<String>,
    http: reqwest::Client,
}

impl AuthClient {
    pub fn new(
        base_url: impl Into<String>,
        token: Secret<String>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ClientError::Unavailable {
                service: SERVICE,
                reason: e.to_string(),
            })?;
        Ok(Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// The user with this email, created without a password if there is none.
    pub async fn resolve(&self, email: &str) -> Result<UserSummary, ClientError> {
        #[derive(Deserialize)]
        struct Resolved {
            user: UserSummary,
        }
        let response = self
            .http
            .post(format!("{}/internal/v1/users/resolve", self.base_url))
            .bearer_auth(self.token.expose())
            .json(&serde_json::json!({ "email": email }))
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
        let resolved: Resolved = response
            .json()
            .await
            .map_err(|e| ClientError::Unavailable {
                service: SERVICE,
                reason: format!("bad body: {e}"),
            })?;
        Ok(resolved.user)
    }

    /// Registers a user with a password: `Ok(true)` created, `Ok(false)` the email exists.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        first_name: &str,
        last_name: &str,
    ) -> Result<bool, ClientError> {
        let response = self
            .http
            .post(format!("{}/api/auth/register", self.base_url))
            .json(&serde_json::json!({
                "email": email, "password": password, "first_name": first_name, "last_name": last_name
            }))
            .send()
            .await
            .map_err(|e| ClientError::Unavailable { service: SERVICE, reason: e.to_string() })?;
        match response.status().as_u16() {
            201 => Ok(true),
            409 => Ok(false),
            status => Err(ClientError::Status {
                service: SERVICE,
                status,
            }),
        }
    }

    /// The users with these ids that exist (at most 1,000 ids per call).
    pub async fn users(&self, ids: &[UserId]) -> Result<Vec<UserSummary>, ClientError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut request = self
            .http
            .post(format!("{}/internal/v1/users/lookup", self.base_url))
            .bearer_auth(self.token.expose())
            .json(&serde_json::json!({ "user_ids": ids }));
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
