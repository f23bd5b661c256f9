//! `/.well-known/jwks.json`: the public keys tokens are verified with (the current one
//! and any previous ones still accepted).

use actix_web::{web, HttpResponse};
use http_kit::identity::Jwks;

/// Public keys (Ed25519) of platform tokens.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = Jwks)))]
pub async fn jwks(jwks: web::Data<Jwks>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(jwks.get_ref())
}
