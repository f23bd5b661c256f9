//! HTTP routes of the event-worker: the audit log of a tenant.

pub mod audit;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/tenants/{tenant_id}/audit-logs",
        web::get().to(audit::list),
    );
}
