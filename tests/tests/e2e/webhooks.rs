//! Webhooks end to end: an admin registers an endpoint; a local HTTP receiver checks
//! every delivery's Standard Webhooks signature with the secret it was given; a failed
//! delivery is retried with the same `webhook-id`; a 410 disables the endpoint.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use testkit::TestContext;

use crate::documents::platform_with;
use crate::events::{kafka, start_worker};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    id: String,
    signature_valid: bool,
    body: Value,
}

#[derive(Default)]
struct Receiver {
    secret: Mutex<Option<String>>,
    /// Statuses to answer, in order; 200 once empty. 0: answer 200 only after 1.5 s,
    /// past the worker's timeout (`WEBHOOK_TIMEOUT_MS` 500).
    script: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<Received>>,
}

/// Verifies a Standard Webhooks signature (written from the specification, not with
/// the service's code).
fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| STANDARD.decode(k).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    fresh && header.split(' ').any(|s| s == expected)
}

async fn hook(state: web::Data<Receiver>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    let secret = state
        .secret
        .lock()
        .expect("lock")
        .clone()
        .unwrap_or_default();
    let signature_valid = verify(
        &secret,
        &id,
        &header("webhook-timestamp"),
        &body,
        &header("webhook-signature"),
    );
    state.received.lock().expect("lock").push(Received {
        path: request.path().to_owned(),
        id,
        signature_valid,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let status = state
        .script
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or(200);
    let status = if status == 0 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        200
    } else {
        status
    };
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status")).finish()
}

fn start_receiver() -> (Arc<web::Data<Receiver>>, String) {
    let state = web::Data::new(Receiver::default());
    let (listener, base) = testkit::free_listener();
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .route("/hook", web::post().to(hook))
            .route("/other", web::post().to(hook))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (Arc::new(state), format!("{base}/hook"))
}

async fn wait_received(receiver: &Receiver, count: usize) -> Vec<Received> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let received = receiver.received.lock().expect("lock").clone();
        if received.len() >= count {
            return received;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {count} deliveries: {received:?}",
            received.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn webhooks_are_signed_retried_with_their_id_and_stopped_by_410() {
    let ctx = TestContext::new().await;
    let kafka = kafka().await;
    let docs = platform_with(&ctx, &[("KAFKA_BROKERS", kafka.brokers())], &[]).await;
    let worker = start_worker(
        &ctx,
        &docs,
        kafka,
        &[
            ("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
            ("WEBHOOK_MIN_BACKOFF_MS", "100"),
            ("WEBHOOK_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let (receiver, url) = start_receiver();
    let (admin, _) = docs.auth.session("hooks@example.com").await;
    let tenant = docs.tenant_of(&admin, "Hooked").await;
    let webhooks = format!("{worker}/api/tenants/{tenant}/webhooks");
    let client = &docs.auth.client;

    // Registration: validated, admin only, the secret shown once.
    let refused = client
        .post(&webhooks)
        .bearer_auth(&admin)
        .json(&json!({"url": url, "event_types": ["document.uploaded", "no.such.type"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.expect("json");
    assert!(body["details"]["event_types"].is_array(), "{body}");
    let created = client
        .post(&webhooks)
        .bearer_auth(&admin)
        .json(&json!({"url": url, "event_types": ["document.uploaded"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    let secret = created["data"]["secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    let webhook_id = created["data"]["id"].as_str().expect("id").to_owned();
    *receiver.secret.lock().expect("lock") = Some(secret.clone());
    let listed: Value = client
        .get(&webhooks)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["data"]["webhooks"][0]["id"], webhook_id);
    assert_eq!(listed["data"]["webhooks"][0]["enabled"], true);
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is never shown again"
    );
    // At rest the secret is sealed with the keyring, bound to its endpoint.
    {
        #[derive(diesel::QueryableByName)]
        struct Stored {
            #[diesel(sql_type = diesel::sql_types::Text)]
            secret: String,
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
            secret_key_id: Option<String>,
        }
        let mut db = AsyncPgConnection::establish(&ctx.main_url)
            .await
            .expect("db");
        let stored: Stored = diesel::sql_query(
            "SELECT secret, secret_key_id FROM webhook_endpoints WHERE id = $1::uuid",
        )
        .bind::<diesel::sql_types::Text, _>(&webhook_id)
        .get_result(&mut db)
        .await
        .expect("endpoint");
        assert!(!stored.secret.contains("whsec_"), "sealed, not in clear");
        let keyring = secrets::Keyring::parse(secrets::DEVELOPMENT_KEYRING).expect("keyring");
        let opened = keyring
            .decrypt(
                stored.secret_key_id.as_deref().expect("key id"),
                &stored.secret,
                format!("webhook_endpoints.secret:{webhook_id}").as_bytes(),
            )
            .expect("opens with its endpoint's data");
        assert_eq!(String::from_utf8(opened).expect("utf-8"), secret);
    }
    let (viewer, _) = docs.auth.session("viewer@example.com").await;
    docs.add_member(&admin, &tenant, &viewer, "viewer").await;
    let forbidden = client
        .get(&webhooks)
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("get");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);

    // A receiver that times out, then answers 500, then 200: three attempts, one
    // webhook-id, all signed, one success (the late answer to the first is not one).
    receiver.script.lock().expect("lock").extend([0, 500]);
    let (status, uploaded) = docs
        .upload(&admin, &tenant, b"hooked bytes".to_vec(), "h.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let received = wait_received(&receiver, 3).await;
    assert!(received.iter().all(|r| r.signature_valid), "{received:?}");
    assert!(
        received.iter().all(|r| r.id == received[0].id),
        "retries keep their webhook-id: {received:?}"
    );
    assert!(received[0].id.starts_with("msg_"));
    assert_eq!(received[2].body["type"], "document.uploaded");
    assert_eq!(
        received[2].body["data"]["document_id"],
        uploaded["data"]["id"]
    );
    assert_eq!(received[2].body["tenant_id"], tenant);

    let mut db = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("main database");
    use main_db::schema::{webhook_attempts, webhook_deliveries};
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status: String = webhook_deliveries::table
            .select(webhook_deliveries::status)
            .first(&mut db)
            .await
            .expect("delivery");
        if status == "delivered" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "delivery is {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attempts: Vec<Option<i32>> = webhook_attempts::table
        .order(webhook_attempts::id.asc())
        .select(webhook_attempts::status_code)
        .load(&mut db)
        .await
        .expect("attempts");
    assert_eq!(
        attempts,
        [None, Some(500), Some(200)],
        "every attempt recorded (a timeout has no status)"
    );
    let successes: i64 = webhook_attempts::table
        .filter(webhook_attempts::status_code.eq(200))
        .count()
        .get_result(&mut db)
        .await
        .expect("count");
    assert_eq!(successes, 1, "one success recorded");

    // A 410 disables the endpoint: later events are not sent.
    receiver.script.lock().expect("lock").push_back(410);
    let (status, _) = docs
        .upload(&admin, &tenant, b"gone".to_vec(), "g.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    wait_received(&receiver, 4).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed: Value = client
            .get(&webhooks)
            .bearer_auth(&admin)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        if listed["data"]["webhooks"][0]["enabled"] == false {
            assert!(listed["data"]["webhooks"][0]["disabled_reason"].is_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not disabled: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second endpoint: when it has the next event, the webhooks consumer has handled
    // it, so the disabled endpoint's silence means something.
    let other = client
        .post(&webhooks)
        .bearer_auth(&admin)
        .json(&json!({"url": url.replace("/hook", "/other"), "event_types": ["document.uploaded"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(other.status(), StatusCode::CREATED);
    let (status, after) = docs
        .upload(&admin, &tenant, b"after gone".to_vec(), "a.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let received = wait_received(&receiver, 5).await;
    let to_other: Vec<_> = received.iter().filter(|r| r.path == "/other").collect();
    assert_eq!(to_other.len(), 1, "{received:?}");
    assert_eq!(to_other[0].body["data"]["document_id"], after["data"]["id"]);
    assert_eq!(
        received.iter().filter(|r| r.path == "/hook").count(),
        4,
        "nothing goes to a disabled endpoint"
    );

    // Removal.
    let removed = client
        .delete(format!("{webhooks}/{webhook_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(removed.status(), StatusCode::OK);
    let again = client
        .delete(format!("{webhooks}/{webhook_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}
