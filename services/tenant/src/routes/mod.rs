//! HTTP routes of the tenant service: the public tenant API (invitations included) and
//! the internal API other services use.

pub mod internal;
pub mod invitations;
pub mod members;
pub mod tenants;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/tenants")
            .route("", web::get().to(tenants::list))
            .route("", web::post().to(tenants::create))
            .route("/health", web::get().to(tenants::health))
            .route("/{id}", web::get().to(tenants::get))
            .route("/{id}", web::put().to(tenants::update))
            .route("/{id}", web::delete().to(tenants::delete))
            .route("/{id}/retry", web::post().to(tenants::retry))
            .route("/{id}/users", web::post().to(members::add))
            .route("/{id}/users/{user_id}", web::put().to(members::change_role))
            .route("/{id}/users/{user_id}", web::delete().to(members::remove))
            .route("/{id}/invitations", web::get().to(invitations::list))
            .route("/{id}/invitations", web::post().to(invitations::create))
            .route(
                "/{id}/invitations/{invitation_id}",
                web::delete().to(invitations::revoke),
            ),
    )
    .service(
        web::scope("/api/invitations")
            .route("/accept", web::post().to(invitations::accept))
            // An invitation token: 32 random bytes, base64url (so `accept` is not one).
            .route(
                "/{token:[A-Za-z0-9_-]{43}}",
                web::get().to(invitations::preview),
            ),
    )
    .service(
        web::scope("/internal/v1")
            .guard(http_kit::server::internal_only())
            .route(
                "/tenant-databases",
                web::get().to(internal::tenant_databases),
            )
            .route("/tenants/{tenant_id}", web::get().to(internal::tenant))
            .route(
                "/tenants/{tenant_id}/database",
                web::get().to(internal::tenant_database),
            )
            .route("/tenants/{tenant_id}/sso", web::put().to(internal::set_sso))
            .route(
                "/tenants/{tenant_id}/sso-bypass",
                web::post().to(internal::sso_bypass),
            )
            .route(
                "/tenants/{tenant_id}/members/{user_id}",
                web::get().to(internal::membership),
            )
            .route(
                "/tenants/{tenant_id}/members/{user_id}",
                web::put().to(internal::set_membership),
            )
            .route(
                "/users/{user_id}/tenants",
                web::get().to(internal::tenants_of_user),
            ),
    );
}
