//! The keyring for real, and the Vault client against an HTTP stand-in that follows
//! Vault's documented requests and answers (AppRole login, renew-self, KV v2, transit).

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use secrets::{Cipher, Keyring, SecretSource, SecretsError, VaultClient, VaultSettings};
use serde_json::{json, Value};

const ROLE_ID: &str = "sso-role";
const SECRET_ID: &str = "sso-secret-id-7f3a";
const DEADLINE: Duration = Duration::from_secs(15);

fn key() -> String {
    Keyring::generate_key().expect("random key")
}

fn keyring(text: &str) -> Keyring {
    Keyring::parse(text).expect("valid keyring")
}

// ---------------------------------------------------------------------------------------
// Keyring
// ---------------------------------------------------------------------------------------

#[test]
fn keyring_round_trip() {
    let keyring = keyring(&format!("k2026a={}", key()));
    let sealed = keyring
        .encrypt(
            b"azure client secret",
            b"tenant_sso_configs.client_secret:1",
        )
        .expect("encrypt");
    assert_eq!(sealed.key_id, "k2026a");
    let plaintext = keyring
        .decrypt(
            &sealed.key_id,
            &sealed.ciphertext,
            b"tenant_sso_configs.client_secret:1",
        )
        .expect("decrypt");
    assert_eq!(plaintext, b"azure client secret");
}

#[test]
fn sealed_layout_is_base64_of_nonce_ciphertext_and_tag() {
    let keyring = keyring(&format!("k={}", key()));
    let sealed = keyring.encrypt(b"12345", b"").expect("encrypt");
    let raw = STANDARD
        .decode(&sealed.ciphertext)
        .expect("standard base64");
    assert_eq!(raw.len(), 12 + 5 + 16);
}

#[test]
fn rotated_keyring_opens_old_ciphertexts_and_seals_with_the_new_key() {
    let old_key = key();
    let old = keyring(&format!("k2025={old_key}"));
    let sealed_before = old.encrypt(b"old token", b"aad").expect("encrypt");

    let rotated = keyring(&format!("k2026a={},k2025={old_key}", key()));
    assert_eq!(rotated.active_key_id(), "k2026a");
    assert_eq!(
        rotated
            .decrypt("k2025", &sealed_before.ciphertext, b"aad")
            .expect("old ciphertext opens"),
        b"old token"
    );
    let sealed_after = rotated.encrypt(b"new token", b"aad").expect("encrypt");
    assert_eq!(sealed_after.key_id, "k2026a");
    assert!(matches!(
        old.decrypt(&sealed_after.key_id, &sealed_after.ciphertext, b"aad"),
        Err(SecretsError::UnknownKeyId(id)) if id == "k2026a"
    ));
}

#[test]
fn wrong_aad_is_refused() {
    let keyring = keyring(&format!("k={}", key()));
    let sealed = keyring
        .encrypt(b"token", b"user_azure_identities.access_token:1")
        .expect("encrypt");
    let swapped = keyring.decrypt(
        &sealed.key_id,
        &sealed.ciphertext,
        b"user_azure_identities.access_token:2",
    );
    assert!(
        matches!(swapped, Err(SecretsError::DecryptFailed)),
        "{swapped:?}"
    );
}

#[test]
fn flipped_ciphertext_byte_is_refused() {
    let keyring = keyring(&format!("k={}", key()));
    let sealed = keyring.encrypt(b"token", b"aad").expect("encrypt");
    let mut raw = STANDARD.decode(&sealed.ciphertext).expect("base64");
    for position in [0, 12, raw.len() - 1] {
        raw[position] ^= 0x01;
        let tampered = STANDARD.encode(&raw);
        raw[position] ^= 0x01;
        let result = keyring.decrypt(&sealed.key_id, &tampered, b"aad");
        assert!(
            matches!(result, Err(SecretsError::DecryptFailed)),
            "byte {position}: {result:?}"
        );
    }
}

#[test]
fn unknown_key_id_is_refused() {
    let keyring = keyring(&format!("k={}", key()));
    let sealed = keyring.encrypt(b"token", b"aad").expect("encrypt");
    let result = keyring.decrypt("other", &sealed.ciphertext, b"aad");
    assert!(matches!(result, Err(SecretsError::UnknownKeyId(id)) if id == "other"));
}

#[test]
fn malformed_and_short_ciphertexts_get_their_own_errors() {
    let keyring = keyring(&format!("k={}", key()));
    assert!(matches!(
        keyring.decrypt("k", "not base64!", b""),
        Err(SecretsError::MalformedCiphertext(_))
    ));
    assert!(matches!(
        keyring.decrypt("k", &STANDARD.encode([0u8; 27]), b""),
        Err(SecretsError::CiphertextTooShort { len: 27, min: 28 })
    ));
}

#[test]
fn same_plaintext_encrypts_differently_each_time() {
    let keyring = keyring(&format!("k={}", key()));
    let first = keyring.encrypt(b"same", b"aad").expect("encrypt");
    let second = keyring.encrypt(b"same", b"aad").expect("encrypt");
    assert_ne!(first.ciphertext, second.ciphertext);
    let nonce =
        |sealed: &secrets::Sealed| STANDARD.decode(&sealed.ciphertext).expect("b64")[..12].to_vec();
    assert_ne!(nonce(&first), nonce(&second));
}

fn parse_error(text: &str) -> String {
    match Keyring::parse(text) {
        Err(SecretsError::InvalidKeyring(message)) => message,
        other => panic!("expected InvalidKeyring, got {other:?}"),
    }
}

#[test]
fn keyring_refuses_bad_base64_without_echoing_it() {
    let message = parse_error(&format!("a={},b=@@not-base64@@", key()));
    assert!(
        message.contains("entry 2") && message.contains("base64"),
        "{message}"
    );
    assert!(!message.contains("@@not-base64@@"), "{message}");
}

#[test]
fn keyring_refuses_a_16_byte_key() {
    let short = STANDARD.encode([7u8; 16]);
    let message = parse_error(&format!("a={short}"));
    assert!(
        message.contains("16 bytes") && message.contains("32"),
        "{message}"
    );
    assert!(!message.contains(&short), "{message}");
}

#[test]
fn keyring_refuses_duplicate_ids() {
    let message = parse_error(&format!("a={},b={},a={}", key(), key(), key()));
    assert!(
        message.contains("entry 3") && message.contains("entry 1"),
        "{message}"
    );
}

#[test]
fn keyring_refuses_an_empty_string_and_bad_ids() {
    assert!(parse_error("").contains("empty"));
    assert!(parse_error("  ").contains("empty"));
    assert!(parse_error(&format!("a={},", key())).contains("entry 2"));
    assert!(parse_error(&format!("bad id={}", key())).contains("key id"));
    assert!(parse_error(&format!("vault-transit:x={}", key())).contains("key id"));
}

#[test]
fn keyring_debug_shows_no_key_material() {
    let (first, second) = (key(), key());
    let keyring = keyring(&format!("k2026a={first},k2025={second}"));
    let debug = format!("{keyring:?}");
    assert!(
        debug.contains("k2026a") && debug.contains("k2025"),
        "{debug}"
    );
    for material in [&first, &second] {
        assert!(!debug.contains(material.trim_end_matches('=')), "{debug}");
    }
}

#[test]
fn generated_keys_are_32_random_bytes() {
    let (a, b) = (key(), key());
    assert_eq!(STANDARD.decode(&a).expect("base64").len(), 32);
    assert_ne!(a, b);
}

// ---------------------------------------------------------------------------------------
// The Vault stand-in
// ---------------------------------------------------------------------------------------

/// Follows Vault's HTTP API for the calls the client makes; counts them.
struct StandIn {
    lease_secs: u64,
    renewable: bool,
    tokens: Mutex<HashMap<String, Instant>>,
    issued: Mutex<Vec<String>>,
    kv: Mutex<HashMap<String, Value>>,
    transit: Mutex<HashMap<String, Keyring>>,
    logins: AtomicUsize,
    renewals: AtomicUsize,
    /// renew-self calls refused because the token was unknown or expired.
    refused_renewals: AtomicUsize,
    /// `X-Vault-Namespace` of every request, in order.
    namespaces: Mutex<Vec<Option<String>>>,
}

impl StandIn {
    fn new(lease_secs: u64, renewable: bool) -> Self {
        Self {
            lease_secs,
            renewable,
            tokens: Mutex::default(),
            issued: Mutex::default(),
            kv: Mutex::default(),
            transit: Mutex::default(),
            logins: AtomicUsize::new(0),
            renewals: AtomicUsize::new(0),
            refused_renewals: AtomicUsize::new(0),
            namespaces: Mutex::default(),
        }
    }

    fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    fn renewals(&self) -> usize {
        self.renewals.load(Ordering::SeqCst)
    }

    fn put_kv(&self, path: &str, data: Value) {
        self.kv.lock().expect("lock").insert(path.to_owned(), data);
    }

    /// Forgets every token, as `vault token revoke` would.
    fn revoke_all(&self) {
        self.tokens.lock().expect("lock").clear();
    }

    fn record(&self, request: &HttpRequest) {
        let namespace = request
            .headers()
            .get("X-Vault-Namespace")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        self.namespaces.lock().expect("lock").push(namespace);
    }

    /// The token of the request if Vault would accept it (else answer [`denied`]).
    fn authorize(&self, request: &HttpRequest) -> Option<String> {
        self.record(request);
        let token = request
            .headers()
            .get("X-Vault-Token")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let valid = self
            .tokens
            .lock()
            .expect("lock")
            .get(&token)
            .is_some_and(|expires| Instant::now() < *expires);
        valid.then_some(token)
    }

    fn auth_block(&self, token: &str) -> Value {
        json!({
            "request_id": "00000000-0000-0000-0000-000000000000",
            "lease_id": "",
            "renewable": false,
            "lease_duration": 0,
            "data": null,
            "warnings": null,
            "auth": {
                "client_token": token,
                "accessor": "accessor",
                "policies": ["default", "sso"],
                "token_policies": ["default", "sso"],
                "metadata": {"role_name": "sso"},
                "lease_duration": self.lease_secs,
                "renewable": self.renewable,
                "entity_id": "",
                "token_type": "service",
                "orphan": true
            }
        })
    }
}

/// Vault's answer to an unknown, expired or revoked token.
fn denied() -> HttpResponse {
    errors(403, &["permission denied"])
}

fn errors(status: u16, messages: &[&str]) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .json(json!({ "errors": messages }))
}

fn data(value: Value) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "request_id": "00000000-0000-0000-0000-000000000000",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": value,
        "wrap_info": null,
        "warnings": null,
        "auth": null
    }))
}

async fn login(
    state: web::Data<StandIn>,
    request: HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    state.record(&request);
    if body["role_id"] != ROLE_ID || body["secret_id"] != SECRET_ID {
        return errors(400, &["invalid role or secret ID"]);
    }
    let number = state.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("hvs.standin{number}{}", key().replace(['+', '/', '='], ""));
    state.tokens.lock().expect("lock").insert(
        token.clone(),
        Instant::now() + Duration::from_secs(state.lease_secs),
    );
    state.issued.lock().expect("lock").push(token.clone());
    HttpResponse::Ok().json(state.auth_block(&token))
}

async fn renew_self(state: web::Data<StandIn>, request: HttpRequest) -> HttpResponse {
    let Some(token) = state.authorize(&request) else {
        state.refused_renewals.fetch_add(1, Ordering::SeqCst);
        return denied();
    };
    if !state.renewable {
        return errors(400, &["lease is not renewable"]);
    }
    state.renewals.fetch_add(1, Ordering::SeqCst);
    state.tokens.lock().expect("lock").insert(
        token.clone(),
        Instant::now() + Duration::from_secs(state.lease_secs),
    );
    HttpResponse::Ok().json(state.auth_block(&token))
}

async fn kv_read(
    state: web::Data<StandIn>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if state.authorize(&request).is_none() {
        return denied();
    }
    // A path no policy grants: 403 whatever the token.
    if path.starts_with("forbidden/") {
        return denied();
    }
    match state.kv.lock().expect("lock").get(path.as_str()) {
        Some(secret) => data(json!({
            "data": secret,
            "metadata": {
                "created_time": "2026-01-01T00:00:00.000000Z",
                "custom_metadata": null,
                "deletion_time": "",
                "destroyed": false,
                "version": 1
            }
        })),
        None => errors(404, &[]),
    }
}

async fn transit_encrypt(
    state: web::Data<StandIn>,
    request: HttpRequest,
    key_name: web::Path<String>,
    body: web::Json<Value>,
) -> HttpResponse {
    if state.authorize(&request).is_none() {
        return denied();
    }
    let Some(Ok(plaintext)) = body["plaintext"].as_str().map(|p| STANDARD.decode(p)) else {
        return errors(400, &["illegal base64 data at input byte 0"]);
    };
    let aad = body["associated_data"]
        .as_str()
        .map(|a| STANDARD.decode(a).expect("associated_data is base64"))
        .unwrap_or_default();
    let mut keys = state.transit.lock().expect("lock");
    // Vault creates the key on first use (upsert).
    let keyring = keys
        .entry(key_name.into_inner())
        .or_insert_with(|| Keyring::parse(&format!("v1={}", key())).expect("keyring"));
    let sealed = keyring.encrypt(&plaintext, &aad).expect("encrypt");
    data(json!({ "ciphertext": format!("vault:v1:{}", sealed.ciphertext), "key_version": 1 }))
}

async fn transit_decrypt(
    state: web::Data<StandIn>,
    request: HttpRequest,
    key_name: web::Path<String>,
    body: web::Json<Value>,
) -> HttpResponse {
    if state.authorize(&request).is_none() {
        return denied();
    }
    let keys = state.transit.lock().expect("lock");
    let Some(keyring) = keys.get(key_name.as_str()) else {
        return errors(400, &["encryption key not found"]);
    };
    let Some(ciphertext) = body["ciphertext"]
        .as_str()
        .and_then(|c| c.strip_prefix("vault:v1:"))
    else {
        return errors(400, &["invalid ciphertext: no prefix"]);
    };
    let aad = body["associated_data"]
        .as_str()
        .map(|a| STANDARD.decode(a).expect("associated_data is base64"))
        .unwrap_or_default();
    match keyring.decrypt("v1", ciphertext, &aad) {
        Ok(plaintext) => data(json!({ "plaintext": STANDARD.encode(plaintext) })),
        Err(_) => errors(400, &["cipher: message authentication failed"]),
    }
}

async fn no_route(request: HttpRequest) -> HttpResponse {
    errors(
        404,
        &[&format!("no handler for route {:?}", request.path())],
    )
}

/// Starts a stand-in on a free port; returns its state and address.
fn start_vault(stand_in: StandIn) -> (web::Data<StandIn>, url::Url) {
    let state = web::Data::new(stand_in);
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app_state = state.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .route("/v1/auth/approle/login", web::post().to(login))
            .route("/v1/auth/token/renew-self", web::post().to(renew_self))
            .route("/v1/secret/data/{path:.*}", web::get().to(kv_read))
            .route("/v1/transit/encrypt/{key}", web::post().to(transit_encrypt))
            .route("/v1/transit/decrypt/{key}", web::post().to(transit_decrypt))
            .default_service(web::to(no_route))
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (
        state,
        url::Url::parse(&format!("http://{addr}")).expect("url"),
    )
}

fn settings(addr: url::Url) -> VaultSettings {
    let mut settings = VaultSettings::new(addr, ROLE_ID, SECRET_ID);
    settings.timeout = Duration::from_secs(5);
    settings
}

fn client(addr: url::Url) -> VaultClient {
    VaultClient::new(settings(addr)).expect("client")
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Vault client
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn vault_logs_in_once_and_reads_kv() {
    let (vault, addr) = start_vault(StandIn::new(3600, true));
    vault.put_kv(
        "saas-project/test/DB",
        json!({"value": "postgres://x", "other": "y"}),
    );
    let client = client(addr);

    assert_eq!(
        client.kv_read("saas-project/test/DB").await.expect("read"),
        Some(fields(&[("other", "y"), ("value", "postgres://x")]))
    );
    assert_eq!(
        client
            .kv_read("saas-project/test/NONE")
            .await
            .expect("read"),
        None
    );
    assert_eq!(vault.logins(), 1);
    assert_eq!(vault.renewals(), 0);
}

#[tokio::test]
async fn renewable_token_is_renewed_two_thirds_into_its_lease() {
    // 2 s: renewal is due after 1.33 s and the token lasts until 2 s, a margin that a
    // busy machine does not eat.
    let (vault, addr) = start_vault(StandIn::new(2, true));
    vault.put_kv("k", json!({"value": "v"}));
    let client = client(addr);

    let deadline = Instant::now() + DEADLINE;
    while vault.renewals() < 2 {
        assert!(
            Instant::now() < deadline,
            "no renew-self within {DEADLINE:?}"
        );
        client.kv_read("k").await.expect("every read succeeds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vault.logins(), 1, "renewed, never logged in again");
}

#[tokio::test]
async fn non_renewable_token_is_replaced_by_a_new_login() {
    let (vault, addr) = start_vault(StandIn::new(1, false));
    vault.put_kv("k", json!({"value": "v"}));
    let client = client(addr);

    let deadline = Instant::now() + DEADLINE;
    while vault.logins() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second login within {DEADLINE:?}"
        );
        client.kv_read("k").await.expect("every read succeeds");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vault.renewals(), 0);
}

#[tokio::test]
async fn background_renewal_keeps_an_idle_token_fresh() {
    let (vault, addr) = start_vault(StandIn::new(2, true));
    let client = client(addr);
    let renewal = client.spawn_renewal();

    let deadline = Instant::now() + DEADLINE;
    while vault.renewals() < 2 {
        assert!(
            Instant::now() < deadline,
            "no background renewal within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vault.logins(), 1);
    renewal.abort();
}

#[tokio::test]
async fn failed_renewal_falls_back_to_a_new_login() {
    let (vault, addr) = start_vault(StandIn::new(1, true));
    let client = client(addr);
    client.authenticate().await.expect("login");
    vault.revoke_all();
    let renewal = client.spawn_renewal();

    let deadline = Instant::now() + DEADLINE;
    while vault.logins() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second login within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vault.refused_renewals.load(Ordering::SeqCst), 1);
    assert_eq!(vault.renewals(), 0);
    renewal.abort();
}

#[tokio::test]
async fn background_renewal_stops_when_the_client_is_dropped() {
    let (_vault, addr) = start_vault(StandIn::new(1, true));
    let client = client(addr);
    let renewal = client.spawn_renewal();
    client.authenticate().await.expect("login");
    drop(client);
    tokio::time::timeout(DEADLINE, renewal)
        .await
        .expect("the task ends")
        .expect("no panic");
}

#[tokio::test]
async fn revoked_token_triggers_one_relogin_and_the_call_succeeds() {
    let (vault, addr) = start_vault(StandIn::new(3600, true));
    vault.put_kv("k", json!({"value": "v"}));
    let client = client(addr);
    client.kv_read("k").await.expect("read");
    assert_eq!(vault.logins(), 1);

    vault.revoke_all();
    let read = client.kv_read("k").await.expect("read after revocation");
    assert_eq!(read, Some(fields(&[("value", "v")])));
    assert_eq!(vault.logins(), 2);
}

#[tokio::test]
async fn forbidden_path_is_denied_after_one_relogin() {
    let (vault, addr) = start_vault(StandIn::new(3600, true));
    let client = client(addr);
    let result = client.kv_read("forbidden/x").await;
    assert!(
        matches!(&result, Err(SecretsError::Denied(m)) if m.contains("permission denied")),
        "{result:?}"
    );
    assert_eq!(vault.logins(), 2);
}

#[tokio::test]
async fn wrong_secret_id_is_denied_without_echoing_it() {
    let (vault, addr) = start_vault(StandIn::new(3600, true));
    let mut settings = settings(addr);
    settings.secret_id = "wrong-secret-id-91c2".into();
    let client = VaultClient::new(settings).expect("client");

    let error = client.authenticate().await.expect_err("refused");
    assert!(
        matches!(&error, SecretsError::Denied(m) if m.contains("invalid role or secret ID")),
        "{error:?}"
    );
    let text = format!("{error} {error:?}");
    assert!(!text.contains("wrong-secret-id-91c2"), "{text}");
    assert_eq!(vault.logins(), 0);
}

#[tokio::test]
async fn debug_output_never_shows_the_token_or_secret_id() {
    let (vault, addr) = start_vault(StandIn::new(3600, true));
    let client = client(addr);
    client.authenticate().await.expect("login");
    let debug = format!("{client:?}");
    let token = vault.issued.lock().expect("lock")[0].clone();
    assert!(!debug.contains(&token), "{debug}");
    assert!(!debug.contains(SECRET_ID), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
}

#[tokio::test]
async fn namespace_header_is_sent_on_every_request() {
    let (vault, addr) = start_vault(StandIn::new(3600, true));
    let mut settings = settings(addr);
    settings.namespace = Some("team-sso".into());
    let client = VaultClient::new(settings).expect("client");
    client.kv_read("k").await.expect("read");
    client
        .transit_encrypt("sso", b"x", b"")
        .await
        .expect("encrypt");

    let namespaces = vault.namespaces.lock().expect("lock").clone();
    assert_eq!(namespaces.len(), 3, "login, KV read, encrypt");
    assert!(
        namespaces
            .iter()
            .all(|ns| ns.as_deref() == Some("team-sso")),
        "{namespaces:?}"
    );
}

#[tokio::test]
async fn unresponsive_vault_is_unavailable_after_the_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts connections and never answers.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut settings = settings(url::Url::parse(&format!("http://{addr}")).expect("url"));
    settings.timeout = Duration::from_millis(300);
    let client = VaultClient::new(settings).expect("client");

    let started = Instant::now();
    let result = client.kv_read("k").await;
    let elapsed = started.elapsed();
    assert!(
        matches!(&result, Err(SecretsError::Unavailable(m)) if m.contains("300 ms")),
        "{result:?}"
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    silent.abort();
}

#[tokio::test]
async fn refused_connection_is_unavailable() {
    let port = {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let client = client(url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url"));
    let result = client.authenticate().await;
    assert!(
        matches!(result, Err(SecretsError::Unavailable(_))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Cipher
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn transit_round_trip_through_cipher() {
    let (_vault, addr) = start_vault(StandIn::new(3600, true));
    let cipher = Cipher::transit(client(addr), "sso");
    let aad = b"user_azure_identities.refresh_token:42";

    let sealed = cipher
        .encrypt("refresh-token-value", aad)
        .await
        .expect("encrypt");
    assert_eq!(sealed.key_id, "vault-transit:sso");
    assert!(
        sealed.ciphertext.starts_with("vault:v1:"),
        "{}",
        sealed.ciphertext
    );
    assert!(cipher.is_active_key_id(&sealed.key_id));
    assert_eq!(
        cipher
            .decrypt(&sealed.key_id, &sealed.ciphertext, aad)
            .await
            .expect("decrypt"),
        "refresh-token-value"
    );

    let moved = cipher
        .decrypt(
            &sealed.key_id,
            &sealed.ciphertext,
            b"user_azure_identities.refresh_token:43",
        )
        .await;
    assert!(
        matches!(moved, Err(SecretsError::Rejected { status: 400, .. })),
        "{moved:?}"
    );
}

#[tokio::test]
async fn transit_cipher_opens_old_local_ciphertexts_with_its_fallback_keyring() {
    let (_vault, addr) = start_vault(StandIn::new(3600, true));
    let old_key = key();
    let local = Cipher::local(keyring(&format!("k2025={old_key}")));
    let old = local
        .encrypt("client secret", b"aad")
        .await
        .expect("encrypt");

    let cipher = Cipher::transit(client(addr), "sso")
        .with_fallback_keyring(keyring(&format!("k2025={old_key}")));
    assert!(!cipher.is_active_key_id(&old.key_id), "due for re-sealing");
    assert_eq!(
        cipher
            .decrypt(&old.key_id, &old.ciphertext, b"aad")
            .await
            .expect("decrypt"),
        "client secret"
    );
    let resealed = cipher
        .encrypt("client secret", b"aad")
        .await
        .expect("encrypt");
    assert_eq!(resealed.key_id, "vault-transit:sso");
}

#[tokio::test]
async fn cipher_names_the_backend_it_lacks() {
    let local = Cipher::local(keyring(&format!("k={}", key())));
    let result = local
        .decrypt("vault-transit:sso", "vault:v1:abc", b"")
        .await;
    assert!(
        matches!(&result, Err(SecretsError::BackendNotConfigured { .. })),
        "{result:?}"
    );
    assert!(result.expect_err("error").to_string().contains("Vault"));

    let (_vault, addr) = start_vault(StandIn::new(3600, true));
    let transit = Cipher::transit(client(addr), "sso");
    let result = transit.decrypt("k2025", "AAAA", b"").await;
    assert!(
        matches!(&result, Err(SecretsError::BackendNotConfigured { .. })),
        "{result:?}"
    );
    assert!(result.expect_err("error").to_string().contains("keyring"));
}

#[test]
fn shared_types_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    fn send<T: Send>(_: T) {}
    send_sync::<Cipher>();
    send_sync::<VaultClient>();
    send_sync::<SecretSource>();
    send_sync::<Keyring>();
    send_sync::<SecretsError>();
    // The futures too, so callers can spawn them.
    let addr = url::Url::parse("http://127.0.0.1:1").expect("url");
    let cipher = Cipher::transit(client(addr.clone()), "sso");
    send(cipher.encrypt("x", b""));
    send(cipher.decrypt("vault-transit:sso", "vault:v1:x", b""));
    send(SecretSource::with_vault(client(addr), "p").get("X"));
}

#[tokio::test]
async fn local_cipher_round_trips_strings() {
    let cipher = Cipher::local(keyring(&format!("k2026a={}", key())));
    let sealed = cipher.encrypt("sécret ✓", b"aad").await.expect("encrypt");
    assert_eq!(sealed.key_id, "k2026a");
    assert_eq!(cipher.active_key_id(), "k2026a");
    assert_eq!(
        cipher
            .decrypt(&sealed.key_id, &sealed.ciphertext, b"aad")
            .await
            .expect("decrypt"),
        "sécret ✓"
    );
}

// ---------------------------------------------------------------------------------------
// SecretSource
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn secret_source_reads_vault_first_then_the_environment() {
    let (vault, addr) = start_vault(StandIn::new(3600, true));
    vault.put_kv(
        "saas-project/test/SECRETS_TEST_IN_VAULT",
        json!({"value": "from-vault"}),
    );
    std::env::set_var("SECRETS_TEST_IN_VAULT", "from-env-ignored");
    std::env::set_var("SECRETS_TEST_ONLY_ENV", "from-env");
    let source = SecretSource::with_vault(client(addr), SecretSource::default_prefix("test"));

    assert_eq!(
        source
            .get("SECRETS_TEST_IN_VAULT")
            .await
            .expect("get")
            .as_deref(),
        Some("from-vault")
    );
    assert_eq!(
        source
            .get("SECRETS_TEST_ONLY_ENV")
            .await
            .expect("get")
            .as_deref(),
        Some("from-env")
    );
    assert_eq!(source.get("SECRETS_TEST_NOWHERE").await.expect("get"), None);
}

#[tokio::test]
async fn secret_source_does_not_fall_back_when_vault_is_down() {
    let port = {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    std::env::set_var("SECRETS_TEST_VAULT_DOWN", "from-env");
    let addr = url::Url::parse(&format!("http://127.0.0.1:{port}")).expect("url");
    let source = SecretSource::with_vault(client(addr), "saas-project/test");
    let result = source.get("SECRETS_TEST_VAULT_DOWN").await;
    assert!(
        matches!(result, Err(SecretsError::Unavailable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn secret_source_without_vault_reads_name_file_trimmed() {
    let path = std::env::temp_dir().join(format!("secrets-test-{}.txt", std::process::id()));
    std::fs::write(&path, "from-file\n").expect("write");
    std::env::set_var("SECRETS_TEST_FROM_FILE_FILE", &path);
    let source = SecretSource::environment_only();

    let value = source.get("SECRETS_TEST_FROM_FILE").await;
    std::fs::remove_file(&path).expect("remove");
    assert_eq!(value.expect("get").as_deref(), Some("from-file"));
}

#[tokio::test]
async fn secret_source_refuses_a_name_and_its_file_together() {
    std::env::set_var("SECRETS_TEST_BOTH", "a");
    std::env::set_var("SECRETS_TEST_BOTH_FILE", "/nonexistent");
    let result = SecretSource::environment_only()
        .get("SECRETS_TEST_BOTH")
        .await;
    assert!(
        matches!(&result, Err(SecretsError::Environment { name, .. }) if name == "SECRETS_TEST_BOTH"),
        "{result:?}"
    );
    assert!(matches!(
        SecretSource::environment_only().get("../etc").await,
        Err(SecretsError::InvalidName(_))
    ));
}
