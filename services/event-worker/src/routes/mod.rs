//! HTTP routes of the event-worker: a tenant's audit log and webhook endpoints.

pub mod audit;
pub mod webhooks;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/tenants/{tenant_id}/audit-logs",
        web::get().to(audit::list),
    )
    .route(
        "/api/tenants/{tenant_id}/webhooks",
        web::get().to(webhooks::list),
    )
    .route(
        "/api/tenants/{tenant_id}/webhooks",
        web::post().to(webhooks::create),
    )
    .route(
        "/api/tenants/{tenant_id}/webhooks/{webhook_id}",
        web::delete().to(webhooks::delete),
    );
}
