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
}

impl Claims {
    /// Seconds left before expiry (0 if expired).
    pub fn remaining_secs(&self, now: i64) -> u64 {
        u64::try_from(self.exp - now).unwrap_or(0)
    }
}
