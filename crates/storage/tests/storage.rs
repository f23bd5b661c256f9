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

/// Stores `data` through a spool file, as the document service does.
async fn put(
    storage: &Storage,
    key: &str,
    content_type: &str,
    data: &[u8],
) -> Result<(), StorageError> {
    let path = std::env::temp_dir().join(format!("storage-test-{}", uuid::Uuid::new_v4()));
    std::fs::write(&path, data).expect("spool");
    let result = storage
        .put_file(key, content_type, &path, data.len() as u64)
        .await;
    let _ = std::fs::remove_file(&path);
    result
}

fn key() -> String {
    let db = TenantDatabaseName::generate(&TenantName::parse("Acme").expect("valid"));
    object_key(
        &db,
        "0123456789abcdef0123456789abcdef",
        uuid::Uuid::new_v4(),
    )
    .expect("key")
}

#[test]
fn keys_follow_the_scheme_and_refuse_bad_hashes() {
    let db = TenantDatabaseName::parse("tenant_acme_deadbeef").expect("valid");
    let id = uuid::Uuid::nil();
    assert_eq!(
        object_key(&db, "0123456789abcdef0123456789abcdef", id).expect("key"),
        format!("tenants/tenant_acme_deadbeef/files/01/23/0123456789abcdef0123456789abcdef_{id}")
    );
    for bad in [
        "",
        "0123",
        "0123456789ABCDEF0123456789ABCDEF",
        "../3456789abcdef0123456789abcdef",
    ] {
        assert!(object_key(&db, bad, id).is_err(), "{bad:?}");
    }
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
