//! HTTP routes of the document service.

pub mod documents;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/tenants/{tenant_id}/documents")
            .route("", web::get().to(documents::list))
            .route("", web::post().to(documents::upload))
            .route("/{document_id}", web::get().to(documents::get))
            .route("/{document_id}", web::delete().to(documents::delete))
            .route(
                "/{document_id}/download",
                web::get().to(documents::download),
            ),
    );
}
