//! Verifying a platform token: EdDSA only (no `none`, no HMAC confusion), a known
//! `kid`, the expected issuer, audience and type, within its validity, not revoked.
//! Revocation (the token, its session, its user's cut-off) is checked in Redis on
//! every call; if Redis cannot answer, the request fails with 503, never passes.
//!
//! A client presents the same access token for its whole life, so the claims of a token
//! whose signature and claims were verified are remembered, keyed by the exact token
//! text, until it expires: later requests skip the signature check, never the expiry,
//! type or revocation checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

use super::{Claims, KeySource, TokenType};
use crate::ApiError;

/// Verified tokens remembered at most (then the expired ones go, or all).
const MAX_REMEMBERED: usize = 10_000;

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
    verified: Arc<Mutex<HashMap<String, Claims>>>,
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
            verified: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn remembered(&self, token: &str) -> Option<Claims> {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    fn remember(&self, token: &str, claims: &Claims) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            let now = chrono::Utc::now().timestamp();
            verified.retain(|_, c| c.exp > now);
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), claims.clone());
    }

    /// Signature, algorithm, `kid`, issuer, audience, validity window, and an `iat`
    /// that is not in the future.
    async fn check_signed(&self, token: &str) -> Result<Claims, ApiError> {
        if let Some(claims) = self.remembered(token) {
            let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
            if claims.exp + leeway <= chrono::Utc::now().timestamp() {
                return Err(ApiError::TokenExpired);
            }
            return Ok(claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::InvalidToken)?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::InvalidToken);
        }
        let kid = header.kid.ok_or(ApiError::InvalidToken)?;
        let key = self
            .keys
            .key(&kid)
            .await
            .map_err(|e| ApiError::dependency("Token keys", e))?
            .ok_or(ApiError::InvalidToken)?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::TokenExpired,
                _ => ApiError::InvalidToken,
            }
        })?;
        // Issued later than now (beyond the clock skew): such a token would outlive a
        // revocation of every token its user had before a moment (`iat` is compared).
        let leeway = i64::try_from(self.validation.leeway).unwrap_or(0);
        if data.claims.iat > chrono::Utc::now().timestamp() + leeway {
            return Err(ApiError::InvalidToken);
        }
        self.remember(token, &data.claims);
        Ok(data.claims)
    }

    /// The claims of `token` if it is a valid, unrevoked token of type `expected`.
    pub async fn verify(&self, token: &str, expected: TokenType) -> Result<Claims, ApiError> {
        let claims = self.verify_signed(token, expected).await?;
        self.check_revocation(&claims).await?;
        Ok(claims)
    }

    /// The claims of `token` if it is a valid token of type `expected`, revoked or not
    /// (auth's refresh checks the account before the revocation).
    pub async fn verify_signed(
        &self,
        token: &str,
        expected: TokenType,
    ) -> Result<Claims, ApiError> {
        let claims = self.check_signed(token).await?;
        if claims.token_type != expected {
            return Err(ApiError::InvalidToken);
        }
        Ok(claims)
    }

    /// `token_revoked` when the token, its session or every token of its user before
    /// it was revoked.
    pub async fn check_revocation(&self, claims: &Claims) -> Result<(), ApiError> {
        let family = claims.fam.map(|f| f.to_string());
        let revoked = self
            .revocations
            .is_revoked(cache::TokenRef {
                jti: &claims.jti.to_string(),
                family: family.as_deref(),
                user: &claims.sub.to_string(),
                issued_at: claims.iat,
            })
            .await
            .map_err(|e| ApiError::dependency("Revocation check", e))?;
        if revoked {
            return Err(ApiError::TokenRevoked);
        }
        Ok(())
    }
}
