//! Issuing platform tokens: EdDSA JWTs with `kid`, access and refresh, carrying the
//! session (`fam`), how it was obtained (`amr`, and `tid` for SSO) and whether the user
//! is a platform administrator.

use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::UserId;
use http_kit::identity::{Claims, TokenType};
use http_kit::ApiError;
use jsonwebtoken::{Algorithm, Header};
use uuid::Uuid;

use crate::store::sessions::SessionOrigin;

use crate::keys::SigningKeys;

#[derive(Clone)]
pub struct TokenIssuer {
    keys: SigningKeys,
    issuer: String,
    audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

/// What the tokens of a session say of it.
pub struct SessionGrant<'a> {
    pub user: UserId,
    /// The session (refresh family) id.
    pub family: Uuid,
    pub origin: &'a SessionOrigin,
    pub platform_admin: bool,
    /// When the user signed in to open the session (Unix seconds).
    pub auth_time: i64,
}

pub struct TokenPair {
    pub access: Issued,
    pub refresh: Issued,
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
        session: &SessionGrant<'_>,
        token_type: TokenType,
        ttl: Duration,
    ) -> Result<Issued, ApiError> {
        let now = Utc::now().timestamp();
        let (amr, tid, sso_tenant) = match session.origin {
            SessionOrigin::Password => ("pwd", None, None),
            SessionOrigin::Sso { tenant, directory } => {
                ("sso", Some(directory.clone()), Some(tenant.into_uuid()))
            }
        };
        let claims = Claims {
            sub: session.user.into_uuid(),
            jti: Uuid::new_v4(),
            iat: now,
            nbf: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            token_type,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            fam: Some(session.family),
            amr: vec![amr.to_owned()],
            tid,
            sso_tenant,
            platform_admin: session.platform_admin,
            auth_time: Some(session.auth_time),
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

    pub fn access(&self, session: &SessionGrant<'_>) -> Result<Issued, ApiError> {
        self.issue(session, TokenType::Access, self.access_ttl)
    }

    pub fn refresh(&self, session: &SessionGrant<'_>) -> Result<Issued, ApiError> {
        self.issue(session, TokenType::Refresh, self.refresh_ttl)
    }

    /// An access and a refresh token of the session.
    pub fn pair(&self, session: &SessionGrant<'_>) -> Result<TokenPair, ApiError> {
        Ok(TokenPair {
            access: self.access(session)?,
            refresh: self.refresh(session)?,
        })
    }
}
