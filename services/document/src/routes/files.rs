//! `/api/files/{tenant_id}/files`: the stored files of a tenant (deduplicated content),
//! with statistics; an admin may delete a file no document refers to.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use domain::{Permission, TenantId};
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, Query};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenant_db::documents::{self as queries, FileRow};
use uuid::Uuid;

use crate::app::App;

fn file_json(f: &FileRow) -> serde_json::Value {
    json!({
        "id": f.id,
        "md5_hash": f.md5_hash,
        "sha256_hash": f.sha256_hash,
        "s3_path": f.s3_path,
        "file_size": f.file_size,
        "created_at": http_kit::time::format(&f.created_at),
    })
}

fn mb(bytes: i64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    page: Option<i64>,
    per_page: Option<i64>,
    include_stats: Option<bool>,
}

/// Files, newest first; with `include_stats=true`, their count and total size, and each
/// file's `document_count`.
#[utoipa::path(get, path = "/api/files/{tenant_id}/files", tag = "files",
    params(("tenant_id" = String, Path, format = Uuid), ("page" = Option<i64>, Query), ("per_page" = Option<i64>, Query), ("include_stats" = Option<bool>, Query)),
    responses((status = 200, description = "`data`: {files, pagination, stats?}", body = FileList), (status = 400, body = http_kit::ErrorBody)))]
pub async fn list(
    app: web::Data<App>,
    member: TenantMember,
    query: Query<FilesQuery>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadFiles)?;
    let query = query.into_inner();
    let paging = http_kit::Page::parse(query.page, query.per_page)?;
    let mut conn = app.connection(member.tenant_id).await?;
    let (rows, total) = queries::file_page(&mut conn, paging.offset(), paging.per_page)
        .await
        .map_err(crate::app::db)?;
    let mut files: Vec<serde_json::Value> = rows.iter().map(file_json).collect();
    let mut data = json!({"pagination": paging.describe(total)});
    if query.include_stats.unwrap_or(false) {
        let (count, bytes) = queries::file_stats(&mut conn)
            .await
            .map_err(crate::app::db)?;
        data["stats"] = json!({"total_files": count, "total_storage_bytes": bytes, "total_storage_mb": mb(bytes)});
        // Each file's own count too, as the original's per-file statistics.
        let ids: Vec<Uuid> = rows.iter().map(|f| f.id).collect();
        let counts = queries::document_counts(&mut conn, &ids)
            .await
            .map_err(crate::app::db)?;
        for (json, row) in files.iter_mut().zip(&rows) {
            json["document_count"] = json!(counts.get(&row.id).copied().unwrap_or(0));
        }
    }
    data["files"] = json!(files);
    Ok(success(StatusCode::OK, "Files retrieved", data))
}

/// A file with the documents that refer to it.
#[utoipa::path(get, path = "/api/files/{tenant_id}/files/{file_id}", tag = "files",
    params(("tenant_id" = String, Path, format = Uuid), ("file_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: File + document_count, is_orphaned, documents", body = FileDetail), (status = 404, body = http_kit::ErrorBody)))]
pub async fn get(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::ReadFiles)?;
    let id = path.into_inner().1;
    let mut conn = app.connection(member.tenant_id).await?;
    let file = queries::file(&mut conn, id)
        .await
        .map_err(crate::app::db)?
        .ok_or(ApiError::NotFound("File"))?;
    let docs = queries::documents_of_file(&mut conn, id)
        .await
        .map_err(crate::app::db)?;
    let mut data = file_json(&file);
    data["document_count"] = json!(docs.len());
    data["is_orphaned"] = json!(docs.is_empty());
    data["documents"] = json!(docs
        .iter()
        .map(|d| json!({"id": d.id, "filename": d.filename, "mime_type": d.mime_type, "created_at": http_kit::time::format(&d.created_at)}))
        .collect::<Vec<_>>());
    Ok(success(StatusCode::OK, "File retrieved", data))
}

/// Delete a file no document refers to, with its object (admin); 400 while documents
/// refer to it.
#[utoipa::path(delete, path = "/api/files/{tenant_id}/files/{file_id}", tag = "files",
    params(("tenant_id" = String, Path, format = Uuid), ("file_id" = String, Path, format = Uuid)),
    responses((status = 200, description = "`data`: {file_id, md5_hash, freed_storage_bytes, freed_storage_mb}", body = FileDeleted),
              (status = 400, body = http_kit::ErrorBody), (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
pub async fn delete(
    app: web::Data<App>,
    member: TenantMember,
    path: web::Path<(TenantId, Uuid)>,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::DeleteFile)?;
    let id = path.into_inner().1;
    let mut conn = app.connection(member.tenant_id).await?;
    // One transaction: the file row stays locked from the check to the deletion, so an
    // upload reusing the file meanwhile is either seen or waits.
    let outcome = diesel_async::AsyncConnection::transaction::<_, diesel::result::Error, _>(
        &mut *conn,
        async |tx| queries::delete_unreferenced_file(tx, id).await,
    )
    .await
    .map_err(crate::app::db)?;
    let file = match outcome {
        None => return Err(ApiError::NotFound("File")),
        Some(Err(count)) => {
            return Err(ApiError::BadRequest(format!(
                "{count} document(s) still refer to this file"
            )));
        }
        Some(Ok(file)) => file,
    };
    if let Err(e) = app.storage.delete(&file.s3_path).await {
        tracing::error!(key = %file.s3_path, error = %e, "could not delete the object of a deleted file");
    }
    Ok(success(
        StatusCode::OK,
        "File deleted successfully",
        json!({"file_id": file.id, "md5_hash": file.md5_hash, "freed_storage_bytes": file.file_size, "freed_storage_mb": mb(file.file_size)}),
    ))
}

// What the answers built with `json!` hold, for the API document (the contract lane
// checks each against the real answers).

/// `data` of a file's deletion.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FileDeleted {
    #[schema(format = Uuid)]
    file_id: String,
    md5_hash: String,
    freed_storage_bytes: i64,
    freed_storage_mb: f64,
}

/// A stored file (what `file_json` builds).
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StoredFile {
    #[schema(format = Uuid)]
    id: String,
    md5_hash: String,
    sha256_hash: String,
    s3_path: String,
    file_size: i64,
    #[schema(format = DateTime)]
    created_at: String,
}

/// A file of the list: with `include_stats=true`, how many documents refer to it.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ListedFile {
    #[serde(flatten)]
    #[schema(inline)]
    file: StoredFile,
    /// With `include_stats=true` only.
    document_count: Option<i64>,
}

/// `stats` of the file list (`include_stats=true`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FileStats {
    total_files: i64,
    total_storage_bytes: i64,
    total_storage_mb: f64,
}

/// `data` of the file list.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FileList {
    files: Vec<ListedFile>,
    pagination: http_kit::pagination::Pagination,
    /// With `include_stats=true` only.
    stats: Option<FileStats>,
}

/// A document referring to a file.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FileDocument {
    #[schema(format = Uuid)]
    id: String,
    filename: String,
    mime_type: String,
    #[schema(format = DateTime)]
    created_at: String,
}

/// `data` of a file: the file, and the documents that refer to it.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct FileDetail {
    #[serde(flatten)]
    #[schema(inline)]
    file: StoredFile,
    document_count: u64,
    is_orphaned: bool,
    documents: Vec<FileDocument>,
}
