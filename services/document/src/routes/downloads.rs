//! `/api/tenants/{tenant_id}/documents/{document_id}/download` (the bytes, streamed
//! through the service) and `…/download-url` (a presigned URL on the public storage
//! host, audited): both served safely (`crate::serving`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::Utc;
use domain::{Permission, TenantId};
use events::{AuditRecord, EventEnvelope};
use futures_util::TryStreamExt;
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, Query, RequestId};
use main_db::TxError;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::documents::find;
use crate::app::App;
use crate::upload::storage_failure;

/// The document's bytes, streamed.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/documents/{document_id}/download", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid), ("document_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "The bytes, with the document's stored content type", content_type = "*/*"), (status = 404, body = http_kit::ErrorBody)))]
pub async fn download(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadDocuments)?;
    let (doc, file) = find(&app, member.tenant_id, path.into_inner().1).await?;
    let stream = app
        .storage
        .get_stream(&file.s3_path)
        .await
        .map_err(storage_failure)?;
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, doc.mime_type.as_str()))
        .insert_header((
            header::CONTENT_DISPOSITION,
            crate::serving::content_disposition(&doc.filename),
        ))
        .insert_header((
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Opened anyway (the stored type, as the contract says), the bytes run no
        // script and reach nothing of the API's origin.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("sandbox"),
        ))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .no_chunking(u64::try_from(file.file_size).unwrap_or(0));
    Ok(response
        .streaming(stream.map_err(|e| actix_web::error::ErrorServiceUnavailable(e.to_string()))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlQuery {
    expires_in: Option<u64>,
}

/// A presigned download URL on the public storage host (`expires_in` 60–86400 s,
/// default 3600); every issuance is recorded as an `audit.events` event.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/documents/{document_id}/download-url", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid), ("document_id" = String, Path, format = Uuid), ("expires_in" = Option<u64>, Query, minimum = 60, maximum = 86400, description = "Seconds the URL stays valid (default 3600)")),
    responses((status = 200, description = "`data`: {download_url, expires_in, expires_at, filename, mime_type, file_size}", body = DownloadUrl),
              (status = 400, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn download_url(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
    query: Query<UrlQuery>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadDocuments)?;
    let expires_in = query.into_inner().expires_in.unwrap_or(3600);
    if !(60..=86_400).contains(&expires_in) {
        return Err(ApiError::validation(
            "expires_in",
            "must be between 60 and 86400 seconds",
        ));
    }
    let id = path.into_inner().1;
    let (doc, file) = find(&app, member.tenant_id, id).await?;
    let url = app
        .storage
        .presign_get(
            &file.s3_path,
            std::time::Duration::from_secs(expires_in),
            &crate::serving::presigned(&doc.filename, &doc.mime_type),
        )
        .await
        .map_err(storage_failure)?;
    let expires_at =
        Utc::now() + chrono::Duration::seconds(i64::try_from(expires_in).unwrap_or(3600));
    let record = AuditRecord::new(
        "document.download_url_issued",
        json!({"document_id": id, "expires_in": expires_in}),
    );
    let event = EventEnvelope::of(&record, Some(member.tenant_id), Some(member.user_id))
        .map_err(ApiError::internal)?
        .with_request_id(Some(request_id.0));
    let mut conn = app.connection(member.tenant_id).await?;
    diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        main_db::enqueue(tx, &event).await
    })
    .await?;
    app.nudge(member.tenant_id);
    Ok(success(
        StatusCode::OK,
        "Download URL generated",
        json!({
            "download_url": url,
            "expires_in": expires_in,
            "expires_at": http_kit::time::format(&expires_at),
            "filename": doc.filename,
            "mime_type": doc.mime_type,
            "file_size": file.file_size,
        }),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of a presigned download URL.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DownloadUrl {
    /// A GET of the object, valid `expires_in` seconds, on the public S3 host.
    download_url: String,
    expires_in: u64,
    #[schema(format = DateTime)]
    expires_at: String,
    filename: String,
    mime_type: String,
    file_size: i64,
}
