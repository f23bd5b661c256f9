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
    spawn_both(ready_ok).await.0
}

/// The public and the internal base URL.
async fn spawn_both(ready_ok: bool) -> (String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let internal = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let internal_addr = internal.local_addr().expect("addr");
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
    let listeners = http_kit::server::Listeners {
        public: listener,
        internal,
    };
    let server = start(listeners, http, |cfg| {
        cfg.route("/things", web::post().to(create))
            .route("/things/{id}", web::get().to(by_id))
            .route("/explode", web::get().to(explode))
            .service(
                web::scope("/internal/v1")
                    .guard(http_kit::server::internal_only())
                    .route(
                        "/secret",
                        web::get().to(|| async { HttpResponse::Ok().body("s") }),
                    ),
            );
    })
    .expect("start");
    tokio::spawn(server);
    (format!("http://{addr}"), format!("http://{internal_addr}"))
}

#[tokio::test]
async fn the_internal_api_and_metrics_answer_on_the_internal_listener_only() {
    let (public, internal) = spawn_both(true).await;
    let client = reqwest::Client::new();
    for path in [
        "/internal/v1/secret",
        "/INTERNAL/v1/secret",
        "/%69nternal/v1/secret",
        "/internal%2Fv1/secret",
        "/metrics",
    ] {
        let res = client
            .get(format!("{public}{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 404, "{path} on the public listener");
        let body: Value = res.json().await.expect("json");
        assert_envelope(&body, "not_found");
    }
    for path in [
        "/internal/v1/secret",
        "/metrics",
        "/things/00000000-0000-4000-8000-000000000000",
    ] {
        let res = client
            .get(format!("{internal}{path}"))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 200, "{path} on the internal listener");
    }
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
    let (base, internal) = spawn_both(true).await;
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
    let metrics = reqwest::get(format!("{internal}/metrics"))
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

    // A documented path with another method: 405 naming the methods it has.
    let res = client
        .delete(format!("{base}/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    assert_envelope(&res.json().await.expect("json"), "method_not_allowed");
    // HEAD wherever GET: the headers, no body.
    let res = client
        .head(format!("{base}/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("x-request-id").is_some());
    assert!(res.bytes().await.expect("body").is_empty());

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

/// `USE_VAULT=true`: settings that are secrets come from Vault KV first (AppRole login),
/// the others from the environment; a Vault that cannot answer stops the start.
mod vault_settings {
    use std::collections::HashMap;

    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    use http_kit::cli::load_settings_from;
    use http_kit::Secret;
    use serde_json::{json, Value};

    async fn login(body: web::Json<Value>) -> HttpResponse {
        if body["role_id"] == "role-1" && body["secret_id"] == "secret-1" {
            HttpResponse::Ok().json(json!({"auth": {"client_token": "token-1", "lease_duration": 3600, "renewable": true}}))
        } else {
            HttpResponse::BadRequest().json(json!({"errors": ["invalid role or secret ID"]}))
        }
    }

    async fn kv(request: HttpRequest, path: web::Path<String>) -> HttpResponse {
        if request
            .headers()
            .get("x-vault-token")
            .and_then(|t| t.to_str().ok())
            != Some("token-1")
        {
            return HttpResponse::Forbidden().json(json!({"errors": ["permission denied"]}));
        }
        match path.as_str() {
            "saas-project/test/DATABASE_URL" => HttpResponse::Ok().json(json!({
                "data": {"data": {"value": "postgres://vault@db/saas_platform"}, "metadata": {"version": 1}}
            })),
            _ => HttpResponse::NotFound().json(json!({"errors": []})),
        }
    }

    /// A Vault stand-in (AppRole login and KV v2 reads, as Vault documents them) on a
    /// thread of its own: settings are read before any runtime exists.
    fn stand_in() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                HttpServer::new(|| {
                    App::new()
                        .route("/v1/auth/approle/login", web::post().to(login))
                        .route("/v1/secret/data/{path:.*}", web::get().to(kv))
                })
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run()
                .await
            })
        });
        addr
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    type Read = (Secret<String>, Secret<String>);

    fn read(r: &mut http_kit::ConfigReader<'_>) -> Read {
        (r.required("DATABASE_URL"), r.required("REDIS_URL"))
    }

    #[test]
    fn secrets_come_from_vault_first_then_the_environment() {
        let vault = stand_in();
        let settings = load_settings_from(
            &env(&[
                ("USE_VAULT", "true"),
                ("VAULT_ADDR", &vault),
                ("VAULT_ROLE_ID", "role-1"),
                ("VAULT_SECRET_ID", "secret-1"),
                ("ENVIRONMENT", "test"),
                ("DATABASE_URL", "postgres://env@db/saas_platform"),
                ("REDIS_URL", "redis://env:6379"),
            ]),
            read,
        )
        .expect("settings");
        assert_eq!(settings.0.expose(), "postgres://vault@db/saas_platform");
        assert_eq!(
            settings.1.expose(),
            "redis://env:6379",
            "not in Vault: the environment"
        );

        // Without USE_VAULT, Vault is not asked.
        let settings = load_settings_from(
            &env(&[
                ("DATABASE_URL", "postgres://env@db/x"),
                ("REDIS_URL", "redis://env:6379"),
                ("VAULT_ADDR", &vault),
            ]),
            read,
        )
        .expect("settings");
        assert_eq!(settings.0.expose(), "postgres://env@db/x");
    }

    #[test]
    fn a_vault_that_refuses_or_cannot_answer_stops_the_start_naming_it() {
        let vault = stand_in();
        let refused = load_settings_from(
            &env(&[
                ("USE_VAULT", "true"),
                ("VAULT_ADDR", &vault),
                ("VAULT_ROLE_ID", "role-1"),
                ("VAULT_SECRET_ID", "wrong"),
                ("DATABASE_URL", "postgres://env@db/x"),
                ("REDIS_URL", "redis://env:6379"),
            ]),
            read,
        )
        .expect_err("refused");
        let text = refused.to_string();
        assert!(text.contains("VAULT_ADDR"), "{text}");
        assert!(
            !text.contains("wrong"),
            "the secret id is never shown: {text}"
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed);
        let down = load_settings_from(
            &env(&[
                ("USE_VAULT", "true"),
                ("VAULT_ADDR", &dead),
                ("VAULT_ROLE_ID", "role-1"),
                ("VAULT_SECRET_ID", "secret-1"),
                ("VAULT_TIMEOUT_MS", "500"),
                ("DATABASE_URL", "postgres://env@db/x"),
                ("REDIS_URL", "redis://env:6379"),
            ]),
            read,
        )
        .expect_err("down");
        assert!(down.to_string().contains("VAULT_ADDR"), "{down}");
        let missing =
            load_settings_from(&env(&[("USE_VAULT", "true")]), read).expect_err("missing");
        for name in ["VAULT_ADDR", "VAULT_ROLE_ID", "VAULT_SECRET_ID"] {
            assert!(missing.to_string().contains(name), "{missing}");
        }
    }
}

/// An idle connection is kept longer than the gateway keeps its upstream connections
/// (issue 16: schemathesis met a 503 when nginx reused a connection the service had
/// just closed after actix's default 5 s). The wait is the behaviour under test.
#[tokio::test]
async fn idle_connections_outlive_the_gateways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (base, _) = spawn_both(true).await;
    let host = base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n");
    async fn answer(stream: &mut tokio::net::TcpStream) -> String {
        let mut buffer = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .expect("an answer in time")
            .expect("read");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }
    stream.write_all(request.as_bytes()).await.expect("write");
    assert!(answer(&mut stream).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(7)).await;
    stream.write_all(request.as_bytes()).await.expect("write");
    let second = answer(&mut stream).await;
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "the connection was closed: {second:?}"
    );
    assert!(http_kit::server::KEEP_ALIVE > Duration::from_secs(60));
}
