//! Object storage on S3 (rust-s3, path-style, custom endpoint): the key scheme, uploads
//! (one PUT, or a multipart upload part by part), streaming download, delete, and
//! presigned GET URLs
//! signed for the public endpoint (`S3_PUBLIC_URL`) while the service itself talks to
//! the internal one (`S3_ENDPOINT_URL`). Every call has a timeout.

use std::time::Duration;

use bytes::Bytes;
use domain::TenantDatabaseName;
use futures_util::{Stream, StreamExt};
use s3::creds::Credentials;
use s3::{Bucket, BucketConfiguration, Region};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage is misconfigured: {0}")]
    Config(String),
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    #[error("object not found")]
    NotFound,
    #[error("invalid request: {0}")]
    Invalid(String),
}

fn classify(e: s3::error::S3Error) -> StorageError {
    use s3::error::S3Error as E;
    match e {
        E::HttpFailWithBody(status, body) => from_status(status, &body),
        other => StorageError::Unavailable(other.to_string()),
    }
}

/// What an S3 error answer means: 404 not found, other 4xx a bad request, 5xx down.
fn from_status(status: u16, body: &str) -> StorageError {
    let answer = format!(
        "S3 answered {status}: {}",
        body.chars().take(200).collect::<String>()
    );
    match status {
        404 => StorageError::NotFound,
        s if s < 500 => StorageError::Invalid(answer),
        _ => StorageError::Unavailable(answer),
    }
}

/// Where and how to reach the bucket.
#[derive(Clone)]
pub struct StorageSettings {
    /// What the service talks to, e.g. `http://minio:9000`.
    pub endpoint_url: String,
    /// What presigned URLs name, e.g. `https://files.example.com`.
    pub public_url: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// Limit of each S3 request; an upload's PUT also gets a second per
    /// `min_upload_rate` bytes.
    pub request_timeout: Duration,
    /// The slowest transfer an upload may fall to before its timeout ends it, in bytes
    /// per second (`S3_UPLOAD_MIN_RATE`).
    pub min_upload_rate: u64,
}

impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSettings")
            .field("endpoint_url", &self.endpoint_url)
            .field("public_url", &self.public_url)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key", &"[redacted]")
            .field("secret_key", &"[redacted]")
            .field("request_timeout", &self.request_timeout)
            .field("min_upload_rate", &self.min_upload_rate)
            .finish()
    }
}

/// The object key of a stored file: `tenants/{database_name}/files/{id[0:2]}/{id}`, `id`
/// being the File's (random) UUID, so keys spread over prefixes and are known before
/// the first byte arrives: an upload can stream to S3 while it is hashed. Files stored
/// before issue 19 keep their key (`…/files/{md5[0:2]}/{md5[2:4]}/{md5}_{uuid}`), which
/// their row records; nothing derives a key from a hash any more.
pub fn object_key(database: &TenantDatabaseName, id: uuid::Uuid) -> String {
    let id = id.to_string();
    format!("tenants/{database}/files/{}/{id}", &id[0..2])
}

/// The prefix holding every object of a tenant (for purging).
pub fn tenant_prefix(database: &TenantDatabaseName) -> String {
    format!("tenants/{database}/")
}

/// The smallest part of a multipart upload other than the last (S3's rule).
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;

/// The most parts one multipart upload may have (S3's rule).
pub const MAX_PARTS: u64 = 10_000;

/// A part S3 accepted: its number and the ETag completing the upload needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedPart {
    pub number: u32,
    pub etag: String,
}

#[derive(Clone)]
pub struct Storage {
    bucket: Box<Bucket>,
    public: Box<Bucket>,
    http: reqwest::Client,
    settings: StorageSettings,
}

fn bucket_for(endpoint: &str, settings: &StorageSettings) -> Result<Box<Bucket>, StorageError> {
    let region = Region::Custom {
        region: settings.region.clone(),
        endpoint: endpoint.trim_end_matches('/').to_owned(),
    };
    let credentials = Credentials::new(
        Some(&settings.access_key),
        Some(&settings.secret_key),
        None,
        None,
        None,
    )
    .map_err(|e| StorageError::Config(e.to_string()))?;
    Bucket::new(&settings.bucket, region, credentials)
        .map_err(|e| StorageError::Config(e.to_string()))?
        .with_path_style()
        .with_request_timeout(settings.request_timeout)
        .map_err(|e| StorageError::Config(e.to_string()))
}

impl Storage {
    pub fn new(settings: StorageSettings) -> Result<Self, StorageError> {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.request_timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        Ok(Self {
            bucket: bucket_for(&settings.endpoint_url, &settings)?,
            public: bucket_for(&settings.public_url, &settings)?,
            http,
            settings,
        })
    }

    /// Checks the bucket exists; creates it when `create` (S3_CREATE_BUCKET) is set.
    pub async fn ensure_bucket(&self, create: bool) -> Result<(), StorageError> {
        // A one-key listing of the bucket: cheaper than listing every bucket, and it
        // works on servers whose bucket list lacks fields rust-s3 expects.
        match self
            .bucket
            .list_page(String::new(), None, None, None, Some(1))
            .await
            .map_err(classify)
        {
            Ok(_) => return Ok(()),
            Err(StorageError::NotFound) => {}
            Err(e) => return Err(e),
        }
        if !create {
            return Err(StorageError::Config(format!(
                "bucket {:?} does not exist",
                self.settings.bucket
            )));
        }
        let region = Region::Custom {
            region: self.settings.region.clone(),
            endpoint: self.settings.endpoint_url.clone(),
        };
        let credentials = Credentials::new(
            Some(&self.settings.access_key),
            Some(&self.settings.secret_key),
            None,
            None,
            None,
        )
        .map_err(|e| StorageError::Config(e.to_string()))?;
        Bucket::create_with_path_style(
            &self.settings.bucket,
            region,
            credentials,
            BucketConfiguration::private(),
        )
        .await
        .map_err(classify)?;
        tracing::info!(bucket = %self.settings.bucket, "created the bucket");
        Ok(())
    }

    /// The timeout of a request carrying `bytes`: `request_timeout` plus a second per
    /// `min_upload_rate` bytes.
    fn transfer_timeout(&self, bytes: u64) -> Duration {
        self.settings.request_timeout
            + Duration::from_secs(bytes / self.settings.min_upload_rate.max(1))
    }

    /// PUTs `body` to `key` (with `queries`, e.g. a part's number and upload id) through
    /// a URL signed with query parameters: S3 treats the payload as `UNSIGNED-PAYLOAD`,
    /// so the bytes are not hashed again for the signature, and the body is sent as the
    /// `Bytes` it is, never copied. Answers the ETag S3 gave.
    async fn signed_put(
        &self,
        key: &str,
        content_type: Option<&str>,
        queries: Option<std::collections::HashMap<String, String>>,
        body: Bytes,
    ) -> Result<String, StorageError> {
        use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
        let size = body.len() as u64;
        let timeout = self.transfer_timeout(size);
        let expiry = u32::try_from(timeout.as_secs().clamp(60, 604_800)).unwrap_or(604_800);
        let content_type = content_type
            .map(|t| {
                HeaderValue::from_str(t)
                    .map_err(|_| StorageError::Invalid("content type is not a valid header".into()))
            })
            .transpose()?;
        let mut signed = HeaderMap::new();
        if let Some(content_type) = &content_type {
            signed.insert(CONTENT_TYPE, content_type.clone());
        }
        let url = self
            .bucket
            .presign_put(key, expiry, Some(signed), queries)
            .await
            .map_err(classify)?;
        let mut request = self
            .http
            .put(url)
            .header(CONTENT_LENGTH, size)
            .timeout(timeout)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let response = request
            .send()
            .await
            // The URL carries a signature that is valid for a while: never in errors.
            .map_err(|e| StorageError::Unavailable(format!("PUT failed: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response
                .headers()
                .get(ETAG)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned());
        }
        let body = response.text().await.unwrap_or_default();
        Err(from_status(status.as_u16(), &body))
    }

    /// Stores `body` as `key` in one PUT (an upload smaller than one part).
    pub async fn put_bytes(
        &self,
        key: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<(), StorageError> {
        self.signed_put(key, Some(content_type), None, body)
            .await
            .map(drop)
    }

    /// Starts a multipart upload of `key`; answers its upload id.
    pub async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<String, StorageError> {
        Ok(self
            .bucket
            .initiate_multipart_upload(key, content_type)
            .await
            .map_err(classify)?
            .upload_id)
    }

    /// Sends part `number` (1–10,000) of the multipart upload `upload_id` of `key`.
    pub async fn put_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: Bytes,
    ) -> Result<UploadedPart, StorageError> {
        if !(1..=MAX_PARTS).contains(&u64::from(number)) {
            return Err(StorageError::Invalid(format!(
                "part numbers run from 1 to {MAX_PARTS}"
            )));
        }
        let queries = std::collections::HashMap::from([
            ("partNumber".to_owned(), number.to_string()),
            ("uploadId".to_owned(), upload_id.to_owned()),
        ]);
        let etag = self.signed_put(key, None, Some(queries), body).await?;
        if etag.is_empty() {
            return Err(StorageError::Unavailable(format!(
                "S3 answered part {number} without an ETag"
            )));
        }
        Ok(UploadedPart { number, etag })
    }

    /// Completes the multipart upload `upload_id` of `key` from `parts` (in order),
    /// `size` bytes in all: the object exists once this answers. Servers assemble the
    /// object while the request is open, so its timeout grows with `size` as a PUT's
    /// does.
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
        size: u64,
    ) -> Result<(), StorageError> {
        let bucket = self
            .bucket
            .with_request_timeout(self.transfer_timeout(size))
            .map_err(|e| StorageError::Config(e.to_string()))?;
        let parts = parts
            .into_iter()
            .map(|p| s3::serde_types::Part {
                part_number: p.number,
                etag: p.etag,
            })
            .collect();
        bucket
            .complete_multipart_upload(key, upload_id, parts)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Aborts the multipart upload `upload_id` of `key`: S3 drops its parts and no
    /// object is created. An upload S3 no longer knows (already aborted or completed)
    /// answers `NotFound` (AWS, MinIO) or another refusal (`Invalid`; s3s-fs says 403).
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        self.bucket
            .abort_upload(key, upload_id)
            .await
            .map_err(classify)
    }

    /// The object's bytes as a stream.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, StorageError>> + Send + use<>, StorageError> {
        let response = self.bucket.get_object_stream(key).await.map_err(classify)?;
        if response.status_code == 404 {
            return Err(StorageError::NotFound);
        }
        Ok(response.bytes.map(|chunk| chunk.map_err(classify)))
    }

    /// Deletes `key`; deleting a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.bucket.delete_object(key).await.map_err(classify) {
            Ok(_) | Err(StorageError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes every object whose key starts with `prefix`, a page of listing at a
    /// time; returns how many. Repeating it after a failure deletes what is left.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        if prefix.is_empty() || !prefix.ends_with('/') {
            return Err(StorageError::Invalid(
                "a deletion prefix must be a non-empty folder (ending in '/')".into(),
            ));
        }
        let mut deleted = 0;
        loop {
            // Always the first page: what was deleted no longer appears.
            let (page, _) = self
                .bucket
                .list_page(prefix.to_owned(), None, None, None, Some(1000))
                .await
                .map_err(classify)?;
            if page.contents.is_empty() {
                return Ok(deleted);
            }
            for object in &page.contents {
                self.delete(&object.key).await?;
                deleted += 1;
            }
        }
    }

    /// A GET URL for `key` on the public endpoint, valid `expires_in` (60 s – 1 day),
    /// whose answer carries `served`'s headers (S3's `response-content-disposition` and
    /// `response-content-type`, signed into the URL): what a browser does with the
    /// bytes is decided here, not by whatever type the object was stored with.
    pub async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
        served: &ServedAs,
    ) -> Result<String, StorageError> {
        let secs = u32::try_from(expires_in.as_secs())
            .map_err(|_| StorageError::Invalid("expiry too long".into()))?;
        if !(1..=604_800).contains(&secs) {
            return Err(StorageError::Invalid(
                "expiry must be between 1 s and 7 days".into(),
            ));
        }
        let queries = std::collections::HashMap::from([
            (
                "response-content-disposition".to_owned(),
                served.disposition.clone(),
            ),
            (
                "response-content-type".to_owned(),
                served.content_type.clone(),
            ),
        ]);
        self.public
            .presign_get(key, secs, Some(queries))
            .await
            .map_err(classify)
    }
}

/// The headers a presigned download is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedAs {
    /// `Content-Disposition`, e.g. `attachment; filename="report.pdf"`.
    pub disposition: String,
    /// `Content-Type`.
    pub content_type: String,
}

impl StorageSettings {
    /// Reads `S3_ENDPOINT_URL` (required), `S3_PUBLIC_URL` (the endpoint),
    /// `S3_ACCESS_KEY`, `S3_SECRET_KEY` (required), `S3_REGION` (`us-east-1`),
    /// `S3_BUCKET` (`saas-documents`), `S3_TIMEOUT_MS` (30000), `S3_UPLOAD_MIN_RATE`
    /// (4 MiB/s).
    pub fn read(r: &mut http_kit::ConfigReader<'_>) -> Self {
        let endpoint: String = r.required("S3_ENDPOINT_URL");
        let public: String = r.optional("S3_PUBLIC_URL", endpoint.clone());
        let access: http_kit::Secret<String> = r.required("S3_ACCESS_KEY");
        let secret: http_kit::Secret<String> = r.required("S3_SECRET_KEY");
        let storage = StorageSettings {
            endpoint_url: endpoint,
            public_url: public,
            region: r.optional("S3_REGION", "us-east-1".to_owned()),
            bucket: r.optional("S3_BUCKET", "saas-documents".to_owned()),
            access_key: access.expose().clone(),
            secret_key: secret.expose().clone(),
            request_timeout: Duration::from_millis(r.optional("S3_TIMEOUT_MS", 30_000)),
            min_upload_rate: r.optional("S3_UPLOAD_MIN_RATE", 4 * 1024 * 1024),
        };
        r.check(
            "S3_UPLOAD_MIN_RATE",
            storage.min_upload_rate > 0,
            "must be a positive number of bytes per second",
        );
        r.check(
            "S3_ENDPOINT_URL",
            storage.endpoint_url.is_empty() || http_kit::config::is_http_url(&storage.endpoint_url),
            "must be an http:// or https:// URL",
        );
        r.check(
            "S3_PUBLIC_URL",
            storage.public_url.is_empty() || http_kit::config::is_http_url(&storage.public_url),
            "must be an http:// or https:// URL",
        );
        storage
    }
}
