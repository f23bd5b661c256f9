//! Stored files after upload (`file.process`): re-reads the object from S3, checks its
//! MD5 and SHA-256 against what the upload recorded, sniffs its real type from its
//! first bytes, and records the result on the file and its documents (`processed`, or
//! `mismatch` when the bytes differ or are gone), with the processed event id, in the
//! tenant database. A deleted tenant's objects: `purge.rs`.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use domain::{TenantDatabaseName, TenantId};
use events::{EventEnvelope, FileProcess, Handler, HandlerError, Topic};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use md5::{Digest, Md5};
use sha2::Sha256;
use storage::{Storage, StorageError};
use tenant_db::schema::{documents, files};
use tenant_db::{ServerUrls, TenantPoolCache};
use uuid::Uuid;

use crate::audit::classify;

pub const PROCESS_CONSUMER: &str = "file-process";

/// How many leading bytes type detection looks at.
const SNIFF_BYTES: usize = 8192;

pub(crate) fn storage_error(e: StorageError) -> HandlerError {
    match e {
        StorageError::Unavailable(why) => HandlerError::Unavailable(format!("S3: {why}")),
        other => HandlerError::Failed(format!("S3: {other}")),
    }
}

pub(crate) fn tenant_error(e: clients::ClientError) -> HandlerError {
    HandlerError::Unavailable(format!("tenant service: {e}"))
}

/// The tenant's database, from the tenant service (any status but purged), recorded
/// in `pools` on its server.
async fn database_of(
    tenants: &clients::TenantClient,
    pools: &TenantPoolCache,
    servers: &ServerUrls,
    tenant: TenantId,
) -> Result<Option<TenantDatabaseName>, HandlerError> {
    let Some(found) = tenants
        .database_to_connect(tenant)
        .await
        .map_err(tenant_error)?
    else {
        return Ok(None);
    };
    servers
        .place(
            pools,
            &found.database_name,
            found.server.id,
            &found.server.url_ref,
        )
        .await
        .map(Some)
        .map_err(|e| HandlerError::Unavailable(format!("tenant database: {e}")))
}

/// The real type of content starting with `head`.
pub fn sniff(head: &[u8]) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    // A cut in the middle of a multi-byte character at the end is still text.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    if text && !head.contains(&0) {
        "text/plain".to_owned()
    } else {
        "application/octet-stream".to_owned()
    }
}

/// Checks stored files.
pub struct FileProcessor {
    pub storage: Storage,
    pub pools: TenantPoolCache,
    /// The URLs of the database servers tenants are on.
    pub servers: std::sync::Arc<ServerUrls>,
    pub tenants: clients::TenantClient,
}

struct Inspection {
    status: &'static str,
    detected: Option<String>,
}

impl FileProcessor {
    async fn inspect(
        &self,
        key: &str,
        md5: &str,
        sha256: &str,
    ) -> Result<Inspection, HandlerError> {
        let mut stream = match self.storage.get_stream(key).await {
            Ok(stream) => stream,
            Err(StorageError::NotFound) => {
                tracing::warn!(key, "the object of a file is missing");
                return Ok(Inspection {
                    status: "mismatch",
                    detected: None,
                });
            }
            Err(e) => return Err(storage_error(e)),
        };
        let (mut md5_hasher, mut sha_hasher) = (Md5::new(), Sha256::new());
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(storage_error)?;
            if head.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            // Hashing is CPU work: off the async threads, one chunk at a time.
            let (m, s) = tokio::task::spawn_blocking(move || {
                md5_hasher.update(&chunk);
                sha_hasher.update(&chunk);
                (md5_hasher, sha_hasher)
            })
            .await
            .map_err(|e| HandlerError::Failed(format!("hashing: {e}")))?;
            md5_hasher = m;
            sha_hasher = s;
        }
        let matches = hex(&md5_hasher.finalize()) == md5.trim()
            && hex(&sha_hasher.finalize()) == sha256.trim();
        if !matches {
            tracing::warn!(key, "stored bytes do not match the recorded hashes");
        }
        Ok(Inspection {
            status: if matches { "processed" } else { "mismatch" },
            detected: Some(sniff(&head)),
        })
    }

    async fn process(&self, event: &EventEnvelope) -> Result<(), HandlerError> {
        let tenant = event
            .tenant_id
            .ok_or_else(|| HandlerError::Invalid("file.process without a tenant".into()))?;
        let FileProcess {
            file_id,
            s3_path: key,
            md5_hash: md5,
            sha256_hash: sha256,
        } = event
            .decode()
            .map_err(|e| HandlerError::Invalid(e.to_string()))?;
        let file_id: Uuid = file_id.into_uuid();
        let Some(database) = database_of(&self.tenants, &self.pools, &self.servers, tenant).await?
        else {
            tracing::info!(tenant.id = %tenant, "file.process of an unknown tenant: skipped");
            return Ok(());
        };
        let mut conn = match self.pools.get(&database).await {
            Ok(conn) => conn,
            Err(e) => {
                // Gone: purged since (nothing left to record on), or moved since to
                // another server (asked again later).
                let gone = matches!(e, tenant_db::TenantDbError::Missing(_))
                    || e.to_string().contains("does not exist");
                if gone
                    && self
                        .tenants
                        .database(tenant)
                        .await
                        .map_err(tenant_error)?
                        .is_none()
                {
                    return Ok(());
                }
                return Err(HandlerError::Unavailable(format!("tenant database: {e}")));
            }
        };
        let inspection = self.inspect(&key, &md5, &sha256).await?;
        conn.transaction::<_, diesel::result::Error, _>(async |tx| {
            if events::claim(tx, PROCESS_CONSUMER, &[event.id])
                .await?
                .is_empty()
            {
                return Ok(());
            }
            diesel::update(files::table.find(file_id))
                .set((
                    files::processing_status.eq(inspection.status),
                    files::detected_mime_type.eq(&inspection.detected),
                    files::processed_at.eq(diesel::dsl::now),
                ))
                .execute(tx)
                .await?;
            diesel::update(documents::table.filter(documents::file_id.eq(file_id)))
                .set(documents::processing_status.eq(inspection.status))
                .execute(tx)
                .await?;
            Ok(())
        })
        .await
        .map_err(classify)?;
        tracing::info!(tenant.id = %tenant, file = %file_id, status = inspection.status,
            detected = ?inspection.detected, "file processed");
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Handler for FileProcessor {
    fn name(&self) -> &str {
        PROCESS_CONSUMER
    }

    fn handle<'a>(
        &'a self,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            // Each file on its own: a retried batch redoes only unclaimed ones.
            for event in events
                .iter()
                .filter(|e| e.event_type == Topic::FileProcess.as_str())
            {
                self.process(event).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn types_are_sniffed_from_content_not_names() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), "application/pdf");
        assert_eq!(
            sniff(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]),
            "image/png"
        );
        assert_eq!(sniff("plain words, ünïcödé".as_bytes()), "text/plain");
        assert_eq!(sniff(&[0, 1, 2, 3, 0xff]), "application/octet-stream");
        // Cut inside a multi-byte character: still text.
        assert_eq!(sniff(&"é".as_bytes()[..1]), "text/plain");
    }
}
