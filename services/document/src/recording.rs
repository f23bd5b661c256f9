//! What a received upload becomes (docs/DESIGN-NOTES.md, "Uploads streamed to S3"):
//! deduplicated per tenant by MD5 (a File with the same MD5 and another SHA-256 is a
//! 409 `hash_collision`), stored as an object only when its bytes are new, and
//! recorded as a Document (and a new File) with its events in one transaction of the
//! tenant database. A concurrent twin that loses the race uses the winner's File and
//! removes its own object; a File deleted between the look-up and the transaction is
//! stored after all. Whatever fails leaves neither rows nor objects.

use domain::{DocumentId, FileId};
use events::{DocumentUploaded, EventEnvelope, FileProcess};
use http_kit::identity::TenantMember;
use http_kit::{ApiError, RequestId};
use tenant_db::documents::{self as queries, DocumentRow, FileRow, NewDocument};
use uuid::Uuid;

use crate::app::{db, App};
use crate::upload::Received;

/// Records `received` as a Document named `filename` of type `mime` for `member`'s
/// tenant: the Document and its File.
pub async fn record(
    app: &App,
    member: &TenantMember,
    request_id: &RequestId,
    received: Received,
    filename: &str,
    mime: &str,
    receive_ms: u64,
) -> Result<(DocumentRow, FileRow), ApiError> {
    let tenant = member.tenant_id;
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
                        filename,
                        mime_type: mime,
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
            Ok((doc, file))
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
