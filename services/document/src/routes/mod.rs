//! HTTP routes of the document service.

pub mod documents;
pub mod downloads;
pub mod files;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/tenants/{tenant_id}/documents")
            .route("", web::get().to(documents::list))
            .route("", web::post().to(documents::upload))
            .route("/{document_id}", web::get().to(documents::get))
            .route("/{document_id}", web::put().to(documents::update))
            .route("/{document_id}", web::delete().to(documents::delete))
            .route(
                "/{document_id}/download",
                web::get().to(downloads::download),
            )
            .route(
                "/{document_id}/download-url",
                web::get().to(downloads::download_url),
            ),
    )
    .service(
        web::scope("/api/files/{tenant_id}/files")
            .route("", web::get().to(files::list))
            .route("/{file_id}", web::get().to(files::get))
            .route("/{file_id}", web::delete().to(files::delete)),
    );
}
