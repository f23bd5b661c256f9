//! The JWKS document auth serves at `/.well-known/jwks.json`: Ed25519 public keys.

use serde::{Deserialize, Serialize};

/// One Ed25519 public key (RFC 8037 OKP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// Always `EdDSA`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub key_use: String,
    pub kid: String,
    /// The public key, base64url without padding.
    pub x: String,
}

impl Jwk {
    pub fn ed25519(kid: impl Into<String>, x: impl Into<String>) -> Self {
        Self {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            alg: "EdDSA".into(),
            key_use: "sig".into(),
            kid: kid.into(),
            x: x.into(),
        }
    }

    pub fn is_ed25519(&self) -> bool {
        self.kty == "OKP" && self.crv == "Ed25519" && (self.alg == "EdDSA" || self.alg.is_empty())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}
