//! `Authenticated`: the verified caller of a request (a valid access token).

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header::AUTHORIZATION;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use domain::UserId;

use super::{Claims, TokenType, TokenVerifier};
use crate::ApiError;

/// The token of `Authorization: Bearer <token>`.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The request's bearer token, unverified (a handler that verifies it itself, e.g. a
/// refresh token): 401 `unauthorized` when there is none. As the first parameter of a
/// handler, it answers before the body is read.
#[derive(Debug, Clone)]
pub struct Bearer(pub String);

impl actix_web::FromRequest for Bearer {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        std::future::ready(
            bearer_token(req)
                .map(Bearer)
                .ok_or_else(|| crate::ApiError::Unauthorized.into()),
        )
    }
}

#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user_id: UserId,
    pub claims: Claims,
}

impl FromRequest for Authenticated {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let verifier = req.app_data::<web::Data<TokenVerifier>>().cloned();
        Box::pin(async move {
            let verifier = verifier.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("TokenVerifier missing from app data"))
            })?;
            let token = token.ok_or(ApiError::Unauthorized)?;
            let claims = verifier.verify(&token, TokenType::Access).await?;
            let user_id = UserId::from_uuid(claims.sub);
            tracing::Span::current().record("user.id", tracing::field::display(user_id));
            Ok(Self { user_id, claims })
        })
    }
}
