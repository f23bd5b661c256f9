//! The server wiring over real HTTP: request ids, the envelope on every error path,
//! located JSON errors, malformed path ids, the common endpoints.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use http_kit::health::ReadinessCheck;
use http_kit::server::start;
use http_kit::{ApiError, CommonSettings, ConfigReader, Json, Readiness, ServiceHttp, ServiceInfo};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateThing {
    name: String,
    size: u32,
}

async fn create(body: Json<CreateThing>) -> HttpResponse {
    HttpResponse::Created().json(json!({"name": body.name, "size": body.size}))
}

async fn by_id(id: web::Path<domain::TenantId>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"id": id.into_inner()}))
}

async fn explode() -> Result<HttpResponse, ApiError> {
    Err(ApiError::internal(anyhow::anyhow!(
        "connection to db.internal:5432 failed: password=hunter2"
    )))
}

fn settings() -> CommonSettings {
    let env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", "postgres://127.0.0.1/x"),
        ("REDIS_URL", "redis://127.0.0.1"),
        ("HTTP_WORKERS", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut r = ConfigReader::new(&env);
    let s = CommonSettings::read(&mut r, 1);
    r.finish(s).expect("valid")
}

async fn spawn(ready_ok: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let readiness = Readiness::new(Duration::from_millis(300))
        .with(ReadinessCheck::new("postgres", || async { Ok(()) }))
        .with(ReadinessCheck::new("redis", move || async move {
            if ready_ok {
                Ok(())
            } else {
                Err("connection refused".to_owned())
            }
        }))
        .with(ReadinessCheck::new("slow", move || async move {
            if !ready_ok {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Ok(())
        }));
    let http = ServiceHttp::new(
        ServiceInfo {
            name: "probe",
            version: "9.9.9",
        },
        &settings(),
        readiness,
        utoipa::openapi::OpenApiBuilder::new().build(),
    )
    .expect("http");
    let server = start(listener, http, |cfg| {
        cfg.route("/things", web::post().to(create))
            .route("/things/{id}", web::get().to(by_id))
            .route("/explode", web::get().to(explode));
    })
    .expect("start");
    tokio::spawn(server);
    format!("http://{addr}")
}

fn assert_envelope(body: &Value, code: &str) {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_created() {
    let base = spawn(true).await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("send");
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("send");
    let created = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(created.len(), 36, "a uuid: {created}");
    // An unsafe incoming id is replaced, not echoed.
    let res = client
        .get(format!("{base}/nope"))
        .header("x-request-id", "bad id!")
        .send()
        .await
        .expect("send");
    let replaced = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_ne!(replaced, "bad id!");
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["request_id"],
        replaced.as_str(),
        "the envelope carries the same id"
    );
}

#[tokio::test]
async fn health_openapi_and_metrics_are_served() {
    let base = spawn(true).await;
    let health: Value = reqwest::get(format!("{base}/health"))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        health,
        json!({"status": "healthy", "service": "probe", "version": "9.9.9"})
    );
    let ready = reqwest::get(format!("{base}/ready")).await.expect("send");
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.expect("json");
    assert_eq!(
        body["checks"],
        json!({"postgres": "ok", "redis": "ok", "slow": "ok"})
    );
    let doc: Value = reqwest::get(format!("{base}/api-docs/openapi.json"))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(doc["paths"]["/health"]["get"].is_object(), "{doc}");
    assert!(
        doc["components"]["schemas"]["ErrorBody"].is_object(),
        "{doc}"
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/health\""), "{metrics}");
    assert!(metrics.contains("service=\"probe\""), "{metrics}");
}

#[tokio::test]
async fn ready_names_the_failed_dependencies() {
    let base = spawn(false).await;
    let res = reqwest::get(format!("{base}/ready")).await.expect("send");
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.expect("json");
    assert_envelope(&body, "service_unavailable");
    assert_eq!(
        body["details"],
        json!({"postgres": "ok", "redis": "unavailable", "slow": "timeout"})
    );
    assert!(
        !body.to_string().contains("connection refused"),
        "no internals: {body}"
    );
}

#[tokio::test]
async fn every_error_path_renders_the_envelope() {
    let base = spawn(true).await;
    let client = reqwest::Client::new();

    let res = client
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 404);
    assert_envelope(&res.json().await.expect("json"), "not_found");

    let res = client
        .delete(format!("{base}/things"))
        .send()
        .await
        .expect("send");
    assert!(
        res.status() == 405 || res.status() == 404,
        "{}",
        res.status()
    );
    let code = if res.status() == 405 {
        "method_not_allowed"
    } else {
        "not_found"
    };
    assert_envelope(&res.json().await.expect("json"), code);

    let res = client
        .get(format!("{base}/things/not-a-uuid"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_envelope(&body, "validation_error");
    assert!(body["details"]["path"].is_array(), "{body}");

    let res = client
        .post(format!("{base}/things"))
        .body("{\"name\":")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_envelope(&body, "validation_error");
    assert!(body["details"]["body"].is_array(), "{body}");

    let res = client
        .post(format!("{base}/things"))
        .json(&json!({"name": "a", "size": 1, "admin": true}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.expect("json");
    assert_envelope(&body, "validation_error");
    assert_eq!(body["details"], json!({"admin": ["unknown field"]}));

    let res = client
        .post(format!("{base}/things"))
        .json(&json!({"name": "a", "size": -1}))
        .send()
        .await
        .expect("send");
    let body: Value = res.json().await.expect("json");
    assert_envelope(&body, "validation_error");
    assert!(body["details"]["size"].is_array(), "{body}");

    let res = client
        .post(format!("{base}/things"))
        .body("name=a")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 415);
    assert_envelope(&res.json().await.expect("json"), "unsupported_media_type");

    let big = format!(
        "{{\"name\":\"{}\",\"size\":1}}",
        "a".repeat(2 * 1024 * 1024)
    );
    let res = client
        .post(format!("{base}/things"))
        .body(big)
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 413);
    assert_envelope(&res.json().await.expect("json"), "payload_too_large");

    let res = client
        .get(format!("{base}/explode"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 500);
    let text = res.text().await.expect("text");
    assert!(
        !text.contains("hunter2") && !text.contains("db.internal"),
        "{text}"
    );
    assert_envelope(
        &serde_json::from_str(&text).expect("json"),
        "internal_error",
    );

    let res = client
        .post(format!("{base}/things"))
        .json(&json!({"name": "a", "size": 3}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 201);
}
