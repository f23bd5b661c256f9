//! HTTP routes of the auth service. Handlers read the request, call `Accounts`, and
//! shape the response.

pub mod auth;
pub mod internal;
pub mod users;
pub mod wellknown;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/auth")
            .route("/register", web::post().to(auth::register))
            .route("/login", web::post().to(auth::login))
            .route("/refresh", web::post().to(auth::refresh))
            .route("/logout", web::post().to(auth::logout))
            .route("/health", web::get().to(auth::health)),
    )
    .service(
        web::scope("/api/users")
            .route("/health", web::get().to(auth::health))
            .route("/me", web::get().to(users::me))
            .route("/me", web::put().to(users::update_me))
            .route("/me/tenants", web::get().to(users::my_tenants)),
    )
    .route("/.well-known/jwks.json", web::get().to(wellknown::jwks))
    .service(
        web::scope("/internal/v1")
            .route("/users/resolve", web::post().to(internal::resolve_user))
            .route("/users/lookup", web::post().to(internal::lookup_users))
            .route("/tokens", web::post().to(internal::issue_tokens)),
    );
}
