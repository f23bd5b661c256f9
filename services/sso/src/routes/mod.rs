//! HTTP routes of the sso service.

pub mod config;
pub mod discovery;
pub mod flow;
pub mod identities;
pub mod session;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/auth/sso")
            .route("/azure/login/{tenant_id}", web::get().to(flow::login))
            .route("/azure/callback", web::get().to(flow::callback))
            .route("/azure/refresh", web::post().to(session::refresh))
            .route("/azure/logout/{tenant_id}", web::post().to(session::logout))
            .route("/detect", web::post().to(discovery::detect))
            .route(
                "/check-availability/{tenant_id}",
                web::get().to(discovery::check_availability),
            )
            .route("/identities", web::get().to(identities::list)),
    )
    .route(
        "/api/users/me/sso-identities",
        web::get().to(identities::mine),
    )
    .route(
        "/api/users/me/sso-identities/{tenant_id}",
        web::delete().to(identities::unlink),
    )
    .route(
        "/api/users/me/sso-identities/link/{tenant_id}",
        web::post().to(flow::link),
    )
    .service(
        web::scope("/api/tenants/{tenant_id}/sso")
            .route("/config", web::get().to(config::get))
            .route("/config", web::post().to(config::create))
            .route("/config", web::put().to(config::update))
            .route("/config", web::delete().to(config::delete))
            .route("/config/enable", web::post().to(config::enable))
            .route("/config/disable", web::post().to(config::disable))
            .route("/config/validate", web::get().to(config::validate))
            .route(
                "/config/auto-provisioning",
                web::put().to(config::auto_provisioning),
            )
            .route("/statistics", web::get().to(config::statistics)),
    );
}
