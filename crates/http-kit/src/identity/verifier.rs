//! Verifying a platform token: EdDSA only (no `none`, no HMAC confusion), a known
//! `kid`, the expected issuer, audience and type, within its validity, not revoked.
//! Revocation is checked in Redis on every call; if Redis cannot answer, the request
//! fails with 503, never passes.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::{Claims, KeySource, TokenType};
use crate::ApiError;

#[derive(Debug, Clone)]
pub struct VerifierSettings {
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<dyn KeySource>,
    revocations: cache::Revocations,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(
        keys: Arc<dyn KeySource>,
        revocations: cache::Revocations,
        settings: &VerifierSettings,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "sub", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway_secs;
        Self {
            keys,
            revocations,
            validation,
        }
    }

    /// The claims of `token` if it is a valid, unrevoked token of type `expected`.
    pub async fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidToken)?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::InvalidToken);
        }
        let kid = header.kid.ok_or(ApiError::InvalidToken)?;
        let key = self
            .keys
            .key(&kid)
            .await
            .map_err(|e| ApiError::ServiceUnavailable(format!("Token keys unavailable: {e}")))?
            .ok_or(ApiError::InvalidToken)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                _ => ApiError::InvalidToken,
            }
        })?;
        let claims = data.claims;
        if claims.token_type != expected {
            return Err(ApiError::InvalidToken);
        }
        let revoked = self
            .revocations
            .is_revoked(
                &claims.jti.to_string(),
                claims.fam.map(|f| f.to_string()).as_deref(),
            )
            .await
            .map_err(|e| {
                ApiError::ServiceUnavailable(format!("Revocation check unavailable: {e}"))
            })?;
        if revoked {
            return Err(ApiError::TokenRevoked);
        }
        Ok(claims)
    }
}
