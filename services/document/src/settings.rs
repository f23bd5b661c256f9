//! Settings of the document service: the common ones (`http_kit::config`, port 5003);
//! object storage: `S3_ENDPOINT_URL` (required), `S3_PUBLIC_URL` (default: the
//! endpoint), `S3_REGION` (`us-east-1`), `S3_BUCKET` (`saas-documents`),
//! `S3_ACCESS_KEY` and `S3_SECRET_KEY` (required), `S3_CREATE_BUCKET` (false),
//! `S3_TIMEOUT_MS` (30000), `S3_UPLOAD_MIN_RATE` (4 MiB/s); uploads: `MAX_UPLOAD_BYTES`
//! (100 MiB), `UPLOAD_DIR` (the system temporary directory), `UPLOAD_IDLE_TIMEOUT_SECS`
//! (60); tenant databases: the pool limits (`TENANT_POOL_*`,
//! `tenant_db::TenantDbSettings::read_pool_limits`; 8 pools here); other services: `TENANT_SERVICE_URL`
//! (`http://127.0.0.1:6002`), `AUTH_SERVICE_URL` (`http://127.0.0.1:6001`),
//! `INTERNAL_SERVICE_TOKEN` (required), `JWT_ISSUER`, `JWT_AUDIENCE` (`saas-platform`),
//! `SERVICE_CALL_TIMEOUT_MS` (2000).

use std::path::PathBuf;
use std::time::Duration;

use http_kit::{CommonSettings, ConfigReader, Secret};
use storage::StorageSettings;
use tenant_db::TenantDbSettings;

pub const DEFAULT_PORT: u16 = 5003;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub storage: StorageSettings,
    pub create_bucket: bool,
    pub max_upload_bytes: u64,
    pub upload_dir: PathBuf,
    pub upload_idle_timeout: Duration,
    pub tenant_db: TenantDbSettings,
    pub tenant_service_url: String,
    pub auth_service_url: String,
    pub internal_token: Secret<String>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub service_call_timeout: Duration,
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let storage = StorageSettings::read(r);
        let mut tenant_db = TenantDbSettings::new(
            common.database_url.expose().clone(),
            "tenant_template".to_owned(),
        );
        tenant_db.read_pool_limits(r);
        let max_upload_bytes = r.optional("MAX_UPLOAD_BYTES", 100 * 1024 * 1024);
        r.check(
            "MAX_UPLOAD_BYTES",
            max_upload_bytes > 0 && max_upload_bytes <= storage::MAX_SINGLE_PUT_BYTES,
            "must be between 1 and 5 GiB (5368709120, the largest single S3 PUT)",
        );
        let upload_idle_timeout = r.optional("UPLOAD_IDLE_TIMEOUT_SECS", 60u64);
        r.check(
            "UPLOAD_IDLE_TIMEOUT_SECS",
            upload_idle_timeout > 0,
            "must be a positive number of seconds",
        );
        let tenant_service_url = r.http_url("TENANT_SERVICE_URL", "http://127.0.0.1:6002");
        let auth_service_url = r.http_url("AUTH_SERVICE_URL", "http://127.0.0.1:6001");
        let internal_token: Secret<String> = r.required("INTERNAL_SERVICE_TOKEN");
        Self {
            common,
            storage,
            create_bucket: r.optional("S3_CREATE_BUCKET", false),
            max_upload_bytes,
            upload_dir: PathBuf::from(
                r.optional("UPLOAD_DIR", std::env::temp_dir().display().to_string()),
            ),
            upload_idle_timeout: Duration::from_secs(upload_idle_timeout),
            tenant_db,
            tenant_service_url,
            auth_service_url,
            internal_token,
            jwt_issuer: r.optional("JWT_ISSUER", "saas-platform".to_owned()),
            jwt_audience: r.optional("JWT_AUDIENCE", "saas-platform".to_owned()),
            service_call_timeout: Duration::from_millis(
                r.optional("SERVICE_CALL_TIMEOUT_MS", 2000),
            ),
        }
    }
}
