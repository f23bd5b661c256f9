//! A plain S3 client for the document benchmark (`scripts/bench-documents.sh`): uploads
//! FILE as KEY in one multipart upload, in parts of `PART_BYTES` with `PARTS_IN_FLIGHT`
//! sent at once, with the same HTTP stack as the document service and nothing else (no
//! hashing, no database, the file read from the page cache), then prints the seconds it
//! took. The service's uploads are measured against it.
//!
//!   s3-raw-upload FILE KEY
//!
//! Settings from the environment: `S3_ENDPOINT_URL`, `S3_BUCKET`, `S3_ACCESS_KEY`,
//! `S3_SECRET_KEY`, `PART_BYTES` (8 MiB), `PARTS_IN_FLIGHT` (4).

use std::io::Read as _;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("set {name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, key] = args.as_slice() else {
        anyhow::bail!("usage: s3-raw-upload FILE KEY");
    };
    let part_bytes: usize = std::env::var("PART_BYTES")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(8 * 1024 * 1024);
    let in_flight: usize = std::env::var("PARTS_IN_FLIGHT")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(4);
    let storage = storage::Storage::new(storage::StorageSettings {
        endpoint_url: env("S3_ENDPOINT_URL")?,
        public_url: env("S3_ENDPOINT_URL")?,
        region: "us-east-1".into(),
        bucket: env("S3_BUCKET")?,
        access_key: env("S3_ACCESS_KEY")?,
        secret_key: env("S3_SECRET_KEY")?,
        request_timeout: Duration::from_secs(60),
        min_upload_rate: 1024 * 1024,
    })?;
    let started = Instant::now();
    let mut reader = std::fs::File::open(file)?;
    let upload_id = storage
        .start_multipart(key, "application/octet-stream")
        .await?;
    let mut tasks = FuturesUnordered::new();
    let mut parts = Vec::new();
    let mut size = 0u64;
    for number in 1u32.. {
        let mut part = vec![0u8; part_bytes];
        // A file read, off the executor's own work.
        let filled = tokio::task::block_in_place(|| -> std::io::Result<usize> {
            let mut filled = 0;
            while filled < part.len() {
                match reader.read(&mut part[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            Ok(filled)
        })?;
        if filled == 0 {
            break;
        }
        part.truncate(filled);
        size += filled as u64;
        while tasks.len() >= in_flight {
            if let Some(done) = tasks.next().await {
                parts.push(done??);
            }
        }
        let (storage, key, upload_id) = (storage.clone(), key.clone(), upload_id.clone());
        tasks.push(tokio::spawn(async move {
            storage
                .put_part(&key, &upload_id, number, bytes::Bytes::from(part))
                .await
        }));
    }
    while let Some(done) = tasks.next().await {
        parts.push(done??);
    }
    parts.sort_by_key(|p| p.number);
    storage
        .complete_multipart(key, &upload_id, parts, size)
        .await?;
    println!("{:.3}", started.elapsed().as_secs_f64());
    Ok(())
}
