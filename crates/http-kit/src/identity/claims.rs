use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// The claims of a platform token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// Unique per token; revocation is keyed on it.
    pub jti: Uuid,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(rename = "type")]
    pub token_type: TokenType,
    pub iss: String,
    pub aud: String,
    /// The token family: one per login session. Rotation, reuse detection and logout
    /// act on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<Uuid>,
    /// How the session was obtained (RFC 8176): `["pwd"]` or `["sso"]`. Tokens from
    /// before this claim existed have none, and count as password tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// For an SSO session: the directory (Entra `tid`) that signed the user in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// For an SSO session: the platform tenant whose SSO login it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_tenant: Option<Uuid>,
    /// When the user signed in to open this session (Unix seconds; OpenID Connect's
    /// `auth_time`): what "signed in recently" is judged by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The user is a platform administrator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub platform_admin: bool,
}

impl Claims {
    /// Whether the token comes from `tenant`'s own SSO login through `directory`.
    pub fn is_sso_of_tenant(&self, tenant: Uuid, directory: &str) -> bool {
        self.is_sso_from(directory) && self.sso_tenant == Some(tenant)
    }

    /// Whether the token comes from an SSO login through `directory`.
    pub fn is_sso_from(&self, directory: &str) -> bool {
        self.amr.iter().any(|m| m == "sso") && self.tid.as_deref() == Some(directory)
    }

    /// Seconds left before expiry (0 if expired).
    pub fn remaining_secs(&self, now: i64) -> u64 {
        u64::try_from(self.exp - now).unwrap_or(0)
    }
}
