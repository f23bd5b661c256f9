//! The document service alone: common endpoints (with a real S3 server) and its
//! binary. Upload, list, download and delete run in the cross-service suite
//! (`tests/tests/e2e/documents.rs`), beside auth and the tenant service.

use testkit::{service_contract, TestContext, TestS3};

#[tokio::test]
async fn serves_health_ready_metrics_and_openapi() {
    let ctx = TestContext::new().await;
    let s3 = TestS3::start().await.expect("s3");
    let base = testkit::start_service::<document::Service>(
        &ctx,
        &[
            ("S3_ENDPOINT_URL", &s3.endpoint),
            ("S3_ACCESS_KEY", &s3.access_key),
            ("S3_SECRET_KEY", &s3.secret_key),
            ("S3_CREATE_BUCKET", "true"),
        ],
    );
    testkit::wait_until(std::time::Duration::from_secs(10), || async {
        reqwest::get(format!("{base}/ready"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("ready once the bucket exists");
    service_contract::assert_common_endpoints(&base, "document").await;
    let doc: serde_json::Value = reqwest::get(format!("{base}/api-docs/openapi.json"))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    for path in [
        "/api/tenants/{tenant_id}/documents",
        "/api/tenants/{tenant_id}/documents/{document_id}",
        "/api/tenants/{tenant_id}/documents/{document_id}/download",
        "/api/tenants/{tenant_id}/documents/{document_id}/download-url",
        "/api/files/{tenant_id}/files",
        "/api/files/{tenant_id}/files/{file_id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
    s3.stop();
    let ready = reqwest::get(format!("{base}/ready")).await.expect("get");
    assert_eq!(ready.status(), 503, "S3 gone: not ready");
}

#[test]
fn the_binary_refuses_missing_settings_and_checks_valid_ones() {
    service_contract::assert_check_config(
        env!("CARGO_BIN_EXE_document"),
        &[
            ("S3_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("S3_ACCESS_KEY", "ak"),
            ("S3_SECRET_KEY", "sk"),
            ("INTERNAL_SERVICE_TOKEN", testkit::INTERNAL_TOKEN),
        ],
    );
}

#[tokio::test]
async fn sigterm_drains_stops_every_background_task_and_exits_zero() {
    let ctx = TestContext::new().await;
    let s3 = TestS3::start().await.expect("s3");
    let (mut env, _kafka) =
        testkit::service_contract::env_with_mock_kafka(&ctx, &events::topics::catalog());
    for (key, value) in [
        ("S3_ENDPOINT_URL", s3.endpoint.as_str()),
        ("S3_ACCESS_KEY", s3.access_key.as_str()),
        ("S3_SECRET_KEY", s3.secret_key.as_str()),
        ("S3_CREATE_BUCKET", "true"),
    ] {
        env.insert(key.to_owned(), value.to_owned());
    }
    service_contract::assert_stops_on_sigterm(
        env!("CARGO_BIN_EXE_document"),
        &env,
        &[
            "role-changes",
            "outbox-relay",
            "bucket-check",
            "upload-sweep",
        ],
        None,
    )
    .await;
}
