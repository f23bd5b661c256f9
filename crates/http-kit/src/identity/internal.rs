//! The internal service token: internal routes (`/internal/v1/…`) accept only callers
//! presenting it as a bearer token, compared in constant time.

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use subtle::ConstantTimeEq;

use super::bearer_token;
use crate::{ApiError, Secret};

/// App data: the token internal callers must present.
#[derive(Clone)]
pub struct InternalToken(pub Secret<String>);

/// A request from another platform service.
#[derive(Debug, Clone, Copy)]
pub struct InternalCaller;

impl FromRequest for InternalCaller {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let expected = req.app_data::<web::Data<InternalToken>>();
        let presented = bearer_token(req);
        let ok = match (expected, presented) {
            (Some(expected), Some(presented)) => {
                let expected = expected.0.expose().as_bytes();
                // ct_eq on unequal lengths returns false without an early exit on content.
                bool::from(expected.ct_eq(presented.as_bytes()))
            }
            _ => false,
        };
        std::future::ready(if ok {
            Ok(InternalCaller)
        } else {
            Err(ApiError::Unauthorized.into())
        })
    }
}
