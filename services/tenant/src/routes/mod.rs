//! HTTP routes of the tenant service. Today: the internal API other services use.

pub mod internal;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/internal/v1")
            .route("/tenants/{tenant_id}", web::get().to(internal::tenant))
            .route(
                "/tenants/{tenant_id}/members/{user_id}",
                web::get().to(internal::membership),
            )
            .route(
                "/users/{user_id}/tenants",
                web::get().to(internal::tenants_of_user),
            ),
    );
}
