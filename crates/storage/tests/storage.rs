//! Object storage against a real S3 server (s3s-fs) that checks signatures and expiry.

use std::time::Duration;

use domain::{TenantDatabaseName, TenantName};
use futures_util::TryStreamExt;
use storage::{object_key, Storage, StorageError, StorageSettings};
use testkit::TestS3;

fn settings(s3: &TestS3, bucket: &str) -> StorageSettings {
    StorageSettings {
        endpoint_url: s3.endpoint.clone(),
        public_url: s3.public_endpoint.clone(),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        access_key: s3.access_key.clone(),
        secret_key: s3.secret_key.clone(),
        request_timeout: Duration::from_secs(10),
        min_upload_rate: 4 * 1024 * 1024,
    }
}

async fn ready(s3: &TestS3) -> Storage {
    let storage = Storage::new(settings(s3, "documents")).expect("storage");
    storage.ensure_bucket(true).await.expect("bucket");
    storage
}

async fn read_all(storage: &Storage, key: &str) -> Result<Vec<u8>, StorageError> {
    let stream = storage.get_stream(key).await?;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    Ok(chunks.concat())
}

/// Stores `data` in one PUT.
async fn put(
    storage: &Storage,
    key: &str,
    content_type: &str,
    data: &[u8],
) -> Result<(), StorageError> {
    storage
        .put_bytes(key, content_type, bytes::Bytes::copy_from_slice(data))
        .await
}

fn key() -> String {
    let db = TenantDatabaseName::generate(&TenantName::parse("Acme").expect("valid"));
    object_key(&db, uuid::Uuid::new_v4())
}

#[test]
fn keys_follow_the_scheme() {
    let db = TenantDatabaseName::parse("tenant_acme_deadbeef").expect("valid");
    let id = uuid::Uuid::parse_str("9f0c2a4e-8b1d-4c3e-a5f6-0123456789ab").expect("uuid");
    assert_eq!(
        object_key(&db, id),
        "tenants/tenant_acme_deadbeef/files/9f/9f0c2a4e-8b1d-4c3e-a5f6-0123456789ab"
    );
}

#[tokio::test]
async fn a_multipart_upload_makes_one_object_and_an_aborted_one_leaves_nothing() {
    let s3 = TestS3::start().await.expect("s3");
    let storage = ready(&s3).await;
    let part = storage::MIN_PART_BYTES;
    let data: Vec<u8> = (0..2 * part + 12_345).map(|i| (i % 247) as u8).collect();
    let key = key();
    let upload = storage
        .start_multipart(&key, "application/octet-stream")
        .await
        .expect("start");
    let mut parts = Vec::new();
    for (i, chunk) in data.chunks(part).enumerate() {
        let number = u32::try_from(i + 1).expect("part number");
        parts.push(
            storage
                .put_part(&key, &upload, number, bytes::Bytes::copy_from_slice(chunk))
                .await
                .expect("part"),
        );
    }
    assert_eq!(parts.len(), 3);
    assert!(
        !s3.upload_leftovers().is_empty(),
        "the parts wait on the server until the upload completes"
    );
    assert!(
        s3.objects("documents").is_empty(),
        "no object before completion"
    );
    storage
        .complete_multipart(&key, &upload, parts, data.len() as u64)
        .await
        .expect("complete");
    assert!(
        read_all(&storage, &key).await.expect("get") == data,
        "the bytes"
    );
    assert_eq!(s3.objects("documents").len(), 1);
    assert_eq!(s3.upload_leftovers(), Vec::<String>::new());

    // Aborted after a part: no object, no part left on the server.
    let other = self::key();
    let upload = storage
        .start_multipart(&other, "application/octet-stream")
        .await
        .expect("start");
    storage
        .put_part(&other, &upload, 1, bytes::Bytes::from(vec![1u8; part]))
        .await
        .expect("part");
    storage
        .abort_multipart(&other, &upload)
        .await
        .expect("abort");
    assert_eq!(s3.upload_leftovers(), Vec::<String>::new());
    assert!(matches!(
        read_all(&storage, &other).await,
        Err(StorageError::NotFound)
    ));
    // A second abort is refused (the upload is gone), never taken for an outage.
    let again = storage
        .abort_multipart(&other, &upload)
        .await
        .expect_err("gone");
    assert!(
        matches!(again, StorageError::NotFound | StorageError::Invalid(_)),
        "{again:?}"
    );
    let bad = storage
        .put_part(&other, &upload, 0, bytes::Bytes::from_static(b"x"))
        .await
        .expect_err("part 0");
    assert!(matches!(bad, StorageError::Invalid(_)), "{bad:?}");
    assert_eq!(s3.objects("documents").len(), 1);
}

#[tokio::test]
async fn the_bucket_is_created_only_when_asked() {
    let s3 = TestS3::start().await.expect("s3");
    let storage = Storage::new(settings(&s3, "absent")).expect("storage");
    let err = storage
        .ensure_bucket(false)
        .await
        .expect_err("missing bucket");
    assert!(err.to_string().contains("absent"), "{err}");
    storage.ensure_bucket(true).await.expect("created");
    storage.ensure_bucket(false).await.expect("now it exists");
}

#[tokio::test]
async fn objects_stream_in_and_out_and_are_deleted() {
    let s3 = TestS3::start().await.expect("s3");
    let storage = ready(&s3).await;
    for size in [0usize, 1, 64 * 1024, 9 * 1024 * 1024 + 7] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let key = key();
        put(&storage, &key, "application/octet-stream", &data)
            .await
            .expect("put");
        assert_eq!(
            read_all(&storage, &key).await.expect("get"),
            data,
            "size {size}"
        );
        storage.delete(&key).await.expect("delete");
        assert!(
            matches!(read_all(&storage, &key).await, Err(StorageError::NotFound)),
            "size {size}"
        );
        storage.delete(&key).await.expect("deleting twice is fine");
    }
    assert!(
        s3.objects("documents").is_empty(),
        "{:?}",
        s3.objects("documents")
    );
}

#[tokio::test]
async fn presigned_urls_name_the_public_host_and_are_checked_by_the_server() {
    let s3 = TestS3::start().await.expect("s3");
    let storage = ready(&s3).await;
    let key = key();
    put(&storage, &key, "text/html", b"hello, presigned")
        .await
        .expect("put");
    let served = storage::ServedAs {
        disposition: "attachment; filename=\"page.html\"".into(),
        content_type: "application/octet-stream".into(),
    };
    let url = storage
        .presign_get(&key, Duration::from_secs(3600), &served)
        .await
        .expect("presign");
    assert!(url.starts_with(&s3.public_endpoint), "{url}");
    let response = reqwest::get(&url).await.expect("fetch");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    assert_eq!(
        (header("content-type"), header("content-disposition")),
        (
            Some("application/octet-stream".into()),
            Some("attachment; filename=\"page.html\"".into())
        ),
        "the URL's signed response headers replace the stored text/html"
    );
    assert_eq!(
        response.bytes().await.expect("body").as_ref(),
        b"hello, presigned"
    );

    // The same query on the internal host does not match the signature.
    let internal = url.replacen(&s3.public_endpoint, &s3.endpoint, 1);
    assert_eq!(reqwest::get(&internal).await.expect("fetch").status(), 403);
    // A tampered signature is refused.
    let at = url.find("X-Amz-Signature=").expect("signature") + "X-Amz-Signature=".len();
    let mut tampered = url.clone().into_bytes();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert_eq!(reqwest::get(&tampered).await.expect("fetch").status(), 403);
    // An expired one is refused.
    // The headers are signed: changing them breaks the signature.
    let retyped = url.replace("application%2Foctet-stream", "text%2Fhtml");
    assert_ne!(retyped, url, "the content type is in the query: {url}");
    assert_eq!(reqwest::get(&retyped).await.expect("fetch").status(), 403);
    let short = storage
        .presign_get(&key, Duration::from_secs(1), &served)
        .await
        .expect("presign");
    testkit::wait_until(Duration::from_secs(10), || async {
        reqwest::get(&short).await.is_ok_and(|r| r.status() == 403)
    })
    .await
    .expect("the short-lived URL expires");
}

#[tokio::test]
async fn a_stopped_server_is_an_unavailable_error_not_a_hang() {
    let s3 = TestS3::start().await.expect("s3");
    let mut settings = settings(&s3, "documents");
    settings.request_timeout = Duration::from_secs(2);
    let storage = Storage::new(settings).expect("storage");
    storage.ensure_bucket(true).await.expect("bucket");
    s3.stop();
    let err = put(&storage, &key(), "text/plain", b"x")
        .await
        .expect_err("server gone");
    assert!(matches!(err, StorageError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_refused_put_is_an_invalid_request_not_an_outage() {
    let s3 = TestS3::start().await.expect("s3");
    ready(&s3).await;
    let mut wrong = settings(&s3, "documents");
    wrong.secret_key = "not-the-secret-key".into();
    let storage = Storage::new(wrong).expect("storage");
    let err = put(&storage, &key(), "text/plain", b"x")
        .await
        .expect_err("bad signature");
    match &err {
        StorageError::Invalid(why) => assert!(why.contains("403"), "{why}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(
        !err.to_string().contains("X-Amz-Signature"),
        "no signed URL in errors: {err}"
    );
    assert!(s3.objects("documents").is_empty());
}
