//! Settings of the document service: the common ones (`http_kit::config`, port 5003);
//! object storage: `S3_ENDPOINT_URL` (required), `S3_PUBLIC_URL` (default: the
//! endpoint), `S3_REGION` (`us-east-1`), `S3_BUCKET` (`saas-documents`),
//! `S3_ACCESS_KEY` and `S3_SECRET_KEY` (required), `S3_CREATE_BUCKET` (false),
//! `S3_TIMEOUT_MS` (30000), `S3_UPLOAD_MIN_RATE` (4 MiB/s); uploads
//! (`crate::upload`): `MAX_UPLOAD_BYTES` (100 MiB), `UPLOAD_IDLE_TIMEOUT_SECS` (60),
//! `UPLOAD_CLIENT_MIN_RATE` (4096), `UPLOAD_PART_BYTES` (8 MiB), `UPLOAD_PARTS_IN_FLIGHT` (3), `UPLOAD_BUFFER_BYTES`
//! (128 MiB), `UPLOAD_BUFFER_WAIT_MS` (10000), `UPLOAD_CONCURRENCY` (64), `UPLOAD_STALE_SECS` (86400),
//! `UPLOAD_SWEEP_EVERY_SECS` (300); tenant databases: the pool limits (`TENANT_POOL_*`,
//! `tenant_db::TenantDbSettings::read_pool_limits`; 8 pools here); other services:
//! `http_kit::Peers`.

use std::time::Duration;

use http_kit::{CommonSettings, ConfigReader, Peers};
use storage::StorageSettings;
use tenant_db::TenantDbSettings;

pub const DEFAULT_PORT: u16 = 5003;

#[derive(Debug, Clone)]
pub struct Settings {
    pub common: CommonSettings,
    pub storage: StorageSettings,
    pub create_bucket: bool,
    pub uploads: crate::upload::UploadSettings,
    pub tenant_db: TenantDbSettings,
    pub peers: Peers,
}

impl Settings {
    pub fn read(r: &mut ConfigReader<'_>) -> Self {
        let common = CommonSettings::read(r, DEFAULT_PORT);
        let storage = StorageSettings::read(r);
        let mut tenant_db = TenantDbSettings::new(
            common.session_url(common.database_url.expose(), crate::INFO.name),
            "tenant_template".to_owned(),
        )
        .with_admin_server_url(common.database_url.expose().clone());
        tenant_db.read_pool_limits(r);
        let uploads = read_uploads(r);
        let peers = Peers::read(r);
        Self {
            common,
            storage,
            create_bucket: r.optional("S3_CREATE_BUCKET", false),
            uploads,
            tenant_db,
            peers,
        }
    }
}

const MIB: u64 = 1024 * 1024;

fn read_uploads(r: &mut ConfigReader<'_>) -> crate::upload::UploadSettings {
    let part_bytes = r.optional_in(
        "UPLOAD_PART_BYTES",
        8 * MIB,
        storage::MIN_PART_BYTES as u64..=64 * MIB,
        " (5 MiB, S3's smallest part, to 64 MiB)",
    );
    let max_bytes = r.optional_in(
        "MAX_UPLOAD_BYTES",
        100 * MIB,
        1..=part_bytes.saturating_mul(storage::MAX_PARTS),
        " (UPLOAD_PART_BYTES x 10000, S3's most parts)",
    );
    let parts_in_flight = r.optional_in("UPLOAD_PARTS_IN_FLIGHT", 3usize, 1..=32, "");
    let buffer_bytes: u64 = r.optional("UPLOAD_BUFFER_BYTES", 128 * MIB);
    r.check(
        "UPLOAD_BUFFER_BYTES",
        buffer_bytes >= part_bytes,
        "must hold at least one part (UPLOAD_PART_BYTES)",
    );
    let concurrency = r.optional_in("UPLOAD_CONCURRENCY", 64usize, 1..=10_000, "");
    let buffer_wait = r.optional_positive("UPLOAD_BUFFER_WAIT_MS", 10_000u64, " of milliseconds");
    let idle = r.optional_positive("UPLOAD_IDLE_TIMEOUT_SECS", 60u64, " of seconds");
    let min_rate: u64 = r.optional("UPLOAD_CLIENT_MIN_RATE", 4096);
    let stale = r.optional_positive(
        "UPLOAD_STALE_SECS",
        86_400u64,
        " of seconds (longer than the longest upload)",
    );
    let sweep = r.optional_positive("UPLOAD_SWEEP_EVERY_SECS", 300u64, " of seconds");
    crate::upload::UploadSettings {
        max_bytes,
        idle_timeout: Duration::from_secs(idle),
        min_rate,
        part_bytes: usize::try_from(part_bytes).unwrap_or(storage::MIN_PART_BYTES),
        parts_in_flight,
        buffers: usize::try_from(buffer_bytes / part_bytes.max(1))
            .unwrap_or(1)
            .max(1),
        concurrency,
        buffer_wait: Duration::from_millis(buffer_wait),
        stale_after: Duration::from_secs(stale),
        sweep_every: Duration::from_secs(sweep),
    }
}
