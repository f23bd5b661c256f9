//! SSO end to end: auth, tenant and sso services against a local OpenID Connect provider
//! shaped like Entra ID (`testkit::TestOidc`), with the authorization-code flow and PKCE
//! followed by a browser-less client (redirects and cookies by hand). Microsoft Graph
//! (groups overage) is an HTTP stand-in with paging.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use testkit::{OidcClient, OidcTenant, OidcUser, TestContext, TestOidc};

use crate::auth::{assert_error, start_with, Auth};

/// The keyring the sso service gets in these tests (and which they decrypt with).
const KEYRING: &str = "test1=dGVzdC1rZXktZm9yLXNzby10ZXN0cy0xMjM0NTY3OCE=";
const CORP: &str = "11111111-1111-4111-8111-111111111111";
const QUIRKY: &str = "22222222-2222-4222-8222-222222222222";
const HIDDEN: &str = "33333333-3333-4333-8333-333333333333";
const OTHER: &str = "44444444-4444-4444-8444-444444444444";
const FRONT_END: &str = "http://app.example.test";

struct Platform {
    ctx: TestContext,
    auth: Auth,
    tenant: String,
    sso: String,
    oidc: TestOidc,
    graph: String,
    graph_calls: Arc<Mutex<Vec<String>>>,
    admin: String,
    env: Vec<(String, String)>,
}

fn users() -> Vec<OidcUser> {
    vec![
        OidcUser::new("alice@corp.com", "oid-alice")
            .with_name("Alice Example")
            .with_groups(["g-users"])
            .with_xms_edov(true),
        OidcUser::new("root@corp.com", "oid-root")
            .with_groups(["g-admins", "g-users"])
            .with_xms_edov(true),
        OidcUser::new("bob@other.com", "oid-bob").with_xms_edov(true),
        OidcUser::new("eve@evilcorp.com", "oid-eve").with_xms_edov(true),
        OidcUser::new("mallory@corp.com", "oid-mallory")
            .with_tampered_nonce()
            .with_xms_edov(true),
        OidcUser::new("trudy@corp.com", "oid-trudy")
            .with_tid(OTHER)
            .with_xms_edov(true),
        OidcUser::new("olga@corp.com", "oid-olga")
            .with_groups_overage()
            .with_xms_edov(true),
        OidcUser::new("una@corp.com", "oid-una").with_xms_edov(false),
        OidcUser::new("outsider@corp.com", "oid-outsider")
            .with_groups(["g-contractors"])
            .with_xms_edov(true),
        // No xms_edov claim at all: the directory asserts nothing.
        OidcUser::new("taken@corp.com", "oid-taken"),
        OidcUser::new("verified@corp.com", "oid-verified").with_xms_edov(true),
        OidcUser::new("boss@corp.com", "oid-boss").with_xms_edov(true),
        OidcUser::new("victim@corp.com", "oid-victim").with_xms_edov(true),
        OidcUser::new("resetter@corp.com", "oid-resetter").with_xms_edov(true),
        OidcUser::new("linker@corp.com", "oid-linker").with_xms_edov(true),
        // New to the platform, and no xms_edov claim: refused.
        OidcUser::new("nadia@corp.com", "oid-nadia"),
    ]
}

/// Microsoft Graph's transitiveMemberOf, two pages (the second through `@odata.nextLink`).
async fn graph_groups(
    request: HttpRequest,
    calls: web::Data<Arc<Mutex<Vec<String>>>>,
) -> HttpResponse {
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bearer.starts_with("Bearer ") || bearer.len() < 20 {
        return HttpResponse::Unauthorized()
            .json(json!({"error": {"code": "InvalidAuthenticationToken"}}));
    }
    calls
        .lock()
        .expect("calls")
        .push(request.query_string().to_owned());
    let host = request.connection_info().host().to_owned();
    if request.query_string().contains("skiptoken=page2") {
        HttpResponse::Ok().json(json!({"value": [{"id": "g-admins"}, {"id": "g-more"}]}))
    } else {
        HttpResponse::Ok().json(json!({
            "value": [{"id": "g-zero"}, {"id": "g-one"}],
            "@odata.nextLink": format!("http://{host}/v1.0/me/transitiveMemberOf/microsoft.graph.group?$select=id&$skiptoken=page2"),
        }))
    }
}

async fn start_graph(calls: Arc<Mutex<Vec<String>>>) -> String {
    let (listener, base) = testkit::free_listener();
    let server = HttpServer::new(move || {
        App::new().app_data(web::Data::new(calls.clone())).route(
            "/v1.0/me/transitiveMemberOf/microsoft.graph.group",
            web::get().to(graph_groups),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    base
}

async fn platform(extra: &[(&str, &str)]) -> Platform {
    platform_with(extra, &[]).await
}

/// [`platform`], and an event-worker mailing account emails to the returned sink
/// (auth and sso publish their events to the test's Kafka).
async fn mailing_platform(extra: &[(&str, &str)]) -> (Platform, testkit::TestSmtp) {
    let kafka = crate::events::kafka().await;
    let mut sso_extra = vec![("KAFKA_BROKERS", kafka.brokers())];
    sso_extra.extend_from_slice(extra);
    let p = platform_with(&sso_extra, &[("KAFKA_BROKERS", kafka.brokers())]).await;
    let smtp = testkit::TestSmtp::start().await.expect("SMTP sink");
    testkit::start_service::<event_worker::Service>(
        &p.ctx,
        &[
            ("KAFKA_BROKERS", kafka.brokers()),
            ("TENANT_SERVICE_URL", p.tenant.as_str()),
            ("AUTH_SERVICE_URL", p.auth.base.as_str()),
            ("SMTP_URL", smtp.url.as_str()),
        ],
    );
    (p, smtp)
}

async fn platform_with(extra: &[(&str, &str)], auth_extra: &[(&str, &str)]) -> Platform {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, auth_extra, &[]);
    let (sso_listener, sso) = testkit::free_listeners();
    let callback = format!("{sso}/api/auth/sso/azure/callback");
    let tenant_of = |tid: &str| {
        OidcTenant::new(tid)
            .with_client(OidcClient::public("spa-client", callback.clone()))
            .with_client(OidcClient::confidential(
                "web-client",
                "web-secret-1",
                callback.clone(),
            ))
    };
    let mut corp = tenant_of(CORP);
    for user in users() {
        corp = corp.with_user(user);
    }
    let oidc = TestOidc::start(vec![
        corp,
        tenant_of(QUIRKY)
            .with_literal_tenantid_issuer()
            .with_user(OidcUser::new("alice@corp.com", "oid-alice").with_xms_edov(true)),
        tenant_of(HIDDEN)
            .with_hidden_signing_key()
            .with_user(OidcUser::new("alice@corp.com", "oid-alice").with_xms_edov(true)),
    ])
    .await;
    let graph_calls = Arc::new(Mutex::new(Vec::new()));
    let graph = start_graph(graph_calls.clone()).await;
    let mut env = vec![
        ("TENANT_SERVICE_URL", tenant.as_str()),
        ("AUTH_SERVICE_URL", auth.base.as_str()),
        ("SSO_AUTHORITY_URL", oidc.authority()),
        ("SSO_GRAPH_URL", graph.as_str()),
        ("SSO_PUBLIC_URL", sso.as_str()),
        ("SSO_ALLOWED_RETURN_ORIGINS", FRONT_END),
        ("SECRETS_KEYRING", KEYRING),
    ];
    env.extend_from_slice(extra);
    testkit::start_service_on::<sso::Service>(&ctx, &env, sso_listener);
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let (admin, _) = auth.session("admin@platform.test").await;
    Platform {
        ctx,
        auth,
        tenant,
        sso,
        oidc,
        graph,
        graph_calls,
        admin,
        env,
    }
}

/// A browser without a browser: follows redirects by hand, keeping cookies per host.
#[derive(Default)]
struct Browser {
    cookies: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    /// Follows redirects from `url` until a response that is not a redirect, or one
    /// that leaves for `stop_at` (not followed). Returns the last response and the URL
    /// it came from (or the Location it pointed at, when stopped).
    async fn go(&mut self, url: &str, stop_at: Option<&str>) -> (reqwest::Response, String) {
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut url = url::Url::parse(url).expect("url");
        for _ in 0..15 {
            let host = format!(
                "{}:{}",
                url.host_str().unwrap_or(""),
                url.port_or_known_default().unwrap_or(0)
            );
            let mut request = client.get(url.clone());
            if let Some(jar) = self.cookies.get(&host) {
                let header: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
                request = request.header("cookie", header.join("; "));
            }
            let response = request.send().await.expect("request");
            for value in response.headers().get_all("set-cookie") {
                let text = value.to_str().unwrap_or("");
                if let Some((name, rest)) = text.split(';').next().and_then(|p| p.split_once('=')) {
                    self.cookies
                        .entry(host.clone())
                        .or_default()
                        .insert(name.trim().to_owned(), rest.trim().to_owned());
                }
            }
            if !response.status().is_redirection() {
                return (response, url.to_string());
            }
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .expect("location")
                .to_owned();
            let next = url.join(&location).expect("location url");
            if stop_at.is_some_and(|s| next.as_str().starts_with(s)) {
                return (response, next.to_string());
            }
            url = next;
        }
        panic!("too many redirects");
    }
}

impl Platform {
    /// One more sso service with the same settings (another replica).
    fn another_sso(&self) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        testkit::start_service::<sso::Service>(&self.ctx, &env);
    }

    async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.ctx.main_url)
            .await
            .expect("db")
    }

    async fn stored(&self, email: &str) -> StoredIdentity {
        let mut conn = self.db().await;
        diesel::sql_query(
            "SELECT i.id, i.access_token_encrypted, i.refresh_token_encrypted, i.encryption_key_id, \
                    i.token_expires_at, i.needs_reauth \
             FROM user_azure_identities i JOIN users u ON u.id = i.user_id WHERE u.email = $1",
        )
        .bind::<diesel::sql_types::Text, _>(email)
        .get_result(&mut conn)
        .await
        .expect("identity")
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .auth
            .client
            .request(method, format!("{}{path}", self.sso))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn new_tenant(&self, name: &str) -> String {
        let response = self
            .auth
            .client
            .post(format!("{}/api/tenants", self.tenant))
            .bearer_auth(&self.admin)
            .json(&json!({"name": name}))
            .send()
            .await
            .expect("create tenant");
        let body: Value = response.json().await.expect("json");
        body["data"]["id"].as_str().expect("id").to_owned()
    }

    /// A tenant with SSO configured for `tid` and enabled; provisioning as given.
    async fn sso_tenant(
        &self,
        name: &str,
        tid: &str,
        client: Value,
        provisioning: Value,
    ) -> String {
        let tenant = self.new_tenant(name).await;
        let mut config =
            json!({"provider_tenant_id": tid, "client_id": "spa-client", "enable": true});
        if let Some(map) = client.as_object() {
            for (k, v) in map {
                config[k] = v.clone();
            }
        }
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/tenants/{tenant}/sso/config"),
                &self.admin,
                Some(config),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self
            .call(
                reqwest::Method::PUT,
                &format!("/api/tenants/{tenant}/sso/config/auto-provisioning"),
                &self.admin,
                Some(provisioning),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tenant
    }

    fn login_url(&self, tenant: &str, hint: &str) -> String {
        format!(
            "{}/api/auth/sso/azure/login/{tenant}?login_hint={hint}",
            self.sso
        )
    }

    /// The whole flow: (status, body) of the callback.
    async fn sign_in(&self, tenant: &str, hint: &str) -> (StatusCode, Value) {
        let mut browser = Browser::default();
        let (response, _) = browser.go(&self.login_url(tenant, hint), None).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The callback URL the provider sends the browser to (not followed), and that
    /// browser (it holds the login's cookie).
    async fn callback_url(&self, tenant: &str, hint: &str) -> (Browser, String) {
        let mut browser = Browser::default();
        let stop = format!("{}/api/auth/sso/azure/callback", self.sso);
        let (response, url) = browser.go(&self.login_url(tenant, hint), Some(&stop)).await;
        assert!(response.status().is_redirection(), "{}", response.status());
        assert!(url.starts_with(&stop), "{url}");
        (browser, url)
    }

    /// How many directory identities the user has.
    async fn identities_of(&self, user_id: &str) -> i64 {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = self.db().await;
        let count: Count = diesel::sql_query(
            "SELECT count(*) AS n FROM user_azure_identities WHERE user_id = $1::uuid",
        )
        .bind::<diesel::sql_types::Text, _>(user_id)
        .get_result(&mut conn)
        .await
        .expect("count");
        count.n
    }

    /// Marks the account's email verified, as a verification link would.
    async fn mark_email_verified(&self, email: &str) {
        let mut conn = self.db().await;
        let updated =
            diesel::sql_query("UPDATE users SET email_verified_at = now() WHERE email = $1")
                .bind::<diesel::sql_types::Text, _>(email)
                .execute(&mut conn)
                .await
                .expect("update");
        assert_eq!(updated, 1, "{email}");
    }

    async fn role_of(&self, tenant: &str, user_id: &str) -> Option<String> {
        let mut conn = AsyncPgConnection::establish(&self.ctx.main_url)
            .await
            .expect("db");
        #[derive(QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            role: String,
        }
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT role FROM user_tenant_associations WHERE tenant_id = $1::uuid AND user_id = $2::uuid",
        )
        .bind::<diesel::sql_types::Text, _>(tenant)
        .bind::<diesel::sql_types::Text, _>(user_id)
        .load(&mut conn)
        .await
        .expect("role");
        rows.into_iter().next().map(|r| r.role)
    }
}

#[derive(QueryableByName, Debug, Clone)]
struct StoredIdentity {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    access_token_encrypted: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    refresh_token_encrypted: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    encryption_key_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    token_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    needs_reauth: bool,
}

fn open_token(stored: &StoredIdentity, column: &str, ciphertext: &str) -> String {
    let keyring = secrets::Keyring::parse(KEYRING).expect("keyring");
    String::from_utf8(
        keyring
            .decrypt(
                stored.encryption_key_id.as_deref().expect("key id"),
                ciphertext,
                format!("user_azure_identities.{column}:{}", stored.id).as_bytes(),
            )
            .expect("decrypts with its row's associated data"),
    )
    .expect("utf-8")
}

fn provisioning(domains: &[&str], extra: Value) -> Value {
    let mut body =
        json!({"enabled": true, "default_role": "viewer", "allowed_email_domains": domains});
    if let Some(map) = extra.as_object() {
        for (k, v) in map {
            body[k] = v.clone();
        }
    }
    body
}

#[tokio::test]
async fn a_public_client_signs_in_with_pkce_is_provisioned_and_its_tokens_work() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Corp",
            CORP,
            json!({}),
            provisioning(
                &["corp.com"],
                json!({"group_role_mapping": {"g-users": "user", "g-admins": "admin"}}),
            ),
        )
        .await;

    // The login redirect carries PKCE S256, state, nonce and the Entra parameters.
    let response = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(p.login_url(&tenant, "alice@corp.com"))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), StatusCode::FOUND);
    let location =
        url::Url::parse(response.headers()["location"].to_str().expect("loc")).expect("url");
    assert!(
        location.as_str().starts_with(&p.oidc.issuer(CORP)),
        "{location}"
    );
    let params: HashMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["response_mode"], "query");
    assert_eq!(params["client_id"], "spa-client");
    assert_eq!(
        params["redirect_uri"],
        format!("{}/api/auth/sso/azure/callback", p.sso)
    );
    for scope in ["openid", "profile", "email", "offline_access", "User.Read"] {
        assert!(
            params["scope"].split(' ').any(|s| s == scope),
            "{}",
            params["scope"]
        );
    }
    assert!(params["state"].len() >= 32 && params["nonce"].len() >= 32);
    assert!(params["code_challenge"].len() >= 43);

    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["auth_method"], "sso");
    assert_eq!(body["tenant_id"], tenant.as_str());
    assert_eq!(body["user"]["email"], "alice@corp.com");
    assert_eq!(body["user"]["first_name"], "Alice");
    let access = body["access_token"].as_str().expect("access").to_owned();
    assert!(body["refresh_token"].as_str().is_some());
    // The platform tokens work.
    let (status, me) = p.auth.get("/api/users/me", Some(&access)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    let user_id = me["data"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        p.role_of(&tenant, &user_id).await.as_deref(),
        Some("user"),
        "g-users maps to user"
    );

    // Signing in again finds the same identity (keyed on tid + oid).
    let (status, again) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["user"]["id"], user_id.as_str());
    let (status, identities) = p
        .call(
            reqwest::Method::GET,
            "/api/auth/sso/identities",
            &access,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{identities}");
    let list = identities["identities"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{identities}");
    assert_eq!(list[0]["azure_object_id"], "oid-alice");
    assert_eq!(list[0]["azure_tenant_id"], CORP);
    assert_eq!(list[0]["has_valid_token"], true);

    // Stored Azure tokens are ciphertexts that the keyring opens with their row's data.
    let mut conn = AsyncPgConnection::establish(&p.ctx.main_url)
        .await
        .expect("db");
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
        #[diesel(sql_type = diesel::sql_types::Text)]
        access_token_encrypted: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        refresh_token_encrypted: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        encryption_key_id: String,
    }
    let stored: Stored = diesel::sql_query(
        "SELECT id, access_token_encrypted, refresh_token_encrypted, encryption_key_id FROM user_azure_identities",
    )
    .get_result(&mut conn)
    .await
    .expect("identity");
    assert_eq!(stored.encryption_key_id, "test1");
    let keyring = secrets::Keyring::parse(KEYRING).expect("keyring");
    let open = |column: &str, ciphertext: &str| {
        String::from_utf8(
            keyring
                .decrypt(
                    "test1",
                    ciphertext,
                    format!("user_azure_identities.{column}:{}", stored.id).as_bytes(),
                )
                .expect("decrypts with its row's associated data"),
        )
        .expect("utf-8")
    };
    let azure_access = open("access_token", &stored.access_token_encrypted);
    let azure_refresh = open("refresh_token", &stored.refresh_token_encrypted);
    assert!(azure_access.len() > 10 && azure_refresh.len() > 10);
    assert!(!stored.access_token_encrypted.contains(&azure_access));
    assert!(!stored.refresh_token_encrypted.contains(&azure_refresh));
    // The same ciphertext does not open under another row's data.
    assert!(keyring
        .decrypt(
            "test1",
            &stored.access_token_encrypted,
            b"user_azure_identities.access_token:other"
        )
        .is_err());
}

#[tokio::test]
async fn a_confidential_client_signs_in_and_its_secret_is_never_shown() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Web",
            CORP,
            json!({"client_id": "web-client", "client_secret": "web-secret-1"}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let (status, config) = p
        .call(
            reqwest::Method::GET,
            &format!("/api/tenants/{tenant}/sso/config"),
            &p.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["data"]["has_client_secret"], true);
    assert!(!config.to_string().contains("web-secret-1"), "{config}");
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = body["user"]["id"].as_str().expect("id");
    assert_eq!(
        p.role_of(&tenant, user).await.as_deref(),
        Some("viewer"),
        "the default role"
    );

    // A wrong secret: the provider refuses the code exchange.
    let (status, _) = p
        .call(
            reqwest::Method::PUT,
            &format!("/api/tenants/{tenant}/sso/config"),
            &p.admin,
            Some(json!({"client_secret": "wrong"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_error(status, &body, 400, "azure_error");
}

#[tokio::test]
async fn the_callback_refuses_reused_expired_and_forged_states() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "States",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let client = Client::new();

    // Reused: the first use signs in, the second is refused.
    let (mut browser, callback) = p.callback_url(&tenant, "alice@corp.com").await;
    let (first, _) = browser.go(&callback, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let (second, _) = browser.go(&callback, None).await;
    let status = second.status();
    assert_error(
        status,
        &second.json().await.expect("json"),
        400,
        "invalid_state",
    );

    // Another browser than the one that started the login (login CSRF): refused, even
    // with a fresh state and code.
    let (_, callback) = p.callback_url(&tenant, "alice@corp.com").await;
    let response = client.get(&callback).send().await.expect("other browser");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        400,
        "invalid_state",
    );

    // Expired: the state's lifetime runs out in Redis before the callback.
    let (mut browser, callback) = p.callback_url(&tenant, "alice@corp.com").await;
    let state = url::Url::parse(&callback)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let redis = redis::Client::open(p.ctx.redis_url.as_str()).expect("redis");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = format!("{}sso-state:{state}", p.ctx.redis_prefix);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!(ttl > 590_000 && ttl <= 600_000, "ten minutes, got {ttl} ms");
    let _: i64 = redis::cmd("PEXPIRE")
        .arg(&key)
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("expire");
    testkit::wait_until(std::time::Duration::from_secs(5), || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap_or(1);
            exists == 0
        }
    })
    .await
    .expect("state expired");
    let (response, _) = browser.go(&callback, None).await;
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        400,
        "invalid_state",
    );

    // Forged or missing.
    for query in ["?code=abc&state=forged", "?code=abc"] {
        let response = client
            .get(format!("{}/api/auth/sso/azure/callback{query}", p.sso))
            .send()
            .await
            .expect("forged");
        let status = response.status();
        assert_error(
            status,
            &response.json().await.expect("json"),
            400,
            "invalid_state",
        );
    }
}

#[tokio::test]
async fn id_tokens_that_must_not_be_trusted_are_refused() {
    let p = platform(&[]).await;
    let corp = p
        .sso_tenant(
            "Trust",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    // A nonce the service did not send.
    let (status, body) = p.sign_in(&corp, "mallory@corp.com").await;
    assert_error(status, &body, 400, "invalid_id_token");
    // A token of another directory (tid) from the right issuer.
    let (status, body) = p.sign_in(&corp, "trudy@corp.com").await;
    assert_error(status, &body, 400, "invalid_id_token");
    // An issuer with a literal {tenantid}: the discovery document is refused.
    let quirky = p
        .sso_tenant(
            "Quirky",
            QUIRKY,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let (status, body) = p.sign_in(&quirky, "alice@corp.com").await;
    assert_error(status, &body, 400, "sso_configuration_invalid");
    let (status, check) = p
        .call(
            reqwest::Method::GET,
            &format!("/api/tenants/{quirky}/sso/config/validate"),
            &p.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(check["data"]["valid"], false, "{check}");
    // Signed by a key the JWKS does not have, even after refetching it.
    let hidden = p
        .sso_tenant(
            "Hidden",
            HIDDEN,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let (status, body) = p.sign_in(&hidden, "alice@corp.com").await;
    assert_error(status, &body, 400, "invalid_id_token");
    // Nobody was provisioned by any of these.
    let mut conn = AsyncPgConnection::establish(&p.ctx.main_url)
        .await
        .expect("db");
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let identities: Count = diesel::sql_query("SELECT count(*) AS n FROM user_azure_identities")
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(identities.n, 0);
    // The validate route answers valid for a good configuration.
    let (status, check) = p
        .call(
            reqwest::Method::GET,
            &format!("/api/tenants/{corp}/sso/config/validate"),
            &p.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(check["data"]["valid"], true, "{check}");
    assert_eq!(check["data"]["issuer"], p.oidc.issuer(CORP));
}

#[tokio::test]
async fn provisioning_follows_the_domain_rules_and_the_switch() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Domains",
            CORP,
            json!({}),
            provisioning(
                &["corp.com"],
                json!({"allowed_azure_groups": ["g-users", "g-admins", "g-zero"]}),
            ),
        )
        .await;
    let (status, body) = p.sign_in(&tenant, "bob@other.com").await;
    assert_error(status, &body, 400, "domain_not_allowed");
    let (status, body) = p.sign_in(&tenant, "eve@evilcorp.com").await;
    assert_error(status, &body, 400, "domain_not_allowed");
    // The directory says the email's domain is not verified (xms_edov false).
    let (status, body) = p.sign_in(&tenant, "una@corp.com").await;
    assert_error(status, &body, 400, "domain_not_verified");
    // In none of the allowed groups.
    let (status, body) = p.sign_in(&tenant, "outsider@corp.com").await;
    assert_error(status, &body, 400, "group_not_allowed");
    // In one of them: signed in.
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Provisioning off: a new identity is refused; the setting is persisted.
    let (status, saved) = p
        .call(
            reqwest::Method::PUT,
            &format!("/api/tenants/{tenant}/sso/config/auto-provisioning"),
            &p.admin,
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (_, config) = p
        .call(
            reqwest::Method::GET,
            &format!("/api/tenants/{tenant}/sso/config"),
            &p.admin,
            None,
        )
        .await;
    assert_eq!(
        config["data"]["auto_provisioning"]["enabled"], false,
        "{config}"
    );
    assert_eq!(
        config["data"]["auto_provisioning"]["allowed_email_domains"],
        json!(["corp.com"])
    );
    let (status, body) = p.sign_in(&tenant, "root@corp.com").await;
    assert_error(status, &body, 400, "provisioning_disabled");
    // An identity that exists still signs in.
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Detect matches the exact domain only.
    let (status, found) = p
        .auth
        .client
        .post(format!("{}/api/auth/sso/detect", p.sso))
        .json(&json!({"email": "someone@corp.com"}))
        .send()
        .await
        .map(|r| (r.status(), r))
        .expect("detect");
    let found: Value = found.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["has_sso"], true, "{found}");
    assert_eq!(found["tenants"][0]["tenant_id"], tenant.as_str());
    assert_eq!(
        found["tenants"][0]["login_url"],
        p.login_url(&tenant, "").trim_end_matches("?login_hint=")
    );
    for email in ["someone@evilcorp.com", "someone@sub.corp.com"] {
        let found: Value = p
            .auth
            .client
            .post(format!("{}/api/auth/sso/detect", p.sso))
            .json(&json!({"email": email}))
            .send()
            .await
            .expect("detect")
            .json()
            .await
            .expect("json");
        assert_eq!(found["has_sso"], false, "{email}: {found}");
    }
    let availability: Value = p
        .auth
        .client
        .get(format!(
            "{}/api/auth/sso/check-availability/{tenant}",
            p.sso
        ))
        .send()
        .await
        .expect("availability")
        .json()
        .await
        .expect("json");
    assert_eq!(availability["available"], true, "{availability}");
    assert_eq!(availability["auth_method"], "both");
}

#[tokio::test]
async fn groups_map_to_roles_with_and_without_overage() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Groups",
            CORP,
            json!({}),
            provisioning(
                &["corp.com"],
                json!({"group_role_mapping": {"g-admins": "admin", "g-users": "user"}}),
            ),
        )
        .await;
    let (status, root) = p.sign_in(&tenant, "root@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{root}");
    let root_id = root["user"]["id"].as_str().expect("id");
    assert_eq!(
        p.role_of(&tenant, root_id).await.as_deref(),
        Some("admin"),
        "the highest role wins"
    );
    assert!(
        p.graph_calls.lock().expect("calls").is_empty(),
        "no overage, no Graph"
    );
    // Overage: the groups come from Graph, over two pages; g-admins is on the second.
    let (status, olga) = p.sign_in(&tenant, "olga@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{olga}");
    let olga_id = olga["user"]["id"].as_str().expect("id");
    assert_eq!(p.role_of(&tenant, olga_id).await.as_deref(), Some("admin"));
    let calls = p.graph_calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 2, "both pages: {calls:?}");
    assert!(calls[1].contains("skiptoken=page2"), "{calls:?}");
    let _ = &p.graph;
}

#[tokio::test]
async fn the_return_url_gets_the_tokens_in_its_fragment_and_only_on_allowed_origins() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Front",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let mut browser = Browser::default();
    let start = format!(
        "{}&return_url={}",
        p.login_url(&tenant, "alice@corp.com"),
        url::form_urlencoded::byte_serialize(format!("{FRONT_END}/signed-in?x=1").as_bytes())
            .collect::<String>()
    );
    let (response, location) = browser.go(&start, Some(FRONT_END)).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let target = url::Url::parse(&location).expect("url");
    assert_eq!(target.path(), "/signed-in");
    assert_eq!(target.query(), Some("x=1"), "no token in the query string");
    let fragment: HashMap<String, String> =
        url::form_urlencoded::parse(target.fragment().expect("fragment").as_bytes())
            .into_owned()
            .collect();
    let (status, me) = p
        .auth
        .get("/api/users/me", Some(&fragment["access_token"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(fragment["tenant_id"], tenant);

    for bad in [
        "https://evil.example.test/x",
        "http://app.example.test.evil.test/",
        "javascript:alert(1)",
    ] {
        let response = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .get(format!(
                "{}&return_url={}",
                p.login_url(&tenant, "alice@corp.com"),
                url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
            ))
            .send()
            .await
            .expect("login");
        let status = response.status();
        assert_error(
            status,
            &response.json().await.expect("json"),
            400,
            "validation_error",
        );
    }
}

#[tokio::test]
async fn only_the_tenants_admins_manage_its_sso_configuration() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Admins",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let (viewer, _) = p.auth.session("viewer@platform.test").await;
    let (outsider, _) = p.auth.session("outsider@platform.test").await;
    let (_, me) = p.auth.get("/api/users/me", Some(&viewer)).await;
    let response = p
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/users", p.tenant))
        .bearer_auth(&p.admin)
        .json(&json!({"user_id": me["data"]["id"], "role": "viewer"}))
        .send()
        .await
        .expect("add");
    assert_eq!(response.status(), StatusCode::CREATED);
    let path = format!("/api/tenants/{tenant}/sso/config");
    let (status, body) = p.call(reqwest::Method::GET, &path, &viewer, None).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = p.call(reqwest::Method::GET, &path, &outsider, None).await;
    assert_error(status, &body, 404, "not_found");
    let response = p
        .auth
        .client
        .get(format!("{}{path}", p.sso))
        .send()
        .await
        .expect("anon");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Bad input names its fields.
    let other = p.new_tenant("Fresh").await;
    let (status, body) = p
        .call(
            reqwest::Method::POST,
            &format!("/api/tenants/{other}/sso/config"),
            &p.admin,
            Some(json!({"provider_tenant_id": "common", "client_id": "bad id!", "redirect_uri": "ftp://x"})),
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
    for field in ["provider_tenant_id", "client_id", "redirect_uri"] {
        assert!(body["details"][field].is_array(), "{field}: {body}");
    }
    // One configuration per tenant.
    let (status, body) = p
        .call(
            reqwest::Method::POST,
            &path,
            &p.admin,
            Some(json!({"provider_tenant_id": CORP, "client_id": "spa-client"})),
        )
        .await;
    assert_error(status, &body, 409, "conflict");
    // With an identity linked, deleting needs force.
    let (status, _) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK);
    let (status, stats) = p
        .call(
            reqwest::Method::GET,
            &format!("/api/tenants/{tenant}/sso/statistics"),
            &p.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["data"]["total_identities"], 1, "{stats}");
    let (status, body) = p.call(reqwest::Method::DELETE, &path, &p.admin, None).await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = p
        .call(
            reqwest::Method::DELETE,
            &format!("{path}?force=true"),
            &p.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["deleted_identities"], 1);
    // The tenant is back to passwords only.
    let tenant_row: Value = p
        .auth
        .client
        .get(format!("{}/api/tenants/{tenant}", p.tenant))
        .bearer_auth(&p.admin)
        .send()
        .await
        .expect("tenant")
        .json()
        .await
        .expect("json");
    assert_eq!(tenant_row["data"]["auth_method"], "local", "{tenant_row}");
}

#[tokio::test]
async fn refresh_and_logout_take_care_of_the_stored_azure_tokens() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Care",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
    let before = p.stored("alice@corp.com").await;
    let azure_before = open_token(
        &before,
        "access_token",
        before.access_token_encrypted.as_deref().expect("access"),
    );

    // Refresh: new Azure tokens stored, a new platform pair returned.
    let response = p
        .auth
        .client
        .post(format!("{}/api/auth/sso/azure/refresh", p.sso))
        .bearer_auth(&refresh)
        .json(&json!({"tenant_id": tenant}))
        .send()
        .await
        .expect("refresh");
    let status = response.status();
    let pair: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{pair}");
    let access = pair["access_token"].as_str().expect("access").to_owned();
    let new_refresh = pair["refresh_token"].as_str().expect("refresh").to_owned();
    assert_ne!(new_refresh, refresh);
    let (status, _) = p.auth.get("/api/users/me", Some(&access)).await;
    assert_eq!(status, StatusCode::OK);
    let after = p.stored("alice@corp.com").await;
    let azure_after = open_token(
        &after,
        "access_token",
        after.access_token_encrypted.as_deref().expect("access"),
    );
    assert_ne!(
        azure_after, azure_before,
        "a new Azure access token is stored"
    );
    assert!(after.token_expires_at >= before.token_expires_at);
    // An access token is not a refresh token.
    let response = p
        .auth
        .client
        .post(format!("{}/api/auth/sso/azure/refresh", p.sso))
        .bearer_auth(&access)
        .json(&json!({"tenant_id": tenant}))
        .send()
        .await
        .expect("refresh");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        401,
        "invalid_token",
    );

    // Someone with no membership and no identity in the tenant: 404, nothing revoked.
    let (outsider, _) = p.auth.session("outsider@example.com").await;
    let response = p
        .auth
        .client
        .post(format!("{}/api/auth/sso/azure/logout/{tenant}", p.sso))
        .bearer_auth(&outsider)
        .send()
        .await
        .expect("logout");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        404,
        "not_found",
    );
    let (status, body) = p.auth.get("/api/users/me", Some(&outsider)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Logout: Azure tokens cleared, platform tokens revoked.
    let response = p
        .auth
        .client
        .post(format!("{}/api/auth/sso/azure/logout/{tenant}", p.sso))
        .bearer_auth(&access)
        .json(&json!({"refresh_token": new_refresh}))
        .send()
        .await
        .expect("logout");
    let status = response.status();
    let out: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(
        out["logout_url"].as_str().is_some_and(|u| u.contains(CORP)),
        "{out}"
    );
    let cleared = p.stored("alice@corp.com").await;
    assert!(cleared.access_token_encrypted.is_none() && cleared.refresh_token_encrypted.is_none());
    let (status, body) = p.auth.get("/api/users/me", Some(&access)).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p
        .auth
        .post("/api/auth/refresh", json!({}), Some(&new_refresh))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A refresh token Entra refuses (invalid_grant): the identity needs a new sign-in.
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
    let sso_access = body["access_token"].as_str().expect("access").to_owned();
    let stored = p.stored("alice@corp.com").await;
    let keyring = secrets::Keyring::parse(KEYRING).expect("keyring");
    let bogus = keyring
        .encrypt(
            b"not-a-refresh-token",
            format!("user_azure_identities.refresh_token:{}", stored.id).as_bytes(),
        )
        .expect("seal");
    let mut conn = p.db().await;
    diesel::sql_query(
        "UPDATE user_azure_identities SET refresh_token_encrypted = $1 WHERE id = $2",
    )
    .bind::<diesel::sql_types::Text, _>(&bogus.ciphertext)
    .bind::<diesel::sql_types::Uuid, _>(stored.id)
    .execute(&mut conn)
    .await
    .expect("update");
    let response = p
        .auth
        .client
        .post(format!("{}/api/auth/sso/azure/refresh", p.sso))
        .bearer_auth(&refresh)
        .json(&json!({"tenant_id": tenant}))
        .send()
        .await
        .expect("refresh");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        400,
        "reauth_required",
    );
    let marked = p.stored("alice@corp.com").await;
    assert!(marked.needs_reauth);
    assert!(marked.refresh_token_encrypted.is_none());
    // The directory no longer vouches for her: the platform session that sign-in opened
    // ended with it (offboarding), its access token included.
    let (status, body) = p
        .auth
        .post("/api/auth/refresh", json!({}), Some(&refresh))
        .await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.auth.get("/api/users/me", Some(&sso_access)).await;
    assert_error(status, &body, 401, "token_revoked");
    // A new sign-in clears the mark.
    let (status, _) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!p.stored("alice@corp.com").await.needs_reauth);
}

#[tokio::test]
async fn the_refresh_job_refreshes_only_expiring_tokens_with_two_replicas_running() {
    let p = platform(&[("SSO_REFRESH_INTERVAL_SECS", "1")]).await;
    p.another_sso();
    let tenant = p
        .sso_tenant(
            "Job",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    for user in ["alice@corp.com", "root@corp.com"] {
        let (status, body) = p.sign_in(&tenant, user).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Before its expiry is moved into the window (the job may refresh it at once after).
    let alice_before = p.stored("alice@corp.com").await;
    let mut conn = p.db().await;
    for (email, minutes) in [("alice@corp.com", 5), ("root@corp.com", 120)] {
        diesel::sql_query(
            "UPDATE user_azure_identities i SET token_expires_at = now() + make_interval(mins => $1) \
             FROM users u WHERE u.id = i.user_id AND u.email = $2",
        )
        .bind::<diesel::sql_types::Integer, _>(minutes)
        .bind::<diesel::sql_types::Text, _>(email)
        .execute(&mut conn)
        .await
        .expect("expiry");
    }
    let root_before = p.stored("root@corp.com").await;
    // One of the replicas' jobs (every second) refreshes the expiring token; that it
    // is refreshed once, not by both, is `two_refresh_runners_at_the_same_moment_…`.
    testkit::wait_until(std::time::Duration::from_secs(30), || async {
        p.stored("alice@corp.com")
            .await
            .token_expires_at
            .is_some_and(|t| t > chrono::Utc::now() + chrono::Duration::minutes(50))
    })
    .await
    .expect("the expiring token is refreshed");
    let alice = p.stored("alice@corp.com").await;
    assert!(!alice.needs_reauth);
    assert_ne!(
        alice.refresh_token_encrypted,
        alice_before.refresh_token_encrypted
    );
    let root = p.stored("root@corp.com").await;
    assert_eq!(
        root.token_expires_at, root_before.token_expires_at,
        "not expiring: untouched"
    );
    assert_eq!(
        root.access_token_encrypted,
        root_before.access_token_encrypted
    );
    assert!(!root.needs_reauth);
}

#[tokio::test]
async fn a_browserless_login_through_the_gateway_gives_tokens_that_work_on_users_me() {
    let ctx = TestContext::new().await;
    let (direct, tenant_base) = start_with(&ctx, &[], &[]);
    let (sso_listener, sso_base) = testkit::free_listeners();
    let gateway = testkit::TestGateway::start(
        testkit::Upstreams {
            auth: &direct.base,
            tenant: &tenant_base,
            document: "http://127.0.0.1:9",
            sso: &sso_base,
            event_worker: "http://127.0.0.1:9",
        },
        "2m",
    )
    .await
    .expect("gateway");
    let gw = gateway.base.clone();
    let callback = format!("{gw}/api/auth/sso/azure/callback");
    let oidc = TestOidc::start(vec![OidcTenant::new(CORP)
        .with_client(OidcClient::public("spa-client", callback))
        .with_user(
            OidcUser::new("alice@corp.com", "oid-alice")
                .with_name("Alice Example")
                .with_xms_edov(true),
        )])
    .await;
    testkit::start_service_on::<sso::Service>(
        &ctx,
        &[
            ("TENANT_SERVICE_URL", tenant_base.as_str()),
            ("AUTH_SERVICE_URL", direct.base.as_str()),
            ("SSO_AUTHORITY_URL", oidc.authority()),
            ("SSO_PUBLIC_URL", gw.as_str()),
            ("SECRETS_KEYRING", KEYRING),
        ],
        sso_listener,
    );
    let auth = direct.through(&gw);
    let (admin, _) = auth.session("admin@platform.test").await;
    let (status, created) = auth
        .post(
            "/api/tenants",
            json!({"name": "Gateway Corp"}),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let tenant = created["data"]["id"].as_str().expect("id").to_owned();
    let (status, body) = auth
        .post(
            &format!("/api/tenants/{tenant}/sso/config"),
            json!({"provider_tenant_id": CORP, "client_id": "spa-client", "enable": true}),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["data"]["redirect_uri"],
        format!("{gw}/api/auth/sso/azure/callback")
    );
    let response = auth
        .client
        .put(format!("{gw}/api/tenants/{tenant}/sso/config/auto-provisioning"))
        .bearer_auth(&admin)
        .json(&json!({"enabled": true, "allowed_email_domains": ["corp.com"], "default_role": "user"}))
        .send()
        .await
        .expect("provisioning");
    assert_eq!(response.status(), StatusCode::OK);

    // Detect gives the real login route, through the gateway.
    let (status, found) = auth
        .post(
            "/api/auth/sso/detect",
            json!({"email": "alice@corp.com"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let login_url = found["tenants"][0]["login_url"]
        .as_str()
        .expect("login_url")
        .to_owned();
    assert_eq!(login_url, format!("{gw}/api/auth/sso/azure/login/{tenant}"));

    let mut browser = Browser::default();
    let (response, last) = browser
        .go(&format!("{login_url}?login_hint=alice@corp.com"), None)
        .await;
    assert!(last.starts_with(&gw), "{last}");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().expect("access");
    let (status, me) = auth.get("/api/users/me", Some(access)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["data"]["email"], "alice@corp.com");
    let (status, mine) = auth.get("/api/users/me/sso-identities", Some(access)).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["data"][0]["tenant_name"], "Gateway Corp", "{mine}");
    assert_eq!(mine["data"][0]["has_valid_token"], true, "{mine}");
    let response = auth
        .client
        .delete(format!("{gw}/api/users/me/sso-identities/{tenant}"))
        .bearer_auth(access)
        .send()
        .await
        .expect("unlink");
    let status = response.status();
    let unlinked: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::OK, "{unlinked}");
    assert_eq!(unlinked["data"]["azure_object_id"], "oid-alice");
    let (_, mine) = auth.get("/api/users/me/sso-identities", Some(access)).await;
    assert_eq!(mine["data"], json!([]), "{mine}");
    // The gateway's log has the paths, not the codes, states and hints of the queries.
    let log = gateway.access_log();
    assert!(log.contains("/api/auth/sso/azure/callback"), "{log}");
    for secret in ["code=", "state=", "login_hint=", "alice@corp.com"] {
        assert!(!log.contains(secret), "{secret} in the gateway log:\n{log}");
    }
}

#[tokio::test]
async fn two_refresh_runners_at_the_same_moment_refresh_a_token_once() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Lock",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut conn = p.db().await;
    diesel::sql_query(
        "UPDATE user_azure_identities SET token_expires_at = now() + interval '5 minutes'",
    )
    .execute(&mut conn)
    .await
    .expect("expiry");
    let mut env = p.ctx.service_env();
    env.extend(p.env.iter().cloned());
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = sso::Settings::read(&mut reader);
    let settings = reader.finish(settings).expect("settings");
    let (a, b) = (
        sso::build_app(&settings, &mut http_kit::Background::new()).expect("app a"),
        sso::build_app(&settings, &mut http_kit::Background::new()).expect("app b"),
    );
    let (mut backoff_a, mut backoff_b) = (
        sso::refresh::Backoff::default(),
        sso::refresh::Backoff::default(),
    );
    let (first, second) = tokio::join!(
        sso::refresh::run_once(&a, &mut backoff_a),
        sso::refresh::run_once(&b, &mut backoff_b)
    );
    let passes: Vec<_> = [first.expect("runner a"), second.expect("runner b")]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        passes.len(),
        1,
        "one runner holds the lock, the other stands aside: {passes:?}"
    );
    assert_eq!(passes[0].refreshed, 1, "{passes:?}");
    let alice = p.stored("alice@corp.com").await;
    assert!(!alice.needs_reauth);
    assert!(alice
        .token_expires_at
        .is_some_and(|t| t > chrono::Utc::now() + chrono::Duration::minutes(50)));
    // The lock is released: the next pass runs (and finds nothing due).
    let again = sso::refresh::run_once(&a, &mut backoff_a)
        .await
        .expect("again");
    assert_eq!(again, Some(sso::refresh::Pass::default()));
}

#[tokio::test]
async fn existing_accounts_are_linked_only_when_the_directory_vouches_and_roles_are_kept() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Existing",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let taken = p.auth.register("taken@corp.com").await;
    let verified = p.auth.register("verified@corp.com").await;
    let (boss, _) = p.auth.session("boss@corp.com").await;
    let (_, boss_me) = p.auth.get("/api/users/me", Some(&boss)).await;
    let boss_id = boss_me["data"]["id"].as_str().expect("id").to_owned();
    let response = p
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/users", p.tenant))
        .bearer_auth(&p.admin)
        .json(&json!({"user_id": boss_id, "role": "admin"}))
        .send()
        .await
        .expect("add");
    assert_eq!(response.status(), StatusCode::CREATED);

    // A directory that does not assert the domain verified (no xms_edov) cannot take an
    // account over, nor create one.
    let (status, body) = p.sign_in(&tenant, "taken@corp.com").await;
    assert_error(status, &body, 400, "domain_not_verified");
    let taken_id = taken["user"]["id"].as_str().expect("id");
    assert_eq!(p.identities_of(taken_id).await, 0);
    assert_eq!(p.role_of(&tenant, taken_id).await, None);

    // The directory vouches, but nobody proved the mailbox of the existing account yet.
    let (status, body) = p.sign_in(&tenant, "verified@corp.com").await;
    assert_error(status, &body, 409, "account_link_requires_verification");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("verify your email")),
        "{body}"
    );
    let verified_id = verified["user"]["id"].as_str().expect("id");
    assert_eq!(p.identities_of(verified_id).await, 0);

    // Once the email is verified, the account is linked (the same user).
    p.mark_email_verified("verified@corp.com").await;
    let (status, body) = p.sign_in(&tenant, "verified@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], verified["user"]["id"]);
    assert_eq!(p.identities_of(verified_id).await, 1);

    // An admin's first SSO sign-in does not demote them to the default role.
    p.mark_email_verified("boss@corp.com").await;
    let (status, body) = p.sign_in(&tenant, "boss@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], boss_id.as_str());
    assert_eq!(p.role_of(&tenant, &boss_id).await.as_deref(), Some("admin"));
}

#[tokio::test]
async fn sso_changes_and_logins_are_audited_through_the_outbox() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Audited",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().expect("access").to_owned();
    let user = body["user"]["id"].as_str().expect("id").to_owned();
    let (status, _) = p
        .call(
            reqwest::Method::PUT,
            &format!("/api/tenants/{tenant}/sso/config"),
            &p.admin,
            Some(json!({"config_metadata": {"note": "x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, out) = p
        .call(
            reqwest::Method::POST,
            &format!("/api/auth/sso/azure/logout/{tenant}"),
            &access,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().expect("access").to_owned();
    let (status, _) = p
        .call(
            reqwest::Method::DELETE,
            &format!("/api/users/me/sso-identities/{tenant}"),
            &access,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = p
        .call(
            reqwest::Method::POST,
            &format!("/api/tenants/{tenant}/sso/config/disable"),
            &p.admin,
            Some(json!({"keep_azure_identities": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = p
        .call(
            reqwest::Method::DELETE,
            &format!("/api/tenants/{tenant}/sso/config"),
            &p.admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        payload: Value,
    }
    let mut conn = p.db().await;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT payload FROM outbox WHERE topic = 'audit.events' AND payload->>'tenant_id' = $1 ORDER BY seq",
    )
    .bind::<diesel::sql_types::Text, _>(&tenant)
    .load(&mut conn)
    .await
    .expect("outbox");
    let actions: Vec<&str> = rows
        .iter()
        .map(|r| r.payload["data"]["action"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actions,
        [
            "sso.config.created",
            "sso.enabled",
            "sso.auto_provisioning.updated",
            "sso.login",
            "sso.config.updated",
            "sso.logout",
            "sso.login",
            "sso.identity.unlinked",
            "sso.disabled",
            "sso.config.deleted",
        ]
    );
    let schema: Value =
        serde_json::from_str(events::schema::schema(events::Topic::AuditEvents)).expect("schema");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema");
    for row in &rows {
        let errors: Vec<String> = validator
            .iter_errors(&row.payload)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}: {}", row.payload);
        assert!(
            !row.payload.to_string().contains("token"),
            "no token in an audit event: {}",
            row.payload
        );
    }
    assert_eq!(rows[3].payload["data"]["new_identity"], true);
    assert_eq!(rows[3].payload["actor_id"], user.as_str());
    assert_eq!(rows[6].payload["data"]["new_identity"], false);
    assert_eq!(rows[0].payload["data"]["confidential"], false);
    assert_eq!(
        rows[4].payload["data"]["fields"],
        json!(["config_metadata"])
    );
}

const OWNER_PASSWORD: &str = "mine at last 7";

/// A password login's (status, body).
async fn password_login(auth: &Auth, email: &str, password: &str) -> (StatusCode, Value) {
    auth.post(
        "/api/auth/login",
        json!({"email": email, "password": password}),
        None,
    )
    .await
}

#[tokio::test]
async fn a_pre_registered_address_is_not_linked_until_its_owner_proves_the_mailbox() {
    let (p, smtp) = mailing_platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Victim Corp",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    // The attacker registers the victim's address with a password of theirs.
    let squatted = p.auth.register("victim@corp.com").await;
    let account = squatted["user"]["id"].as_str().expect("id").to_owned();
    let (attacker_access, attacker_refresh) = p.auth.login("victim@corp.com").await;

    // The victim's SSO sign-in links nothing and lets nobody in.
    let (status, body) = p.sign_in(&tenant, "victim@corp.com").await;
    assert_error(status, &body, 409, "account_link_requires_verification");
    assert!(body.get("access_token").is_none(), "{body}");
    assert_eq!(p.identities_of(&account).await, 0);
    assert_eq!(p.role_of(&tenant, &account).await, None);
    let (status, _) = p
        .auth
        .get(&format!("/api/tenants/{tenant}"), Some(&attacker_access))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the attacker got no membership"
    );

    // The victim proves the mailbox with a verification link she asks for.
    let (status, _) = p
        .auth
        .post(
            "/api/auth/resend-verification",
            json!({"email": "victim@corp.com"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let links =
        crate::account::wait_mails(&smtp, "victim@corp.com", "Verify your email address", 2).await;
    let token = crate::account::link_token(&links[1], "http://localhost:3000", "verify-email");
    let (status, body) = p
        .auth
        .post("/api/auth/verify-email", json!({"token": token}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Now the directory identity is linked to the account, and what the attacker held
    // is dead: the password chosen before the mailbox was proven, and every session.
    let (status, body) = p.sign_in(&tenant, "victim@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], account.as_str());
    assert_eq!(p.identities_of(&account).await, 1);
    let victim_access = body["access_token"].as_str().expect("access").to_owned();
    let (status, body) = password_login(&p.auth, "victim@corp.com", "correct horse 1").await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (status, body) = p.auth.get("/api/users/me", Some(&attacker_access)).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p
        .auth
        .post("/api/auth/refresh", json!({}), Some(&attacker_refresh))
        .await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, me) = p.auth.get("/api/users/me", Some(&victim_access)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["data"]["email_verified"], true);
    crate::account::wait_mails(
        &smtp,
        "victim@corp.com",
        "Your account now signs in through your organisation",
        1,
    )
    .await;

    // A new account from a directory that asserts nothing (no xms_edov) is refused.
    let (status, body) = p.sign_in(&tenant, "nadia@corp.com").await;
    assert_error(status, &body, 400, "domain_not_verified");
    let (status, body) = password_login(&p.auth, "nadia@corp.com", "anything 1").await;
    assert_error(status, &body, 401, "invalid_credentials");
    let mut conn = p.db().await;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let nadia: Count =
        diesel::sql_query("SELECT count(*) AS n FROM users WHERE email = 'nadia@corp.com'")
            .get_result(&mut conn)
            .await
            .expect("count");
    assert_eq!(nadia.n, 0, "no account was created");
}

#[tokio::test]
async fn a_password_reset_by_the_owner_also_clears_the_way_and_keeps_her_password() {
    let (p, smtp) = mailing_platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Reset Corp",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    let squatted = p.auth.register("resetter@corp.com").await;
    let account = squatted["user"]["id"].as_str().expect("id").to_owned();
    let (attacker_access, _) = p.auth.login("resetter@corp.com").await;
    let (status, body) = p.sign_in(&tenant, "resetter@corp.com").await;
    assert_error(status, &body, 409, "account_link_requires_verification");

    let (status, _) = p
        .auth
        .post(
            "/api/auth/password/forgot",
            json!({"email": "resetter@corp.com"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mail =
        crate::account::wait_mails(&smtp, "resetter@corp.com", "Reset your password", 1).await;
    let token = crate::account::link_token(&mail[0], "http://localhost:3000", "reset-password");
    let (status, body) = p
        .auth
        .post(
            "/api/auth/password/reset",
            json!({"token": token, "new_password": OWNER_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = p.auth.get("/api/users/me", Some(&attacker_access)).await;
    assert_error(status, &body, 401, "token_revoked");

    let (status, body) = p.sign_in(&tenant, "resetter@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], account.as_str());
    // Her own password, set through the emailed link, stays.
    let (status, body) = password_login(&p.auth, "resetter@corp.com", OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = password_login(&p.auth, "resetter@corp.com", "correct horse 1").await;
    assert_error(status, &body, 401, "invalid_credentials");
}

/// The cookie of a `Set-Cookie` header value: (name, value).
fn set_cookie(headers: &reqwest::header::HeaderMap) -> (String, String) {
    let value = headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a cookie");
    let (name, rest) = value
        .split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .expect("name=value");
    (name.trim().to_owned(), rest.trim().to_owned())
}

/// Follows a started link's `authorization_url` in a browser holding the cookie its
/// answer set: the callback's (status, body).
async fn finish_link(p: &Platform, started: reqwest::Response) -> (StatusCode, Value) {
    let (name, value) = set_cookie(started.headers());
    let body: Value = started.json().await.expect("json");
    let url = body["data"]["authorization_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let mut browser = Browser::default();
    browser
        .cookies
        .entry(p.sso.trim_start_matches("http://").to_owned())
        .or_default()
        .insert(name, value);
    let (response, _) = browser.go(&url, None).await;
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_signed_in_user_links_a_directory_account_from_the_profile() {
    let (p, smtp) = mailing_platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Link Corp",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    // A personal address, never verified: linking by email is impossible, linking by
    // intent is what this route is for.
    let ada = p.auth.register("ada.home@example.com").await;
    let ada_id = ada["user"]["id"].as_str().expect("id").to_owned();
    let (access, _) = p.auth.login("ada.home@example.com").await;
    let start = |bearer: &str| {
        p.auth
            .client
            .post(format!(
                "{}/api/users/me/sso-identities/link/{tenant}",
                p.sso
            ))
            .bearer_auth(bearer)
            .json(&json!({"login_hint": "linker@corp.com"}))
            .send()
    };
    let response = p
        .auth
        .client
        .post(format!(
            "{}/api/users/me/sso-identities/link/{tenant}",
            p.sso
        ))
        .send()
        .await
        .expect("link");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Only a tenant she belongs to (as for every tenant route, 404 otherwise).
    let response = start(&access).await.expect("link");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        404,
        "not_found",
    );
    let response = p
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/users", p.tenant))
        .bearer_auth(&p.admin)
        .json(&json!({"user_id": ada_id, "role": "user"}))
        .send()
        .await
        .expect("add");
    assert_eq!(response.status(), StatusCode::CREATED);
    // A JSON body only.
    let response = p
        .auth
        .client
        .post(format!(
            "{}/api/users/me/sso-identities/link/{tenant}",
            p.sso
        ))
        .bearer_auth(&access)
        .header("content-type", "text/plain")
        .body(r#"{"login_hint":"linker@corp.com"}"#)
        .send()
        .await
        .expect("link");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Started in one browser, finished in another (login CSRF): refused, nothing linked.
    let response = start(&access).await.expect("link");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let url = body["data"]["authorization_url"]
        .as_str()
        .expect("url")
        .to_owned();
    let (response, _) = Browser::default().go(&url, None).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_error(status, &body, 400, "invalid_state");
    assert_eq!(p.identities_of(&ada_id).await, 0);

    // Started by a session that has ended by the callback: nothing linked.
    let (other, _) = p.auth.login("ada.home@example.com").await;
    let started = start(&other).await.expect("link");
    assert_eq!(started.status(), StatusCode::OK);
    let (status, _) = p
        .auth
        .post("/api/auth/logout", json!({}), Some(&other))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = finish_link(&p, started).await;
    assert_error(status, &body, 400, "invalid_state");
    assert_eq!(p.identities_of(&ada_id).await, 0);

    // From the browser that started it: the directory identity is Ada's.
    let response = start(&access).await.expect("link");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let (status, body) = finish_link(&p, response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user"]["id"], ada_id.as_str());
    assert_eq!(p.identities_of(&ada_id).await, 1);
    // Its tokens are an SSO session of that tenant.
    let sso_access = body["access_token"].as_str().expect("access");
    let (status, sessions) = p.auth.get("/api/users/me/sessions", Some(sso_access)).await;
    assert_eq!(status, StatusCode::OK, "{sessions}");
    let current: Vec<&Value> = sessions["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "{sessions}");
    assert_eq!(current[0]["auth_method"], "sso");
    assert_eq!(current[0]["sso_tenant_id"], tenant.as_str());
    // She is told, in case it was not her.
    let mail = crate::account::wait_mails(
        &smtp,
        "ada.home@example.com",
        "A directory account was linked to your account",
        1,
    )
    .await;
    assert!(
        mail[0].text().contains("linker@corp.com") && mail[0].text().contains("Link Corp"),
        "{}",
        mail[0].text()
    );

    // The same directory account cannot be linked to someone else too.
    let bob = p.auth.register("bob.home@example.com").await;
    let response = p
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/users", p.tenant))
        .bearer_auth(&p.admin)
        .json(&json!({"user_id": bob["user"]["id"], "role": "user"}))
        .send()
        .await
        .expect("add");
    assert_eq!(response.status(), StatusCode::CREATED);
    let (bob, _) = p.auth.login("bob.home@example.com").await;
    let response = start(&bob).await.expect("link");
    let (status, body) = finish_link(&p, response).await;
    assert_error(status, &body, 409, "conflict");

    // A session signed in long ago (a stolen, refreshed token) cannot link: sign in again.
    let (old, old_refresh) = p.auth.login("bob.home@example.com").await;
    let mut conn = p.db().await;
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&old)
        .expect("claims")
        .claims;
    diesel::sql_query(
        "UPDATE user_sessions SET created_at = now() - interval '20 minutes' WHERE id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(claims["fam"].as_str().expect("fam"))
    .execute(&mut conn)
    .await
    .expect("age the session");
    let (status, body) = p
        .auth
        .post("/api/auth/refresh", json!({}), Some(&old_refresh))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refreshed = body["access_token"].as_str().expect("access").to_owned();
    let response = start(&refreshed).await.expect("link");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        403,
        "reauthentication_required",
    );
}

#[tokio::test]
async fn an_sso_only_tenant_admits_only_tokens_of_its_own_sso_login() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Strict Corp",
            CORP,
            json!({}),
            provisioning(
                &["corp.com"],
                json!({"group_role_mapping": {"g-admins": "admin"}}),
            ),
        )
        .await;
    // A member with a password, added while the tenant still took passwords.
    p.auth.register("pw@example.com").await;
    let (pw, _) = p.auth.login("pw@example.com").await;
    let (_, me) = p.auth.get("/api/users/me", Some(&pw)).await;
    let response = p
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/users", p.tenant))
        .bearer_auth(&p.admin)
        .json(&json!({"user_id": me["data"]["id"], "role": "user"}))
        .send()
        .await
        .expect("add");
    assert_eq!(response.status(), StatusCode::CREATED);
    // SSO only is switched on by an admin signed in through it (proving it works), not
    // with a password session.
    let enable = |token: String| {
        let url = format!("{}/api/tenants/{tenant}/sso/config/enable", p.sso);
        let client = p.auth.client.clone();
        async move {
            let response = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"auth_method": "sso"}))
                .send()
                .await
                .expect("enable");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = enable(p.admin.clone()).await;
    assert_error(status, &body, 403, "sso_sign_in_required");
    let (status, body) = p.sign_in(&tenant, "root@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let root = body["access_token"].as_str().expect("access").to_owned();
    let (status, body) = enable(root.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Its directory and app registration stay as they are while it is SSO only.
    let (status, body) = p
        .call(
            reqwest::Method::PUT,
            &format!("/api/tenants/{tenant}/sso/config"),
            &root,
            Some(json!({"client_id": "web-client"})),
        )
        .await;
    assert_error(status, &body, 409, "conflict");

    let (status, body) = p.sign_in(&tenant, "alice@corp.com").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sso_token = body["access_token"].as_str().expect("access").to_owned();
    let read = |token: String| {
        let url = format!("{}/api/tenants/{tenant}", p.tenant);
        let client = p.auth.client.clone();
        async move {
            let response = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = read(sso_token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Password tokens: refused by the tenant service and by the sso service alike.
    let (status, body) = read(pw.clone()).await;
    assert_error(status, &body, 403, "sso_required");
    let (status, body) = read(p.admin.clone()).await;
    assert_error(status, &body, 403, "sso_required");
    let (status, body) = p
        .call(
            reqwest::Method::GET,
            &format!("/api/tenants/{tenant}/sso/config"),
            &p.admin,
            None,
        )
        .await;
    assert_error(status, &body, 403, "sso_required");
    // A non-member still cannot tell the tenant exists.
    p.auth.register("stranger@example.com").await;
    let (stranger, _) = p.auth.login("stranger@example.com").await;
    let (status, _) = read(stranger).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A platform administrator is let in with a password session, and it is audited.
    let response = p
        .auth
        .client
        .post(format!(
            "{}/internal/v1/users/platform-admin",
            testkit::internal_url(&p.auth.base)
        ))
        .bearer_auth(testkit::INTERNAL_TOKEN)
        .json(&json!({"email": "admin@platform.test"}))
        .send()
        .await
        .expect("platform admin");
    assert_eq!(response.status(), StatusCode::OK);
    let (admin, _) = p.auth.login("admin@platform.test").await;
    let (status, body) = read(admin.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = p
        .call(
            reqwest::Method::GET,
            &format!("/api/tenants/{tenant}/sso/config"),
            &admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut conn = p.db().await;
    #[derive(QueryableByName)]
    struct Payload {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        payload: Value,
    }
    let audited: Vec<Payload> = diesel::sql_query(
        "SELECT payload FROM outbox WHERE payload->'data'->>'action' = 'tenant.sso_bypassed'",
    )
    .load(&mut conn)
    .await
    .expect("outbox");
    // Once by the tenant service, once by the sso service (once per session and
    // tenant in each replica).
    assert_eq!(
        audited.len(),
        2,
        "{:?}",
        audited.iter().map(|a| &a.payload).collect::<Vec<_>>()
    );
    for entry in &audited {
        assert_eq!(entry.payload["tenant_id"], tenant.as_str());
        assert_eq!(entry.payload["actor_id"], entry.payload["data"]["user_id"]);
    }
    let (status, _) = read(admin).await;
    assert_eq!(status, StatusCode::OK);
    let again: Vec<Payload> = diesel::sql_query(
        "SELECT payload FROM outbox WHERE payload->'data'->>'action' = 'tenant.sso_bypassed'",
    )
    .load(&mut conn)
    .await
    .expect("outbox");
    assert_eq!(again.len(), 2, "not audited again for the same session");
}

#[tokio::test]
async fn starting_sso_logins_is_throttled_per_client_address() {
    let ctx = TestContext::new().await;
    let (direct, tenant_base) = start_with(&ctx, &[], &[]);
    let (sso_listener, sso_base) = testkit::free_listeners();
    testkit::start_service_on::<sso::Service>(
        &ctx,
        &[
            ("TENANT_SERVICE_URL", tenant_base.as_str()),
            ("AUTH_SERVICE_URL", direct.base.as_str()),
            ("SECRETS_KEYRING", KEYRING),
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("SSO_LOGIN_RATE_LIMIT_PER_IP", "3/1h"),
        ],
        sso_listener,
    );
    let gateway = testkit::TestGateway::start(
        testkit::Upstreams {
            auth: &direct.base,
            tenant: &tenant_base,
            document: "http://127.0.0.1:9",
            sso: &sso_base,
            event_worker: "http://127.0.0.1:9",
        },
        "1m",
    )
    .await
    .expect("gateway");
    let from = |ip: &str| {
        Client::builder()
            .local_address(ip.parse::<std::net::IpAddr>().expect("ip"))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    };
    // No such tenant: 404, counted all the same (nothing is stored for it).
    let login = format!(
        "{}/api/auth/sso/azure/login/{}",
        gateway.base,
        uuid::Uuid::new_v4()
    );
    let first = from("127.0.0.2");
    for _ in 0..3 {
        let response = first.get(&login).send().await.expect("login");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let response = first.get(&login).send().await.expect("login");
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        429,
        "rate_limited",
    );
    assert!(retry.is_some_and(|r| (1..=3600).contains(&r)), "{retry:?}");
    let response = from("127.0.0.3").get(&login).send().await.expect("login");
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "another address");
}

#[tokio::test]
async fn the_tenant_row_follows_a_change_of_directory() {
    let p = platform(&[]).await;
    let tenant = p
        .sso_tenant(
            "Moving Corp",
            CORP,
            json!({}),
            provisioning(&["corp.com"], json!({})),
        )
        .await;
    assert_eq!(tenant_directory(&p, &tenant).await.as_deref(), Some(CORP));
    let (status, body) = p
        .call(
            reqwest::Method::PUT,
            &format!("/api/tenants/{tenant}/sso/config"),
            &p.admin,
            Some(json!({"provider_tenant_id": QUIRKY})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(tenant_directory(&p, &tenant).await.as_deref(), Some(QUIRKY));
}

/// The directory the tenant's row mirrors.
async fn tenant_directory(p: &Platform, tenant: &str) -> Option<String> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        sso_directory_id: Option<String>,
    }
    let mut conn = p.db().await;
    diesel::sql_query("SELECT sso_directory_id FROM tenants WHERE id = $1::uuid")
        .bind::<diesel::sql_types::Text, _>(tenant)
        .get_result::<Row>(&mut conn)
        .await
        .expect("tenant")
        .sso_directory_id
}
