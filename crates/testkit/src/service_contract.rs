//! What every service must do, checked the same way for each: the operations
//! endpoints, and a binary that refuses bad settings by name.

use std::process::Command;

use serde_json::Value;

/// `/health`, `/ready`, `/metrics` and `/api-docs/openapi.json` of a running service.
pub async fn assert_common_endpoints(base: &str, service: &str) {
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.expect("health JSON");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["service"], service);
    assert!(
        body["version"]
            .as_str()
            .is_some_and(|v| v.split('.').count() == 3),
        "semver: {body}"
    );

    let ready = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("GET /ready");
    let status = ready.status();
    let body: Value = ready.json().await.expect("ready JSON");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");

    // Metrics are served on the internal listener only.
    let public_metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(
        public_metrics.status(),
        404,
        "no /metrics on the public listener"
    );
    let metrics = client
        .get(format!("{}/metrics", crate::internal_url(base)))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("metrics text");
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(&format!("service=\"{service}\"")), "{text}");

    let doc = client
        .get(format!("{base}/api-docs/openapi.json"))
        .send()
        .await
        .expect("GET openapi");
    assert_eq!(doc.status(), 200);
    let doc: Value = doc.json().await.expect("OpenAPI JSON");
    assert_eq!(doc["info"]["title"], service);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for path in ["/health", "/ready", "/metrics"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }

    let missing = client
        .get(format!("{base}/no-such-route"))
        .send()
        .await
        .expect("GET unknown");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("envelope");
    assert_eq!(body["error"], "not_found");
}

/// The binary's `check-config` exits 2 naming each missing setting, and 0 when the
/// settings are valid (`required` adds the service's own required settings); secrets
/// are not printed.
pub fn assert_check_config(binary: &str, required: &[(&str, &str)]) {
    let output = Command::new(binary)
        .arg("check-config")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("REDIS_URL"),
        "{stderr}"
    );

    let output = Command::new(binary)
        .arg("check-config")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", "postgres://user:s3cr3t-pw@127.0.0.1:1/db")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PORT", "99999")
        .envs(required.iter().copied())
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PORT"), "{stderr}");

    let output = Command::new(binary)
        .arg("check-config")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", "postgres://user:s3cr3t-pw@127.0.0.1:1/db")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .envs(required.iter().copied())
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(
        !stdout.contains("s3cr3t-pw"),
        "secrets are redacted: {stdout}"
    );
}
