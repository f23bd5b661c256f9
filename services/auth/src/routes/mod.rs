//! HTTP routes of the auth service. Handlers read the request, call `App`, and
//! shape the response.

pub mod admin;
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
            .route("/verify-email", web::post().to(auth::verify_email))
            .route(
                "/resend-verification",
                web::post().to(auth::resend_verification),
            )
            .route("/password/forgot", web::post().to(auth::forgot_password))
            .route("/password/reset", web::post().to(auth::reset_password))
            .route("/health", web::get().to(auth::health)),
    )
    .service(
        web::scope("/api/users")
            .route("/health", web::get().to(auth::health))
            .route("/me", web::get().to(users::me))
            .route("/me", web::put().to(users::update_me))
            .route("/me/tenants", web::get().to(users::my_tenants))
            .route("/me/password", web::post().to(users::change_password))
            .route("/me/sessions", web::get().to(users::sessions))
            .route("/me/sessions", web::delete().to(users::revoke_all_sessions))
            .route(
                "/me/sessions/{session_id}",
                web::delete().to(users::revoke_session),
            ),
    )
    .service(
        web::scope("/api/admin/users/{user_id}")
            .route("/deactivate", web::post().to(admin::deactivate))
            .route("/reactivate", web::post().to(admin::reactivate))
            .route("/sessions", web::delete().to(admin::revoke_sessions)),
    )
    .route("/.well-known/jwks.json", web::get().to(wellknown::jwks))
    .service(
        web::scope("/internal/v1")
            .guard(http_kit::server::internal_only())
            .route("/users", web::post().to(internal::create_user))
            .route("/users/resolve", web::post().to(internal::resolve_user))
            .route("/users/lookup", web::post().to(internal::lookup_users))
            .route(
                "/users/platform-admin",
                web::post().to(internal::platform_admin),
            )
            .route(
                "/users/{user_id}/secure-for-sso-link",
                web::post().to(internal::secure_for_sso_link),
            )
            .route(
                "/users/{user_id}/sso-sessions/{tenant_id}/revoke",
                web::post().to(internal::revoke_sso_sessions),
            )
            .route("/tokens", web::post().to(internal::issue_tokens)),
    );
}
