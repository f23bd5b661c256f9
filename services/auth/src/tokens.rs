//! Issuing platform tokens: EdDSA JWTs with `kid`, access and refresh.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::UserId;
use http_kit::identity::{Claims, TokenType};
use http_kit::ApiError;
use jsonwebtoken::{Algorithm, Header};
use uuid::Uuid;

use crate::keys::SigningKeys;

#[derive(Clone)]
pub struct TokenIssuer {
    keys: SigningKeys,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// A signed token and what it says.
pub struct Issued {
    pub token: String,
    pub claims: Claims,
}

impl Issued {
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.claims.exp, 0).unwrap_or_else(Utc::now)
    }
}

impl TokenIssuer {
    pub fn new(
        keys: SigningKeys,
        issuer: String,
        audience: String,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        Self {
            keys,
            issuer,
            audience,
            access_ttl,
            refresh_ttl,
        }
    }

    fn issue(
        &self,
        user: UserId,
        token_type: TokenType,
        family: Uuid,
        ttl: Duration,
    ) -> Result<Issued, ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user.into_uuid(),
            jti: Uuid::new_v4(),
            iat: now,
            nbf: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            token_type,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            fam: Some(family),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.kid.clone());
        let key = self
            .keys
            .encoding
            .as_ref()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("no signing key configured")))?;
        let token = jsonwebtoken::encode(&header, &claims, key).map_err(ApiError::internal)?;
        Ok(Issued { token, claims })
    }

    pub fn access(&self, user: UserId, family: Uuid) -> Result<Issued, ApiError> {
        self.issue(user, TokenType::Access, family, self.access_ttl)
    }

    pub fn refresh(&self, user: UserId, family: Uuid) -> Result<Issued, ApiError> {
        self.issue(user, TokenType::Refresh, family, self.refresh_ttl)
    }
}
