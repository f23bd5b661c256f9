//! `/api/tenants/{tenant_id}/documents`: upload (multipart, the file streamed to S3 while
//! hashed, size-limited, deduplicated per tenant by MD5: `crate::upload`), list, read,
//! delete (the last document of a file removes the file and its object), download.

use actix_multipart::Multipart;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use domain::{DocumentId, FileId, Ownership, Permission, TenantId};
use events::EventEnvelope;
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, FieldErrors, Query, RequestId};
use main_db::TxError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenant_db::documents::{self as queries, DocumentRow, FileRow};
use uuid::Uuid;

use crate::app::{db, App};
use crate::form::{receive, valid_filename, valid_mime, ReceivedForm, SharedBody};

#[derive(Serialize, utoipa::ToSchema)]
pub struct FileBody {
    md5_hash: String,
    sha256_hash: String,
    s3_path: String,
    file_size: i64,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentBody {
    #[schema(value_type = String, format = Uuid)]
    id: Uuid,
    filename: String,
    mime_type: String,
    #[schema(value_type = String, format = Uuid)]
    file_id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    user_id: Uuid,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    updated_at: DateTime<Utc>,
    #[schema(value_type = String, format = Uuid)]
    created_by: Uuid,
    /// `pending` until the event-worker re-read the stored bytes; then `processed`, or
    /// `mismatch` when they no longer match the hashes recorded at upload.
    processing_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<FileBody>,
}

fn body(doc: DocumentRow, file: Option<FileRow>) -> DocumentBody {
    DocumentBody {
        id: doc.id,
        filename: doc.filename,
        mime_type: doc.mime_type,
        file_id: doc.file_id,
        user_id: doc.user_id,
        created_at: doc.created_at,
        updated_at: doc.updated_at,
        created_by: doc.created_by,
        processing_status: doc.processing_status,
        file: file.map(|f| FileBody {
            md5_hash: f.md5_hash,
            sha256_hash: f.sha256_hash,
            s3_path: f.s3_path,
            file_size: f.file_size,
            created_at: f.created_at,
        }),
    }
}

/// The multipart form of an upload, for the API document (the handler reads the parts
/// as they stream; any other part is a 400 naming it).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The file's bytes: exactly one part (a second one is a 400); the part's own
    /// filename and content type are used when the fields below are absent.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    file: Vec<u8>,
    /// The document's name (required unless the `file` part has one): not blank, no
    /// '/', '\\', control or invisible formatting characters.
    #[schema(value_type = String, required = false, min_length = 1, max_length = 255, pattern = "^[^/\\\\\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b\\u200e\\u200f\\u202a-\\u202e\\u2028\\u2029\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb]*[^/\\\\\\s\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b\\u200e\\u200f\\u202a-\\u202e\\u2028\\u2029\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb][^/\\\\\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b\\u200e\\u200f\\u202a-\\u202e\\u2028\\u2029\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb]*$")]
    filename: Option<String>,
    /// The content type to store, `type/subtype` (else the `file` part's, else
    /// guessed).
    #[schema(value_type = String, required = false, max_length = 255, pattern = "^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")]
    mime_type: Option<String>,
}

/// Upload a document (multipart: `file`, optional `filename` and `mime_type`).
#[utoipa::path(post, path = "/api/tenants/{tenant_id}/documents", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid)),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses((status = 201, description = "`data`: Document + file", body = DocumentBody),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody),
              (status = 409, description = "`hash_collision`: another file of this tenant has the same MD5 and different content", body = http_kit::ErrorBody),
              (status = 413, body = http_kit::ErrorBody),
              (status = 503, description = "Object storage or a database unavailable (`service_unavailable`), too many uploads in progress on this instance (`busy`, with `Retry-After`), or the tenant is being moved to another database server (`tenant_maintenance`, with `Retry-After`)", body = http_kit::ErrorBody)))]
pub async fn upload(
    app: web::Data<App>,
    member: TenantMember,
    request_id: RequestId,
    request: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::UploadDocument)?;
    let multipart_body = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    if !multipart_body {
        return Err(ApiError::UnsupportedMediaType(
            "An upload is multipart/form-data with a `file` part".into(),
        ));
    }
    let _slot = app.uploads.slot()?;
    let started = std::time::Instant::now();
    let tenant = member.tenant_id;
    let database = app.database(tenant).await?;
    let request_body = SharedBody(std::rc::Rc::new(std::cell::RefCell::new(payload)));
    let multipart = Multipart::new(request.headers(), request_body.clone());
    let mut form = ReceivedForm::default();
    let read = async {
        receive(&app, tenant, &database, multipart, &mut form).await?;
        // The closing boundary is not the end of the body: a body that ends before its
        // declared length (or never ends) is refused, and its file is not stored.
        request_body.drain(app.uploads.settings.idle_timeout).await
    }
    .await;
    let checked = read.and_then(|()| form.check());
    let (received, filename, mime) = match checked {
        Ok(checked) => checked,
        Err(e) => {
            form.discard().await;
            return Err(e);
        }
    };
    let receive_ms = started.elapsed().as_millis() as u64;
    let (doc, file) = crate::recording::record(
        &app,
        &member,
        &request_id,
        received,
        &filename,
        &mime,
        receive_ms,
    )
    .await?;
    Ok(success(
        StatusCode::CREATED,
        "Document uploaded successfully",
        body(doc, Some(file)),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    filename: Option<String>,
}

/// List documents, newest first (`per_page` 1–100, `page` ≥ 1, `filename` a literal,
/// case-insensitive substring).
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/documents", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid), ("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query), ("filename" = Option<String>, Query)),
    responses((status = 200, description = "`data`: {documents, pagination}", body = DocumentList), (status = 400, body = http_kit::ErrorBody)))]
pub async fn list(
    app: web::Data<App>,
    member: TenantMember,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadDocuments)?;
    let query = query.into_inner();
    let paging = http_kit::Page::parse(query.page, query.per_page)?;
    let mut conn = app.connection(member.tenant_id).await?;
    let (rows, total) = queries::page(
        &mut conn,
        query.filename.as_deref(),
        paging.offset(),
        paging.per_page,
    )
    .await
    .map_err(db)?;
    let page = DocumentList {
        documents: rows.into_iter().map(|d| body(d, None)).collect(),
        pagination: paging.pagination(total),
    };
    Ok(success(StatusCode::OK, "Documents retrieved", page))
}

pub(super) async fn find(
    app: &App,
    tenant: TenantId,
    id: Uuid,
) -> Result<(DocumentRow, FileRow), ApiError> {
    let mut conn = app.connection(tenant).await?;
    let doc = queries::document(&mut conn, id)
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound("Document"))?;
    let file = queries::file(&mut conn, doc.file_id)
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound("Document"))?;
    Ok((doc, file))
}

/// A document with its file.
#[utoipa::path(get, path = "/api/tenants/{tenant_id}/documents/{document_id}", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid), ("document_id" = String, Path, format = Uuid)),
    responses((status = 200, body = DocumentBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn get(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadDocuments)?;
    let (doc, file) = find(&app, member.tenant_id, path.into_inner().1).await?;
    Ok(success(
        StatusCode::OK,
        "Document retrieved",
        body(doc, Some(file)),
    ))
}

/// Delete a document (its owner, or an admin); the last document of a file removes the
/// file and its object.
#[utoipa::path(delete, path = "/api/tenants/{tenant_id}/documents/{document_id}", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid), ("document_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: {deleted_document_id, file_orphaned}", body = DocumentDeleted), (status = 403, body = http_kit::ErrorBody),
              (status = 404, body = http_kit::ErrorBody),
              (status = 503, description = "A database or object storage unavailable (`service_unavailable`), or the tenant is being moved to another database server (`tenant_maintenance`, with `Retry-After`; reads go on)", body = http_kit::ErrorBody)))]
pub async fn delete(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
    request_id: RequestId,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadDocuments)?;
    let id = path.into_inner().1;
    let tenant = member.tenant_id;
    let mut conn = app.connection(tenant).await?;
    let doc = queries::document(&mut conn, id)
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound("Document"))?;
    let ownership = if doc.user_id == member.user_id.into_uuid() {
        Ownership::Own
    } else {
        Ownership::Other
    };
    member.require(Permission::DeleteDocument(ownership))?;
    let deleted = events::DocumentDeleted {
        document_id: DocumentId::from_uuid(id),
        file_id: FileId::from_uuid(doc.file_id),
    };
    let event = EventEnvelope::of(&deleted, Some(tenant), Some(member.user_id))
        .map_err(ApiError::internal)?
        .with_request_id(Some(request_id.0));
    let orphaned =
        diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
            if !queries::delete_document(tx, id).await? {
                return Err(ApiError::NotFound("Document").into());
            }
            let orphaned = queries::delete_file_if_orphaned(tx, doc.file_id).await?;
            main_db::enqueue(tx, &event).await?;
            Ok(orphaned)
        })
        .await?;
    app.nudge(tenant);
    if let Some(file) = &orphaned {
        // After the commit: a failure leaves an unreferenced object, never a row
        // pointing at nothing.
        if let Err(e) = app.storage.delete(&file.s3_path).await {
            tracing::error!(key = %file.s3_path, error = %e, "could not delete the object of an orphaned file");
        }
    }
    Ok(success(
        StatusCode::OK,
        "Document deleted successfully",
        json!({"deleted_document_id": id, "file_orphaned": orphaned.is_some()}),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateDocument {
    /// A new name: not blank, no '/', '\\', control or invisible formatting characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^/\\\\\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b\\u200e\\u200f\\u202a-\\u202e\\u2028\\u2029\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb]*[^/\\\\\\s\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b\\u200e\\u200f\\u202a-\\u202e\\u2028\\u2029\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb][^/\\\\\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u180e\\u200b\\u200e\\u200f\\u202a-\\u202e\\u2028\\u2029\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb]*$"
    )]
    filename: Option<String>,
    /// A new content type, `type/subtype`.
    #[schema(
        max_length = 255,
        pattern = "^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$"
    )]
    mime_type: Option<String>,
}

/// Rename a document or change its MIME type (its owner, or an admin).
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/documents/{document_id}", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid), ("document_id" = String, Path, format = Uuid)),
    request_body = UpdateDocument,
    responses((status = 200, body = DocumentBody), (status = 400, body = http_kit::ErrorBody),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody),
              (status = 503, description = "A database or object storage unavailable (`service_unavailable`), or the tenant is being moved to another database server (`tenant_maintenance`, with `Retry-After`; reads go on)", body = http_kit::ErrorBody)))]
pub async fn update(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
    input: http_kit::Json<UpdateDocument>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadDocuments)?;
    let input = input.into_inner();
    let mut errors = FieldErrors::new();
    if input.filename.is_none() && input.mime_type.is_none() {
        errors.add("body", "give filename, mime_type or both");
    }
    let filename = input
        .filename
        .as_deref()
        .map(valid_filename)
        .transpose()
        .map_err(|m| errors.add("filename", m))
        .ok()
        .flatten();
    let mime = input
        .mime_type
        .as_deref()
        .map(valid_mime)
        .transpose()
        .map_err(|m| errors.add("mime_type", m))
        .ok()
        .flatten();
    errors.into_result()?;
    let id = path.into_inner().1;
    let mut conn = app.connection(member.tenant_id).await?;
    let doc = queries::document(&mut conn, id)
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound("Document"))?;
    let ownership = if doc.user_id == member.user_id.into_uuid() {
        Ownership::Own
    } else {
        Ownership::Other
    };
    member.require(Permission::UpdateDocument(ownership))?;
    let doc = queries::update_document(&mut conn, id, filename.as_deref(), mime.as_deref())
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound("Document"))?;
    Ok(success(
        StatusCode::OK,
        "Document updated successfully",
        body(doc, None),
    ))
}

/// `data` of the document list.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DocumentList {
    documents: Vec<DocumentBody>,
    pagination: http_kit::pagination::Pagination,
}

/// `data` of a deletion.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DocumentDeleted {
    #[schema(format = Uuid)]
    deleted_document_id: String,
    /// No other document refers to its file any more.
    file_orphaned: bool,
}
