//! An upload's `file` part, streamed into S3 as it arrives (docs/DESIGN-NOTES.md,
//! "Uploads streamed to S3").
//!
//! The bytes are gathered into parts of `UPLOAD_PART_BYTES`. The first full part starts
//! a multipart upload of the File's key (recorded in the tenant database's
//! `pending_uploads` before any part is sent); each part is then sent by its own task,
//! at most `UPLOAD_PARTS_IN_FLIGHT` at once, while MD5 and SHA-256 are computed over the
//! same bytes on blocking threads, part after part. A body smaller than one part never
//! reaches S3 before its hashes are known and goes as one PUT. Nothing touches the local
//! disk.
//!
//! Memory: every part buffer holds a permit of the instance's buffer budget
//! (`UPLOAD_BUFFER_BYTES` / `UPLOAD_PART_BYTES` buffers) from its first byte until both
//! its PUT and its hashing are over, so all uploads of an instance together hold at most
//! that much, and an upload that finds the budget spent waits (and stops reading its
//! client) until a part is sent.
//!
//! However an upload ends short of being stored (an error, the client leaving, the
//! request dropped), its multipart upload is aborted once its parts in flight are over,
//! and its record removed; if S3 cannot be told, the record stays for the sweep
//! ([`sweep_stale`]), which aborts what is older than `UPLOAD_STALE_SECS`.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use bytes::{Bytes, BytesMut};
use domain::TenantId;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use http_kit::lifecycle::CancellationToken;
use http_kit::ApiError;
use md5::Digest as _;
use storage::{StorageError, UploadedPart};
use tenant_db::documents as queries;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::app::App;

/// How uploads are received and stored.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Larger files are refused with 413 while they stream in (`MAX_UPLOAD_BYTES`).
    pub max_bytes: u64,
    /// An upload sending nothing this long is refused (`UPLOAD_IDLE_TIMEOUT_SECS`).
    pub idle_timeout: Duration,
    /// Past the idle timeout, a file part arriving slower than this many bytes per
    /// second on average is refused (`UPLOAD_CLIENT_MIN_RATE`).
    pub min_rate: u64,
    /// The size of every part but the last (`UPLOAD_PART_BYTES`).
    pub part_bytes: usize,
    /// Parts of one upload being sent at once (`UPLOAD_PARTS_IN_FLIGHT`).
    pub parts_in_flight: usize,
    /// Part buffers all uploads of the instance may hold together
    /// (`UPLOAD_BUFFER_BYTES` / `UPLOAD_PART_BYTES`).
    pub buffers: usize,
    /// Uploads received at once; past it, 503 `busy` (`UPLOAD_CONCURRENCY`).
    pub concurrency: usize,
    /// How long an upload waits for a part buffer before 503 `busy`
    /// (`UPLOAD_BUFFER_WAIT_MS`).
    pub buffer_wait: Duration,
    /// A recorded multipart upload older than this is taken for abandoned and aborted
    /// (`UPLOAD_STALE_SECS`).
    pub stale_after: Duration,
    /// How often the sweep looks for them (`UPLOAD_SWEEP_EVERY_SECS`).
    pub sweep_every: Duration,
}

/// The instance's upload limits, shared by every request.
pub struct Uploads {
    pub settings: UploadSettings,
    slots: Arc<Semaphore>,
    buffers: Arc<Semaphore>,
    pool: Arc<BufferPool>,
}

/// Part buffers given back once sent and hashed, for the next parts: the same memory
/// serves upload after upload instead of going back to the allocator (whose per-thread
/// arenas kept tens of MiB more resident under load). Never more buffers than the
/// budget has permits.
struct BufferPool {
    part_bytes: usize,
    free: std::sync::Mutex<Vec<BytesMut>>,
}

impl BufferPool {
    fn take(&self) -> BytesMut {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_else(|| BytesMut::with_capacity(self.part_bytes))
    }

    fn give_back(&self, mut buffer: BytesMut) {
        if buffer.capacity() == self.part_bytes {
            buffer.clear();
            self.free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(buffer);
        }
    }
}

impl Uploads {
    pub fn new(settings: UploadSettings) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            buffers: Arc::new(Semaphore::new(settings.buffers)),
            pool: Arc::new(BufferPool {
                part_bytes: settings.part_bytes,
                free: std::sync::Mutex::new(Vec::new()),
            }),
            settings,
        }
    }

    /// A place among the uploads received at once, or 503 `busy`.
    pub fn slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!(
                limit = self.settings.concurrency,
                "upload refused: UPLOAD_CONCURRENCY uploads are in progress"
            );
            ApiError::Busy {
                message: "Too many uploads in progress; retry shortly".into(),
                retry_after_secs: 1,
            }
        })
    }
}

impl Uploads {
    /// A part buffer of the instance's budget, within `UPLOAD_BUFFER_WAIT_MS`: when the
    /// budget is held by uploads that do not progress (slow or stalled clients, S3 slow
    /// to take parts), a client is better told to retry than left hanging.
    async fn buffer(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let wait = self.settings.buffer_wait;
        match tokio::time::timeout(wait, self.buffers.clone().acquire_owned()).await {
            Ok(permit) => permit.map_err(ApiError::internal),
            Err(_) => {
                tracing::warn!(
                    buffers = self.settings.buffers,
                    "upload refused: the part buffers (UPLOAD_BUFFER_BYTES) stayed in use"
                );
                Err(ApiError::Busy {
                    message: "Too many uploads in progress; retry shortly".into(),
                    retry_after_secs: 1,
                })
            }
        }
    }
}

/// A part's bytes and its share of the buffer budget, shared by its PUT and its
/// hashing. When the last of them lets go, the buffer goes back to the pool (when
/// nothing else still holds its bytes), then the permit to the budget.
#[derive(Clone)]
struct Part(Arc<PartInner>);

struct PartInner {
    bytes: Bytes,
    pool: Arc<BufferPool>,
    _permit: OwnedSemaphorePermit,
}

impl Part {
    fn new(buffer: BytesMut, pool: Arc<BufferPool>, permit: OwnedSemaphorePermit) -> Self {
        Self(Arc::new(PartInner {
            bytes: buffer.freeze(),
            pool,
            _permit: permit,
        }))
    }

    fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }
}

impl Drop for PartInner {
    fn drop(&mut self) {
        if let Ok(buffer) = std::mem::take(&mut self.bytes).try_into_mut() {
            self.pool.give_back(buffer);
        }
    }
}

/// MD5 and SHA-256 of the parts in order, each part hashed by two blocking tasks
/// (one per hash) while the next part is gathered.
struct Hasher {
    state: Option<(md5::Md5, sha2::Sha256)>,
    pending: Option<(JoinHandle<md5::Md5>, JoinHandle<sha2::Sha256>)>,
}

impl Hasher {
    fn new() -> Self {
        Self {
            state: Some((md5::Md5::new(), sha2::Sha256::new())),
            pending: None,
        }
    }

    async fn settle(&mut self) -> Result<(), ApiError> {
        if let Some((md5, sha)) = self.pending.take() {
            let md5 = md5.await.map_err(ApiError::internal)?;
            let sha = sha.await.map_err(ApiError::internal)?;
            self.state = Some((md5, sha));
        }
        Ok(())
    }

    async fn feed(&mut self, part: &Part) -> Result<(), ApiError> {
        self.settle().await?;
        let (mut md5, mut sha) = self
            .state
            .take()
            .ok_or_else(|| ApiError::internal(std::io::Error::other("the hashes are taken")))?;
        let (for_md5, for_sha) = (part.clone(), part.clone());
        let md5 = tokio::task::spawn_blocking(move || {
            md5.update(for_md5.bytes());
            md5
        });
        let sha = tokio::task::spawn_blocking(move || {
            sha.update(for_sha.bytes());
            sha
        });
        self.pending = Some((md5, sha));
        Ok(())
    }

    /// The MD5 and SHA-256 in lowercase hex.
    async fn finish(&mut self) -> Result<(String, String), ApiError> {
        self.settle().await?;
        let (md5, sha) = self
            .state
            .take()
            .ok_or_else(|| ApiError::internal(std::io::Error::other("the hashes are taken")))?;
        Ok((hex(&md5.finalize()), hex(&sha.finalize())))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type PartTask = JoinHandle<Result<UploadedPart, StorageError>>;

/// The multipart upload an upload became once it outgrew one part.
struct Multipart {
    upload_id: String,
    next_part: u32,
    in_flight: FuturesUnordered<PartTask>,
    sent: Vec<UploadedPart>,
}

/// S3 down or timing out is a 503 (retry later); anything else S3 refuses (bad
/// credentials, a missing bucket) is our fault: a 500, logged with its cause.
pub(crate) fn storage_failure(e: StorageError) -> ApiError {
    match e {
        StorageError::Unavailable(_) => ApiError::dependency("Object storage", e),
        other => ApiError::internal(other),
    }
}

fn part_failed(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(std::io::Error::other(format!("a part's task failed: {e}")))
}

/// How an upload's bytes wait once all of them are in.
enum Held {
    /// Smaller than a part: in memory, not yet sent.
    Small(Part),
    /// Every part sent; the multipart upload awaits completion or abortion.
    Parts {
        upload_id: String,
        parts: Vec<UploadedPart>,
    },
}

/// A `file` part being received, then held until it is stored or discarded.
pub struct Upload {
    app: web::Data<App>,
    tenant: TenantId,
    /// The File the bytes become, if they are new to the tenant.
    pub file_id: Uuid,
    /// Its object key.
    pub key: String,
    pub size: u64,
    buffer: BytesMut,
    permit: Option<OwnedSemaphorePermit>,
    hasher: Hasher,
    multipart: Option<Multipart>,
    held: Option<Held>,
    /// Recorded in `pending_uploads` (a multipart upload was started).
    recorded: bool,
    /// The object exists (`store` succeeded).
    stored: bool,
}

/// An upload whose bytes are all in: its hashes, and how to store or drop it.
pub struct Received {
    pub upload: Upload,
    pub md5: String,
    pub sha256: String,
}

/// Content type of every stored object: what a browser does with the bytes is decided
/// per download (`serving`), never by the object.
const OBJECT_TYPE: &str = "application/octet-stream";

impl Upload {
    pub fn new(app: web::Data<App>, tenant: TenantId, key: String, file_id: Uuid) -> Self {
        Self {
            app,
            tenant,
            file_id,
            key,
            size: 0,
            buffer: BytesMut::new(),
            permit: None,
            hasher: Hasher::new(),
            multipart: None,
            held: None,
            recorded: false,
            stored: false,
        }
    }

    fn part_bytes(&self) -> usize {
        self.app.uploads.settings.part_bytes
    }

    /// Takes in the next bytes of the file; sends each part as it fills.
    pub async fn push(&mut self, mut chunk: Bytes) -> Result<(), ApiError> {
        self.size += chunk.len() as u64;
        let part_bytes = self.part_bytes();
        while !chunk.is_empty() {
            if self.permit.is_none() {
                self.permit = Some(self.app.uploads.buffer().await?);
            }
            let take = chunk.len().min(part_bytes - self.buffer.len());
            self.make_room();
            self.buffer.extend_from_slice(&chunk.split_to(take));
            if self.buffer.len() == part_bytes {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    /// Makes sure there is a buffer to fill: one of the pool (allocated once, at the size
    /// of a part, and reused; its pages become resident only as they are written).
    fn make_room(&mut self) {
        if self.buffer.capacity() == 0 {
            self.buffer = self.app.uploads.pool.take();
        }
    }

    /// Hands the full (or last) buffer to the hashes and to S3.
    async fn send_part(&mut self) -> Result<(), ApiError> {
        let permit = self
            .permit
            .take()
            .ok_or_else(|| ApiError::internal(std::io::Error::other("a part without a buffer")))?;
        let part = Part::new(
            std::mem::take(&mut self.buffer),
            self.app.uploads.pool.clone(),
            permit,
        );
        self.hasher.feed(&part).await?;
        if self.multipart.is_none() {
            self.begin().await?;
        }
        let limit = self.app.uploads.settings.parts_in_flight;
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(ApiError::internal(std::io::Error::other(
                "no multipart upload",
            )));
        };
        // Parts already over are collected, so a failure is seen at once.
        while let Some(Some(done)) =
            futures_util::FutureExt::now_or_never(multipart.in_flight.next())
        {
            multipart
                .sent
                .push(done.map_err(part_failed)?.map_err(storage_failure)?);
        }
        while multipart.in_flight.len() >= limit {
            if let Some(done) = multipart.in_flight.next().await {
                multipart
                    .sent
                    .push(done.map_err(part_failed)?.map_err(storage_failure)?);
            }
        }
        let number = multipart.next_part;
        if u64::from(number) > storage::MAX_PARTS {
            return Err(ApiError::PayloadTooLarge(format!(
                "The file has more than {} parts of {} bytes",
                storage::MAX_PARTS,
                self.app.uploads.settings.part_bytes
            )));
        }
        multipart.next_part += 1;
        let storage = self.app.storage.clone();
        let (key, upload_id) = (self.key.clone(), multipart.upload_id.clone());
        multipart.in_flight.push(tokio::spawn(async move {
            // `part` is held until the PUT is over: its buffer then goes back to the pool.
            storage
                .put_part(&key, &upload_id, number, part.bytes().clone())
                .await
        }));
        Ok(())
    }

    /// Starts the multipart upload and records it before any part is sent.
    async fn begin(&mut self) -> Result<(), ApiError> {
        let upload_id = self
            .app
            .storage
            .start_multipart(&self.key, OBJECT_TYPE)
            .await
            .map_err(storage_failure)?;
        let recorded = async {
            let mut conn = self.app.connection(self.tenant).await?;
            queries::record_upload(&mut conn, &self.key, &upload_id)
                .await
                .map_err(crate::app::db)
        }
        .await;
        if let Err(e) = recorded {
            // Not recorded, so nothing else would ever abort it.
            if let Err(abort) = self
                .app
                .storage
                .abort_multipart(&self.key, &upload_id)
                .await
            {
                tracing::error!(key = %self.key, error = %abort, "could not abort an unrecorded multipart upload");
            }
            return Err(e);
        }
        self.recorded = true;
        self.multipart = Some(Multipart {
            upload_id,
            next_part: 1,
            in_flight: FuturesUnordered::new(),
            sent: Vec::new(),
        });
        Ok(())
    }

    /// The file part ended: sends the last part, waits for every part and the hashes.
    pub async fn finish(mut self) -> Result<Received, (Self, ApiError)> {
        match self.finish_inner().await {
            Ok((md5, sha256)) => Ok(Received {
                upload: self,
                md5,
                sha256,
            }),
            Err(e) => Err((self, e)),
        }
    }

    async fn finish_inner(&mut self) -> Result<(String, String), ApiError> {
        if self.multipart.is_none() {
            let permit = match self.permit.take() {
                Some(permit) => permit,
                None => self.app.uploads.buffer().await?,
            };
            let part = Part::new(
                std::mem::take(&mut self.buffer),
                self.app.uploads.pool.clone(),
                permit,
            );
            self.hasher.feed(&part).await?;
            let hashes = self.hasher.finish().await?;
            self.held = Some(Held::Small(part));
            return Ok(hashes);
        }
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(ApiError::internal(std::io::Error::other(
                "no multipart upload",
            )));
        };
        while let Some(done) = multipart.in_flight.next().await {
            multipart
                .sent
                .push(done.map_err(part_failed)?.map_err(storage_failure)?);
        }
        let hashes = self.hasher.finish().await?;
        let Some(mut multipart) = self.multipart.take() else {
            return Err(ApiError::internal(std::io::Error::other(
                "no multipart upload",
            )));
        };
        multipart.sent.sort_by_key(|p| p.number);
        self.held = Some(Held::Parts {
            upload_id: multipart.upload_id,
            parts: multipart.sent,
        });
        Ok(hashes)
    }

    /// Makes the held bytes the object at `key`: completes the multipart upload, or
    /// PUTs a small body. The upload's record stays until the File row that names the
    /// object is written (`queries::forget_upload` in that transaction).
    pub async fn store(&mut self) -> Result<(), ApiError> {
        let stored = match self.held.take() {
            Some(Held::Small(part)) => self
                .app
                .storage
                .put_bytes(&self.key, OBJECT_TYPE, part.bytes().clone())
                .await
                .map_err(storage_failure),
            Some(Held::Parts { upload_id, parts }) => {
                let result = self
                    .app
                    .storage
                    .complete_multipart(&self.key, &upload_id, parts.clone(), self.size)
                    .await
                    .map_err(storage_failure);
                if result.is_err() {
                    // Put back, so `discard` aborts it.
                    self.held = Some(Held::Parts { upload_id, parts });
                }
                result
            }
            None => Err(ApiError::internal(std::io::Error::other(
                "nothing held to store",
            ))),
        };
        self.stored = stored.is_ok();
        stored
    }

    /// Drops everything the upload made on S3 and its record: the multipart upload is
    /// aborted once its parts in flight are over (a part landing after the abort would
    /// stay on the server), or the object deleted if `store` made it. What S3 cannot
    /// be told now is left recorded for the sweep.
    pub async fn discard(mut self) {
        let (app, tenant, key) = (self.app.clone(), self.tenant, self.key.clone());
        let upload_id = self.take_upload_id().await;
        let recorded = std::mem::take(&mut self.recorded);
        let stored = std::mem::take(&mut self.stored);
        abandon(app, tenant, key, upload_id, recorded, stored).await;
    }

    /// The upload id of the multipart upload, once no part of it is in flight.
    async fn take_upload_id(&mut self) -> Option<String> {
        if let Some(mut multipart) = self.multipart.take() {
            while multipart.in_flight.next().await.is_some() {}
            return Some(multipart.upload_id);
        }
        match self.held.take() {
            Some(Held::Parts { upload_id, .. }) => Some(upload_id),
            _ => None,
        }
    }

    /// Whether `store` made the object.
    pub fn is_stored(&self) -> bool {
        self.stored
    }

    /// Marks the upload as stored and recorded: nothing to clean when it is dropped.
    pub fn settled(mut self) {
        self.multipart = None;
        self.held = None;
        self.recorded = false;
        self.stored = false;
    }
}

impl Drop for Upload {
    /// A request dropped mid-upload (the client left, the server stopping): the clean-up
    /// `discard` would do, in a task of its own.
    fn drop(&mut self) {
        let multipart = self.multipart.take();
        let held = self.held.take();
        let upload_id = match (&multipart, held) {
            (Some(m), _) => Some(m.upload_id.clone()),
            (None, Some(Held::Parts { upload_id, .. })) => Some(upload_id),
            _ => None,
        };
        let recorded = std::mem::take(&mut self.recorded);
        let stored = std::mem::take(&mut self.stored);
        if upload_id.is_none() && !recorded && !stored {
            return;
        }
        let (app, tenant, key) = (self.app.clone(), self.tenant, self.key.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(mut multipart) = multipart {
                    while multipart.in_flight.next().await.is_some() {}
                }
                abandon(app, tenant, key, upload_id, recorded, stored).await;
            });
        }
    }
}

/// Deletes the object when `stored`, else aborts `upload_id` of `key` (if any); then
/// forgets the record (if `recorded`). Logs and leaves the record for the sweep when S3
/// cannot answer.
async fn abandon(
    app: web::Data<App>,
    tenant: TenantId,
    key: String,
    upload_id: Option<String>,
    recorded: bool,
    stored: bool,
) {
    let cleaned = match (&upload_id, stored) {
        (_, true) => app.storage.delete(&key).await,
        (Some(upload_id), false) => match app.storage.abort_multipart(&key, upload_id).await {
            Ok(()) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        },
        (None, false) => Ok(()),
    };
    if let Err(e) = cleaned {
        if recorded {
            tracing::warn!(key = %key, error = %e, "could not clean up an upload on S3; the sweep will");
        } else {
            tracing::error!(key = %key, error = %e, "could not remove the object of a failed upload");
        }
        return;
    }
    if !recorded {
        return;
    }
    let forgotten = async {
        let mut conn = app.connection(tenant).await?;
        queries::forget_upload(&mut conn, &key)
            .await
            .map_err(crate::app::db)
    }
    .await;
    if let Err(e) = forgotten {
        tracing::warn!(key = %key, error = %e, "could not forget a cleaned-up upload; the sweep will");
    }
}

/// Runs [`sweep_stale`] every `UPLOAD_SWEEP_EVERY_SECS` (the first a period after the
/// start) until `stop` is cancelled.
pub async fn sweep_loop(app: web::Data<App>, stop: CancellationToken) {
    let every = app.uploads.settings.sweep_every;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match sweep_stale(&app, &stop).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(aborted = n, "upload sweep cleaned stale uploads"),
            Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
        }
    }
}

/// How many stale uploads one sweep handles per tenant database.
const SWEEP_BATCH: i64 = 100;

/// Aborts the multipart uploads of every tenant database recorded longer ago than
/// `UPLOAD_STALE_SECS` (a service killed mid-upload, S3 unreachable when an upload
/// failed), deletes an object completed but never recorded as a File, and forgets
/// them. Each is first claimed (its start moved to now), so two replicas sweeping at
/// once do not both handle it, and one that fails is tried again a period later.
/// Answers how many were cleaned. Once `stop` is cancelled it ends after the upload it
/// is on.
pub async fn sweep_stale(app: &App, stop: &CancellationToken) -> anyhow::Result<usize> {
    let stale_after = chrono::Duration::from_std(app.uploads.settings.stale_after)?;
    let mut cleaned = 0;
    for name in crate::app::placed_databases(&app.tenants, &app.pools, &app.servers).await? {
        if stop.is_cancelled() {
            break;
        }
        match sweep_database(app, &name, stale_after, stop).await {
            Ok(n) => cleaned += n,
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "upload sweep of a tenant database failed");
            }
        }
    }
    Ok(cleaned)
}

async fn sweep_database(
    app: &App,
    database: &domain::TenantDatabaseName,
    stale_after: chrono::Duration,
    stop: &CancellationToken,
) -> anyhow::Result<usize> {
    let mut conn = app.pools.get_background(database).await?;
    let stale =
        queries::stale_uploads(&mut conn, chrono::Utc::now() - stale_after, SWEEP_BATCH).await?;
    let mut cleaned = 0;
    for upload in stale {
        if stop.is_cancelled() {
            break;
        }
        if !queries::claim_upload(&mut conn, &upload).await? {
            continue;
        }
        match app
            .storage
            .abort_multipart(&upload.s3_key, &upload.upload_id)
            .await
        {
            // Gone already: it was completed (or aborted) before the service died.
            Ok(()) | Err(StorageError::NotFound | StorageError::Invalid(_)) => {}
            Err(e) => {
                tracing::warn!(key = %upload.s3_key, error = %e, "could not abort a stale upload; trying again later");
                continue;
            }
        }
        if !queries::file_with_key_exists(&mut conn, &upload.s3_key).await? {
            if let Err(e) = app.storage.delete(&upload.s3_key).await {
                tracing::warn!(key = %upload.s3_key, error = %e, "could not delete the object of a stale upload; trying again later");
                continue;
            }
        }
        queries::forget_upload(&mut conn, &upload.s3_key).await?;
        tracing::info!(key = %upload.s3_key, started_at = %upload.started_at, "aborted a stale upload");
        cleaned += 1;
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(part_bytes: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            part_bytes,
            free: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn free(pool: &BufferPool) -> usize {
        pool.free.lock().expect("pool").len()
    }

    #[tokio::test]
    async fn a_part_gives_its_buffer_and_permit_back_when_its_last_holder_lets_go() {
        let budget = Arc::new(Semaphore::new(1));
        let pool = pool(1024);
        let mut buffer = pool.take();
        assert_eq!(buffer.capacity(), 1024);
        buffer.extend_from_slice(&[7u8; 1024]);
        let part = Part::new(
            buffer,
            pool.clone(),
            budget.clone().acquire_owned().await.expect("permit"),
        );
        let (for_put, for_hash) = (part.clone(), part.clone());
        let sent = for_put.bytes().clone();
        drop((part, for_put, for_hash));
        // The PUT's copy of the bytes still lives: the buffer cannot be reused, it
        // goes back to the allocator instead; the permit is free all the same.
        assert_eq!(free(&pool), 0);
        assert_eq!(budget.available_permits(), 1);
        drop(sent);

        let mut buffer = pool.take();
        buffer.extend_from_slice(&[1u8; 1024]);
        let part = Part::new(
            buffer,
            pool.clone(),
            budget.clone().acquire_owned().await.expect("permit"),
        );
        let hashing = part.clone();
        drop(part);
        assert_eq!(budget.available_permits(), 0, "held while hashing");
        drop(hashing);
        assert_eq!(free(&pool), 1, "reused for the next part");
        assert_eq!(budget.available_permits(), 1);
        let again = pool.take();
        assert!(again.is_empty() && again.capacity() == 1024);
        assert_eq!(free(&pool), 0);
        // A buffer of another size (a part size changed) is not kept.
        pool.give_back(BytesMut::with_capacity(10));
        assert_eq!(free(&pool), 0);
    }
}
