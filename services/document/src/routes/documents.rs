//! `/api/tenants/{tenant_id}/documents`: upload (multipart, the file streamed to S3 while
//! hashed, size-limited, deduplicated per tenant by MD5: `crate::upload`), list, read,
//! delete (the last document of a file removes the file and its object), download.

use actix_multipart::Multipart;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use domain::{DocumentId, FileId, Ownership, Permission, TenantId};
use events::{AuditRecord, DocumentUploaded, EventEnvelope, FileProcess};
use futures_util::{StreamExt, TryStreamExt};
use http_kit::identity::TenantMember;
use http_kit::{success, ApiError, FieldErrors, Query, RequestId};
use main_db::TxError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tenant_db::documents::{self as queries, DocumentRow, FileRow, NewDocument};
use uuid::Uuid;

use crate::app::App;
use crate::upload::{storage_failure, Received, Upload};

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

fn valid_filename(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err("must be 1 to 255 characters");
    }
    if name.contains('/') || name.contains('\\') || name.chars().any(char::is_control) {
        return Err("must not contain '/', '\\' or control characters");
    }
    Ok(name.to_owned())
}

fn valid_mime(mime: &str) -> Result<String, &'static str> {
    let mime = mime.trim().to_ascii_lowercase();
    let ok = mime.len() <= 255
        && mime.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
            };
            token(t) && token(s)
        });
    if ok {
        Ok(mime)
    } else {
        Err("must be type/subtype")
    }
}

/// A query that failed: its connection lost (the server restarting, the tenant's
/// database dropped by a purge under it) is a 503; anything else is ours, a 500.
pub(crate) fn db(e: diesel::result::Error) -> ApiError {
    if tenant_db::connection_lost(&e) {
        ApiError::dependency("Tenant database", e)
    } else {
        ApiError::internal(e)
    }
}

/// The request body, shared between the multipart parser and the check that it was
/// read to its end.
#[derive(Clone)]
struct SharedBody(std::rc::Rc<std::cell::RefCell<web::Payload>>);

impl futures_util::Stream for SharedBody {
    type Item = Result<Bytes, actix_web::error::PayloadError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.borrow_mut().poll_next_unpin(cx)
    }
}

impl SharedBody {
    /// Reads what follows the closing boundary (an epilogue, normally nothing) up to the
    /// end of the body: 400 if the body breaks off or stalls before its declared end.
    async fn drain(&self, idle: std::time::Duration) -> Result<(), ApiError> {
        let mut rest = 0usize;
        loop {
            let next = std::future::poll_fn(|cx| self.0.borrow_mut().poll_next_unpin(cx));
            match tokio::time::timeout(idle, next).await {
                Err(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "upload stalled: the body did not reach its declared length within {} s",
                        idle.as_secs()
                    )))
                }
                Ok(None) => return Ok(()),
                Ok(Some(Ok(chunk))) => {
                    rest += chunk.len();
                    if rest > 64 * 1024 {
                        return Err(ApiError::BadRequest(
                            "unexpected data after the multipart body".into(),
                        ));
                    }
                }
                Ok(Some(Err(e))) => {
                    return Err(ApiError::BadRequest(format!(
                        "the body ended before its declared length: {e}"
                    )))
                }
            }
        }
    }
}

/// The fields of an upload once its multipart body is read.
#[derive(Default)]
struct ReceivedForm {
    /// The `file` part, streamed to S3 (or held, if small) as it arrived.
    file: Option<Received>,
    errors: FieldErrors,
    filename: Option<String>,
    mime: Option<String>,
    part_filename: Option<String>,
    part_mime: Option<String>,
}

impl ReceivedForm {
    /// Drops whatever the file part made on S3 (the upload is not stored).
    async fn discard(&mut self) {
        if let Some(file) = self.file.take() {
            file.upload.discard().await;
        }
    }

    /// The file, its name and its content type, or the 400 saying what is wrong.
    fn check(&mut self) -> Result<(Received, String, String), ApiError> {
        let mut errors = std::mem::take(&mut self.errors);
        let size = self.file.as_ref().map(|f| f.upload.size);
        match size {
            None => {
                errors.add("file", "is required");
            }
            Some(0) => {
                errors.add("file", "must not be empty");
            }
            Some(_) => {}
        }
        let filename = match self.filename.take().or(self.part_filename.take()) {
            Some(name) => valid_filename(&name)
                .map_err(|m| errors.add("filename", m))
                .ok(),
            None => {
                errors.add("filename", "is required (as a field or in the file part)");
                None
            }
        };
        let mime = valid_mime(
            self.mime
                .take()
                .or(self.part_mime.take())
                .as_deref()
                .unwrap_or("application/octet-stream"),
        )
        .map_err(|m| errors.add("mime_type", m))
        .ok();
        errors.into_result()?;
        match (self.file.take(), filename, mime) {
            (Some(file), Some(filename), Some(mime)) => Ok((file, filename, mime)),
            _ => Err(ApiError::validation("body", "invalid")),
        }
    }
}

/// Reads the multipart body into `form`: the `file` part streams into an [`Upload`]
/// of a new File id (the size limit and the idle timeout enforced as it arrives), the
/// small `filename` and `mime_type` fields are read. On an error the caller discards
/// what the file part made.
async fn receive(
    app: &web::Data<App>,
    tenant: TenantId,
    database: &domain::TenantDatabaseName,
    mut multipart: Multipart,
    form: &mut ReceivedForm,
) -> Result<(), ApiError> {
    let limits = &app.uploads.settings;
    let idle = limits.idle_timeout;
    let stalled =
        || ApiError::BadRequest(format!("upload stalled: no data for {} s", idle.as_secs()));
    // Every wait for the client is bounded, between parts and inside each of them: a
    // client that stops sending holds its upload slot no longer than the idle timeout.
    while let Some(mut field) = tokio::time::timeout(idle, multipart.try_next())
        .await
        .map_err(|_| stalled())?
        .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" if form.file.is_some() => {
                // Keeping one of two files silently would store what the client did
                // not mean.
                return Err(ApiError::Validation(FieldErrors::single(
                    "file",
                    "only one file part is allowed",
                )));
            }
            "file" => {
                let file_id = Uuid::new_v4();
                let key = storage::object_key(database, file_id);
                let mut upload = Upload::new(app.clone(), tenant, key, file_id);
                let streamed = async {
                    let began = std::time::Instant::now();
                    loop {
                        let next = tokio::time::timeout(idle, field.next())
                            .await
                            .map_err(|_| stalled())?;
                        let Some(chunk) = next else { break };
                        let chunk = chunk.map_err(|e| {
                            ApiError::BadRequest(format!("upload interrupted: {e}"))
                        })?;
                        // A trickle holds a part buffer as long as a stall would: past
                        // the idle timeout, the file must have come at the minimum rate.
                        let elapsed = began.elapsed();
                        if elapsed > idle
                            && (upload.size as f64) < limits.min_rate as f64 * elapsed.as_secs_f64()
                        {
                            return Err(ApiError::BadRequest(format!(
                                "upload too slow: under {} bytes per second",
                                limits.min_rate
                            )));
                        }
                        if upload.size + chunk.len() as u64 > limits.max_bytes {
                            return Err(ApiError::PayloadTooLarge(format!(
                                "The file is larger than the limit of {} bytes",
                                limits.max_bytes
                            )));
                        }
                        upload.push(chunk).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = streamed {
                    upload.discard().await;
                    return Err(e);
                }
                form.part_filename = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .map(str::to_owned);
                form.part_mime = field.content_type().map(|m| m.essence_str().to_owned());
                match upload.finish().await {
                    Ok(received) => form.file = Some(received),
                    Err((upload, e)) => {
                        upload.discard().await;
                        return Err(e);
                    }
                }
            }
            "filename" | "mime_type" => {
                // Twice is ambiguous (which one?): refused, as a second file is, at
                // once (a body of many repeated fields must not pile up errors).
                if (name == "filename" && form.filename.is_some())
                    || (name == "mime_type" && form.mime.is_some())
                {
                    return Err(ApiError::validation(name, "must be given once"));
                }
                let mut text = Vec::new();
                while let Some(chunk) = tokio::time::timeout(idle, field.next())
                    .await
                    .map_err(|_| stalled())?
                {
                    let chunk =
                        chunk.map_err(|e| ApiError::BadRequest(format!("malformed field: {e}")))?;
                    if text.len() + chunk.len() > 1024 {
                        return Err(ApiError::validation(name, "is too long"));
                    }
                    text.extend_from_slice(&chunk);
                }
                let value = String::from_utf8(text).unwrap_or_default();
                if name == "filename" {
                    form.filename = Some(value);
                } else {
                    form.mime = Some(value);
                }
            }
            other => {
                // Refused at once: an unknown part is a client error whatever follows,
                // and collecting them would let one body grow the answer without bound.
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::validation(shown, "unknown field"));
            }
        }
    }
    Ok(())
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
    /// '/', '\\' or control characters.
    #[schema(value_type = String, required = false, min_length = 1, max_length = 255, pattern = "^[^/\\\\\\u0000-\\u001f\\u007f-\\u009f]*[^/\\\\\\s\\u0000-\\u001f\\u007f-\\u009f][^/\\\\\\u0000-\\u001f\\u007f-\\u009f]*$")]
    filename: Option<String>,
    /// The content type to store, `type/subtype` (else the `file` part's, else
    /// guessed).
    #[schema(value_type = String, required = false, max_length = 255, pattern = "^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")]
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
              (status = 503, description = "Object storage or a database unavailable (`service_unavailable`), or too many uploads in progress on this instance (`busy`, with `Retry-After`)", body = http_kit::ErrorBody)))]
pub async fn upload(
    app: web::Data<App>,
    member: TenantMember,
    request_id: RequestId,
    request: actix_web::HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    member.require(Permission::UploadDocument)?;
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
    let Received {
        mut upload,
        md5,
        sha256,
    } = received;

    let existing = async {
        let mut conn = app.connection(tenant).await?;
        queries::file_by_md5(&mut conn, &md5).await.map_err(db)
    }
    .await;
    let mut existing = match existing {
        Ok(existing) => existing,
        Err(e) => {
            upload.discard().await;
            return Err(e);
        }
    };
    let document_id = Uuid::new_v4();
    let user = member.user_id.into_uuid();
    let (file_id, key, size) = (upload.file_id, upload.key.clone(), upload.size as i64);
    // At most twice: a second time when the File this upload duplicated was deleted
    // between the look-up and the transaction (then the bytes are stored after all).
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        if let Some(file) = &existing {
            if file.sha256_hash != sha256 {
                upload.discard().await;
                return Err(collision(file));
            }
        }
        // New bytes become the object before their row exists; a failure after this
        // point removes the object again, so neither rows nor objects are left
        // half-made. A duplicate never becomes an object: its parts are aborted below.
        if existing.is_none() && !upload.is_stored() {
            let store_started = std::time::Instant::now();
            if let Err(e) = upload.store().await {
                upload.discard().await;
                return Err(e);
            }
            tracing::info!(
                bytes = upload.size,
                receive_ms,
                store_ms = store_started.elapsed().as_millis() as u64,
                "upload stored"
            );
        }
        let outcome = async {
            let mut conn = app.connection(tenant).await.map_err(Err)?;
            diesel_async::AsyncConnection::transaction::<_, Recording, _>(&mut *conn, async |tx| {
                let (file, new_file) = match &existing {
                    // Locked, so a deletion of the last Document on it waits for this one.
                    Some(file) => (
                        queries::lock_file_for_reuse(tx, file.id)
                            .await?
                            .ok_or(Recording::FileGone)?,
                        false,
                    ),
                    None => {
                        match queries::insert_file(tx, file_id, &md5, &sha256, &key, size).await? {
                            Some(file) => {
                                // Completed and now recorded as a File: no longer in flight.
                                queries::forget_upload(tx, &key).await?;
                                (file, true)
                            }
                            // A concurrent identical upload stored it first: use that one.
                            None => {
                                let file = queries::file_by_md5(tx, &md5)
                                    .await?
                                    .ok_or(Recording::FileGone)?;
                                if file.sha256_hash != sha256 {
                                    return Err(Recording::Collision(Box::new(file)));
                                }
                                (
                                    queries::lock_file_for_reuse(tx, file.id)
                                        .await?
                                        .ok_or(Recording::FileGone)?,
                                    false,
                                )
                            }
                        }
                    }
                };
                let doc = queries::insert_document(
                    tx,
                    NewDocument {
                        id: document_id,
                        filename: &filename,
                        mime_type: &mime,
                        file_id: file.id,
                        user_id: user,
                    },
                )
                .await?;
                let doc = if new_file {
                    doc
                } else {
                    queries::inherit_processing_status(tx, doc.id, file.id).await?
                };
                let (file_id, actor) = (FileId::from_uuid(file.id), Some(member.user_id));
                let uploaded = DocumentUploaded {
                    document_id: DocumentId::from_uuid(doc.id),
                    file_id,
                    filename: doc.filename.clone(),
                    deduplicated: !new_file,
                };
                let mut events = vec![EventEnvelope::of(&uploaded, Some(tenant), actor)];
                if new_file {
                    let process = FileProcess {
                        file_id,
                        s3_path: file.s3_path.clone(),
                        md5_hash: file.md5_hash.clone(),
                        sha256_hash: file.sha256_hash.clone(),
                    };
                    events.push(EventEnvelope::of(&process, Some(tenant), actor));
                }
                for event in events {
                    let event = event
                        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?
                        .with_request_id(Some(request_id.0.clone()));
                    events::enqueue(tx, &event).await?;
                }
                Ok((doc, file, new_file))
            })
            .await
            .map_err(|e| match e {
                Recording::Db(e) => Err(db(e)),
                Recording::Outbox(e) => Err(ApiError::internal(e)),
                other => Ok(other),
            })
        }
        .await;
        match outcome {
            Err(Ok(Recording::FileGone)) if attempts < 2 => existing = None,
            Err(Ok(Recording::Collision(file))) => {
                upload.discard().await;
                return Err(collision(&file));
            }
            Err(Ok(_)) => {
                break Err(ApiError::internal(std::io::Error::other(
                    "the file to reuse vanished twice",
                )))
            }
            Err(Err(e)) => break Err(e),
            Ok(done) => break Ok(done),
        }
    };
    match outcome {
        Ok((doc, file, new_file)) => {
            app.nudge(tenant);
            if new_file {
                upload.settled();
            } else {
                // A duplicate (its parts aborted, nothing was stored), or the twin that
                // lost the race (the object it completed is deleted).
                upload.discard().await;
            }
            Ok(success(
                StatusCode::CREATED,
                "Document uploaded successfully",
                body(doc, Some(file)),
            ))
        }
        Err(e) => {
            upload.discard().await;
            Err(e)
        }
    }
}

/// Why recording an upload did not commit.
enum Recording {
    Db(diesel::result::Error),
    /// The events could not be written (not a database failure: a bug).
    Outbox(events::OutboxError),
    /// The File it duplicates was deleted meanwhile.
    FileGone,
    /// A File with the same MD5 and another SHA-256.
    Collision(Box<FileRow>),
}

impl From<diesel::result::Error> for Recording {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

impl From<events::OutboxError> for Recording {
    fn from(e: events::OutboxError) -> Self {
        match e {
            events::OutboxError::Database(e) => Self::Db(e),
            other => Self::Outbox(other),
        }
    }
}

/// Two different contents with one MD5 (a crafted collision: MD5 is broken): the
/// upload is refused rather than made a Document on bytes that are not its own.
fn collision(file: &FileRow) -> ApiError {
    tracing::warn!(
        file_id = %file.id,
        "refused an upload whose MD5 matches a stored file with another SHA-256 (an MD5 collision)"
    );
    ApiError::conflict_code(
        "hash_collision",
        "Another file with the same MD5 but different content is stored in this tenant",
    )
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

async fn find(app: &App, tenant: TenantId, id: Uuid) -> Result<(DocumentRow, FileRow), ApiError> {
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
              (status = 404, body = http_kit::ErrorBody)))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_and_mime_types_are_validated() {
        assert!(valid_filename("ok.txt").is_ok());
        for bad in ["", "   ", "a/b", "a\\b", &"x".repeat(256)] {
            assert!(valid_filename(bad).is_err(), "{bad:?}");
        }
        assert_eq!(valid_mime("Text/Plain").as_deref(), Ok("text/plain"));
        for bad in ["text", "text/", "/plain", "text/plain; charset=x", "a/b/c"] {
            assert!(valid_mime(bad).is_err(), "{bad:?}");
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateDocument {
    /// A new name: not blank, no '/', '\\' or control characters.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = "^[^/\\\\\\u0000-\\u001f\\u007f-\\u009f]*[^/\\\\\\s\\u0000-\\u001f\\u007f-\\u009f][^/\\\\\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    filename: Option<String>,
    /// A new content type, `type/subtype`.
    #[schema(
        max_length = 255,
        pattern = "^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$"
    )]
    mime_type: Option<String>,
}

/// Rename a document or change its MIME type (its owner, or an admin).
#[utoipa::path(put, path = "/api/tenants/{tenant_id}/documents/{document_id}", tag = "documents",
    params(("tenant_id" = String, Path, format = Uuid), ("document_id" = String, Path, format = Uuid)),
    request_body = UpdateDocument,
    responses((status = 200, body = DocumentBody), (status = 400, body = http_kit::ErrorBody),
              (status = 403, body = http_kit::ErrorBody), (status = 404, body = http_kit::ErrorBody)))]
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
