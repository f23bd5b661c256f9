//! The account lifecycle through the gateway, with the event-worker mailing to an SMTP
//! sink: verified emails, resend without enumeration, password reset and change,
//! sessions (list, revoke one, sign out everywhere), deactivation by a platform
//! administrator, `REQUIRE_VERIFIED_EMAIL`, and each throttle (429 with
//! `Retry-After`, another client address unaffected: clients bind 127.0.0.x source
//! addresses, the gateway appends them to `X-Forwarded-For`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use testkit::{Mail, TestContext, TestGateway, TestSmtp, Upstreams, INTERNAL_TOKEN};

use crate::auth::{assert_error, start_with, Auth};

const PASSWORD: &str = "correct horse 1";
const NEW_PASSWORD: &str = "battery staple 2";
const APP: &str = "http://app.example.test";

/// auth, tenant and an event-worker mailing to `smtp`, behind the gateway.
struct Lifecycle {
    ctx: TestContext,
    /// auth, reached directly (internal routes).
    direct: Auth,
    smtp: TestSmtp,
    gw: String,
    _gateway: TestGateway,
}

async fn lifecycle(auth_extra: &[(&str, &str)]) -> Lifecycle {
    let ctx = TestContext::new().await;
    let kafka = crate::events::kafka().await;
    let smtp = TestSmtp::start().await.expect("SMTP sink");
    let mut auth_env = vec![
        ("KAFKA_BROKERS", kafka.brokers()),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("PUBLIC_APP_URL", APP),
    ];
    auth_env.extend_from_slice(auth_extra);
    let (direct, tenant) = start_with(
        &ctx,
        &auth_env,
        &[
            ("KAFKA_BROKERS", kafka.brokers()),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let worker = testkit::start_service::<event_worker::Service>(
        &ctx,
        &[
            ("KAFKA_BROKERS", kafka.brokers()),
            ("TENANT_SERVICE_URL", tenant.as_str()),
            ("AUTH_SERVICE_URL", direct.base.as_str()),
            ("SMTP_URL", smtp.url.as_str()),
        ],
    );
    let gateway = TestGateway::start(
        Upstreams {
            auth: &direct.base,
            tenant: &tenant,
            // Not used here.
            document: &tenant,
            sso: &tenant,
            event_worker: &worker,
        },
        "1m",
    )
    .await
    .expect("gateway");
    let gw = gateway.base.clone();
    Lifecycle {
        ctx,
        direct,
        smtp,
        gw,
        _gateway: gateway,
    }
}

/// A client whose connections come from `ip` (a loopback address: 127.0.0.x).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().expect("ip"))
        .user_agent(format!("lifecycle-test/{ip}"))
        .build()
        .expect("client")
}

async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let response = request.send().await.expect("send");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        headers,
    )
}

impl Lifecycle {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw)
    }

    async fn post(
        &self,
        client: &Client,
        path: &str,
        body: Value,
        bearer: Option<&str>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut request = client.post(self.url(path)).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        send(request).await
    }

    async fn get(&self, path: &str, bearer: &str) -> (StatusCode, Value) {
        let (status, body, _) = send(Client::new().get(self.url(path)).bearer_auth(bearer)).await;
        (status, body)
    }

    async fn delete(&self, path: &str, bearer: &str) -> (StatusCode, Value) {
        let (status, body, _) =
            send(Client::new().delete(self.url(path)).bearer_auth(bearer)).await;
        (status, body)
    }

    async fn register(&self, email: &str) -> Value {
        let (status, body, _) = self
            .post(
                &Client::new(),
                "/api/auth/register",
                json!({"first_name": "Ada", "last_name": "Lovelace", "email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Logs in from `client`: (access, refresh, the whole body).
    async fn login_from(&self, client: &Client, email: &str, password: &str) -> (String, String) {
        let (status, body, headers) = self
            .post(
                client,
                "/api/auth/login",
                json!({"email": email, "password": password}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        (
            body["access_token"].as_str().expect("access").to_owned(),
            body["refresh_token"].as_str().expect("refresh").to_owned(),
        )
    }

    async fn login(&self, email: &str) -> (String, String) {
        self.login_from(&Client::new(), email, PASSWORD).await
    }

    /// The status and body of a login attempt.
    async fn try_login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        let (status, body, _) = self
            .post(
                &Client::new(),
                "/api/auth/login",
                json!({"email": email, "password": password}),
                None,
            )
            .await;
        (status, body)
    }

    async fn refresh(&self, refresh: &str) -> (StatusCode, Value) {
        let (status, body, _) = self
            .post(
                &Client::new(),
                "/api/auth/refresh",
                json!({}),
                Some(refresh),
            )
            .await;
        (status, body)
    }

    /// The first mail to `to` with `subject`, waiting for it (30 s at most).
    async fn mail(&self, to: &str, subject: &str) -> Mail {
        self.mails(to, subject, 1).await.remove(0)
    }

    /// At least `count` mails to `to` with `subject`, waiting for them.
    async fn mails(&self, to: &str, subject: &str, count: usize) -> Vec<Mail> {
        wait_mails(&self.smtp, to, subject, count).await
    }

    async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.ctx.main_url)
            .await
            .expect("main database")
    }

    /// The audit log's actions about `user`, waiting until `expected` is among them.
    async fn audited(&self, user: &str, expected: &str) -> Vec<String> {
        use main_db::schema::audit_logs;
        let mut conn = self.db().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let actions: Vec<(String, Value)> = audit_logs::table
                .filter(audit_logs::resource_id.eq(user))
                .select((audit_logs::action, audit_logs::details))
                .load(&mut conn)
                .await
                .expect("audit log");
            if actions.iter().any(|(a, _)| a == expected) {
                for (_, details) in &actions {
                    assert!(details.get("link").is_none(), "{details}");
                }
                return actions.into_iter().map(|(a, _)| a).collect();
            }
            assert!(
                Instant::now() < deadline,
                "{expected} not audited: {actions:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes `email`'s account a platform administrator (as `tenant init` does).
    async fn make_admin(&self, email: &str) {
        let response = Client::new()
            .post(format!(
                "{}/internal/v1/users/platform-admin",
                testkit::internal_url(&self.direct.base)
            ))
            .bearer_auth(INTERNAL_TOKEN)
            .json(&json!({"email": email}))
            .send()
            .await
            .expect("platform admin");
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// At least `count` mails to `to` with `subject` in `smtp`, waiting for them (30 s at
/// most), oldest first.
pub(crate) async fn wait_mails(
    smtp: &TestSmtp,
    to: &str,
    subject: &str,
    count: usize,
) -> Vec<Mail> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<Mail> = smtp
            .mails()
            .into_iter()
            .filter(|m| m.to == [to] && m.header("Subject").as_deref() == Some(subject))
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no {count} mail(s) {subject:?} to {to}: {:?}",
            smtp.mails()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The token of the link in a mail: the link's text and HTML forms agree, and it opens
/// the front end's page `path`.
fn token_in(mail: &Mail, path: &str) -> String {
    link_token(mail, APP, path)
}

/// The token of the link to `{app}/{path}#token=…` in a mail (text and HTML agree).
pub(crate) fn link_token(mail: &Mail, app: &str, path: &str) -> String {
    let text = mail.text();
    let prefix = format!("{app}/{path}#token=");
    let at = text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {text}"));
    let token: String = text[at + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "{text}");
    let html = mail.part("text/html").expect("an HTML part");
    assert!(
        html.contains(&format!("href=\"{prefix}{token}\"")),
        "{html}"
    );
    token
}

fn user_id(body: &Value) -> String {
    body["user"]["id"].as_str().expect("id").to_owned()
}

/// Ages the user's unused email tokens of `purpose` past their expiry.
async fn expire_tokens(conn: &mut AsyncPgConnection, user: &str, purpose: &str) {
    diesel::sql_query(
        "UPDATE user_email_tokens SET created_at = now() - interval '2 days', \
         expires_at = now() - interval '1 second' \
         WHERE user_id = $1::uuid AND purpose = $2 AND used_at IS NULL",
    )
    .bind::<diesel::sql_types::Text, _>(user)
    .bind::<diesel::sql_types::Text, _>(purpose)
    .execute(conn)
    .await
    .expect("expire");
}

#[tokio::test]
async fn a_verification_link_verifies_once_and_expires() {
    let p = lifecycle(&[]).await;
    let ada = p.register("ada@example.com").await;
    assert_eq!(ada["user"]["email_verified"], false, "{ada}");
    let (access, _) = p.login("ada@example.com").await;
    let (_, me) = p.get("/api/users/me", &access).await;
    assert_eq!(me["data"]["email_verified"], false);

    let mail = p.mail("ada@example.com", "Verify your email address").await;
    assert!(
        mail.text().contains("expires in 24 hours"),
        "{}",
        mail.text()
    );
    let token = token_in(&mail, "verify-email");
    let client = Client::new();

    // A forged token, and a malformed body.
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/verify-email",
            json!({"token": "A".repeat(43)}),
            None,
        )
        .await;
    assert_error(status, &body, 400, "invalid_token");
    let (status, body, _) = p
        .post(&client, "/api/auth/verify-email", json!({}), None)
        .await;
    assert_error(status, &body, 400, "validation_error");
    assert!(body["details"]["token"].is_array(), "{body}");

    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/verify-email",
            json!({"token": token}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["email_verified"], true, "{body}");
    assert_eq!(body["data"]["email"], "ada@example.com");
    let (_, me) = p.get("/api/users/me", &access).await;
    assert_eq!(me["data"]["email_verified"], true);

    // Used once: the same link again is refused.
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/verify-email",
            json!({"token": token}),
            None,
        )
        .await;
    assert_error(status, &body, 400, "invalid_token");
    let actions = p.audited(&user_id(&ada), "user.email_verified").await;
    assert!(
        actions.contains(&"user.verification_requested".to_owned()),
        "{actions:?}"
    );

    // An expired link: 410, and the address stays unverified.
    let bob = p.register("bob@example.com").await;
    let mail = p.mail("bob@example.com", "Verify your email address").await;
    let token = token_in(&mail, "verify-email");
    let mut conn = p.db().await;
    expire_tokens(&mut conn, &user_id(&bob), "verify_email").await;
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/verify-email",
            json!({"token": token}),
            None,
        )
        .await;
    assert_error(status, &body, 410, "token_expired");
    let (access, _) = p.login("bob@example.com").await;
    let (_, me) = p.get("/api/users/me", &access).await;
    assert_eq!(me["data"]["email_verified"], false);
}

#[tokio::test]
async fn asking_for_links_answers_the_same_for_every_address() {
    let p = lifecycle(&[]).await;
    let pending = p.register("pending@example.com").await;
    let done = p.register("done@example.com").await;
    let mail = p
        .mail("done@example.com", "Verify your email address")
        .await;
    let client = Client::new();
    let (status, _, _) = p
        .post(
            &client,
            "/api/auth/verify-email",
            json!({"token": token_in(&mail, "verify-email")}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut answers = Vec::new();
    for email in [
        "nobody@example.com",
        "done@example.com",
        "pending@example.com",
    ] {
        let (status, body, _) = p
            .post(
                &client,
                "/api/auth/resend-verification",
                json!({"email": email}),
                None,
            )
            .await;
        answers.push((status, body));
    }
    assert_eq!(answers[0].0, StatusCode::ACCEPTED, "{:?}", answers[0]);
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    let mut forgot = Vec::new();
    for email in ["nobody@example.com", "pending@example.com"] {
        let (status, body, _) = p
            .post(
                &client,
                "/api/auth/password/forgot",
                json!({"email": email}),
                None,
            )
            .await;
        forgot.push((status, body));
    }
    assert_eq!(forgot[0].0, StatusCode::ACCEPTED, "{:?}", forgot[0]);
    assert_eq!(forgot[0], forgot[1]);

    // Only the account that still needs verifying gets a new link (two in all now).
    let links = p
        .mails("pending@example.com", "Verify your email address", 2)
        .await;
    assert_ne!(
        token_in(&links[0], "verify-email"),
        token_in(&links[1], "verify-email")
    );
    p.mail("pending@example.com", "Reset your password").await;
    let mut conn = p.db().await;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let tokens: Count =
        diesel::sql_query("SELECT count(*) AS n FROM user_email_tokens WHERE user_id = $1::uuid")
            .bind::<diesel::sql_types::Text, _>(user_id(&done))
            .get_result(&mut conn)
            .await
            .expect("count");
    assert_eq!(tokens.n, 1, "no new link for a verified address");
    assert!(
        p.smtp
            .mails()
            .iter()
            .all(|m| m.to != ["nobody@example.com"]),
        "{:?}",
        p.smtp.mails()
    );
    let _ = pending;
    // A body that is not an address is still a clear 400.
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/resend-verification",
            json!({"mail": "x"}),
            None,
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
}

#[tokio::test]
async fn a_password_reset_ends_every_session_at_once() {
    let p = lifecycle(&[]).await;
    let ada = p.register("reset@example.com").await;
    let (first_access, first_refresh) = p.login("reset@example.com").await;
    let (second_access, _) = p.login("reset@example.com").await;
    let client = Client::new();
    let (status, _, _) = p
        .post(
            &client,
            "/api/auth/password/forgot",
            json!({"email": "Reset@Example.com"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mail = p.mail("reset@example.com", "Reset your password").await;
    assert!(
        mail.text().contains("expires in 30 minutes"),
        "{}",
        mail.text()
    );
    let token = token_in(&mail, "reset-password");

    // The policy of registration applies; a weak password spends nothing.
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/password/reset",
            json!({"token": token, "new_password": "short"}),
            None,
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
    assert!(body["details"]["new_password"].is_array(), "{body}");
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/password/reset",
            json!({"token": token, "new_password": NEW_PASSWORD}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["email_verified"], true,
        "the mailbox was proven: {body}"
    );
    let reset_at = Instant::now();

    // Within a second, on auth and on another service, every old token is refused.
    for access in [&first_access, &second_access] {
        let (status, body) = p.get("/api/users/me", access).await;
        assert_error(status, &body, 401, "token_revoked");
        let (status, body) = p.get("/api/tenants", access).await;
        assert_error(status, &body, 401, "token_revoked");
    }
    assert!(reset_at.elapsed() < Duration::from_secs(1));
    let (status, body) = p.refresh(&first_refresh).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.try_login("reset@example.com", PASSWORD).await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (access, _) = p
        .login_from(&client, "reset@example.com", NEW_PASSWORD)
        .await;
    let (status, _) = p.get("/api/users/me", &access).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a session opened after the reset works"
    );

    // The link worked once.
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/password/reset",
            json!({"token": token, "new_password": "another one 3"}),
            None,
        )
        .await;
    assert_error(status, &body, 400, "invalid_token");
    p.mail("reset@example.com", "Your password was changed")
        .await;
    let actions = p.audited(&user_id(&ada), "user.password_reset").await;
    assert!(
        actions.contains(&"user.email_verified".to_owned()),
        "{actions:?}"
    );

    // An expired reset link: 410, and the password stays.
    p.post(
        &client,
        "/api/auth/password/forgot",
        json!({"email": "reset@example.com"}),
        None,
    )
    .await;
    let mails = p.mails("reset@example.com", "Reset your password", 2).await;
    let late = token_in(&mails[1], "reset-password");
    let mut conn = p.db().await;
    expire_tokens(&mut conn, &user_id(&ada), "reset_password").await;
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/password/reset",
            json!({"token": late, "new_password": "another one 3"}),
            None,
        )
        .await;
    assert_error(status, &body, 410, "token_expired");
    p.login_from(&client, "reset@example.com", NEW_PASSWORD)
        .await;
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions() {
    let p = lifecycle(&[]).await;
    let ada = p.register("change@example.com").await;
    let (current, current_refresh) = p.login("change@example.com").await;
    let (other, other_refresh) = p.login("change@example.com").await;
    let client = Client::new();
    // A reset link asked for before the change must not set the password afterwards.
    p.post(
        &client,
        "/api/auth/password/forgot",
        json!({"email": "change@example.com"}),
        None,
    )
    .await;
    let early = token_in(
        &p.mail("change@example.com", "Reset your password").await,
        "reset-password",
    );
    let (status, body, _) = p
        .post(
            &client,
            "/api/users/me/password",
            json!({"current_password": "wrong one 9", "new_password": NEW_PASSWORD}),
            Some(&current),
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
    assert!(body["details"]["current_password"].is_array(), "{body}");
    let (status, body, _) = p
        .post(
            &client,
            "/api/users/me/password",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
            None,
        )
        .await;
    assert_error(status, &body, 401, "unauthorized");

    let (status, body, _) = p
        .post(
            &client,
            "/api/users/me/password",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
            Some(&current),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = p.get("/api/users/me", &other).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.refresh(&other_refresh).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, _) = p.get("/api/users/me", &current).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session that changed it goes on"
    );
    let (status, body) = p.refresh(&current_refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = p.try_login("change@example.com", PASSWORD).await;
    assert_error(status, &body, 401, "invalid_credentials");
    p.login_from(&client, "change@example.com", NEW_PASSWORD)
        .await;
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/password/reset",
            json!({"token": early, "new_password": "another one 3"}),
            None,
        )
        .await;
    assert_error(status, &body, 400, "invalid_token");
    let mail = p
        .mail("change@example.com", "Your password was changed")
        .await;
    assert!(mail.text().contains("1 other"), "{}", mail.text());
    p.audited(&user_id(&ada), "user.password_changed").await;
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_one_or_all() {
    let p = lifecycle(&[]).await;
    let ada = p.register("sessions@example.com").await;
    let (a, _) = p
        .login_from(&client_from("127.0.0.2"), "sessions@example.com", PASSWORD)
        .await;
    let (b, b_refresh) = p
        .login_from(&client_from("127.0.0.3"), "sessions@example.com", PASSWORD)
        .await;
    let (c, _) = p
        .login_from(&client_from("127.0.0.4"), "sessions@example.com", PASSWORD)
        .await;

    let (status, body) = p.get("/api/users/me/sessions", &a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sessions = body["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .clone();
    assert_eq!(sessions.len(), 3, "{body}");
    let of = |ip: &str| {
        sessions
            .iter()
            .find(|s| s["client_address"] == ip)
            .unwrap_or_else(|| panic!("no session from {ip}: {sessions:?}"))
            .clone()
    };
    let (sa, sb) = (of("127.0.0.2"), of("127.0.0.3"));
    assert_eq!(sa["current"], true);
    assert_eq!(sb["current"], false);
    assert_eq!(sa["user_agent"], "lifecycle-test/127.0.0.2");
    assert_eq!(sa["auth_method"], "pwd");
    for field in ["created_at", "last_used_at"] {
        assert!(
            sa[field].as_str().is_some_and(|t| t.ends_with("+00:00")),
            "{sa}"
        );
    }

    // Revoking B ends its tokens at once; the others go on.
    let b_id = sb["id"].as_str().expect("id");
    let (status, body) = p
        .delete(&format!("/api/users/me/sessions/{b_id}"), &a)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = p.get("/api/users/me", &b).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.get("/api/tenants", &b).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.refresh(&b_refresh).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.get("/api/users/me/sessions", &c).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["sessions"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    // Again, unknown, someone else's: 404.
    let (status, body) = p
        .delete(&format!("/api/users/me/sessions/{b_id}"), &a)
        .await;
    assert_error(status, &body, 404, "not_found");
    p.register("mallory@example.com").await;
    let (mallory, _) = p.login("mallory@example.com").await;
    let a_id = sa["id"].as_str().expect("id");
    let (status, body) = p
        .delete(&format!("/api/users/me/sessions/{a_id}"), &mallory)
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, _) = p.get("/api/users/me", &a).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = p.delete("/api/users/me/sessions/not-a-uuid", &a).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Sign out everywhere: the caller's session too.
    let (status, body) = p.delete("/api/users/me/sessions", &c).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["sessions_revoked"], 2, "{body}");
    for token in [&a, &c] {
        let (status, body) = p.get("/api/users/me", token).await;
        assert_error(status, &body, 401, "token_revoked");
    }
    let (access, _) = p.login("sessions@example.com").await;
    let (status, body) = p.get("/api/users/me/sessions", &access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["data"]["sessions"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    p.audited(&user_id(&ada), "user.sessions_revoked").await;
}

#[tokio::test]
async fn deactivation_by_a_platform_admin_ends_access_at_once() {
    let p = lifecycle(&[]).await;
    p.register("root@example.com").await;
    p.make_admin("root@example.com").await;
    let (root, _) = p.login("root@example.com").await;
    let eve = p.register("eve@example.com").await;
    let eve_id = user_id(&eve);
    let (eve_access, eve_refresh) = p.login("eve@example.com").await;
    let client = Client::new();

    // Not a platform administrator: 403; no token: 401; unknown user: 404.
    let path = format!("/api/admin/users/{eve_id}/deactivate");
    let (status, body, _) = p.post(&client, &path, json!({}), Some(&eve_access)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body, _) = p.post(&client, &path, json!({}), None).await;
    assert_error(status, &body, 401, "unauthorized");
    let (status, body, _) = p
        .post(
            &client,
            &format!("/api/admin/users/{}/deactivate", uuid::Uuid::new_v4()),
            json!({}),
            Some(&root),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (_, me) = p.get("/api/users/me", &root).await;
    let root_id = me["data"]["id"].as_str().expect("id");
    let (status, body, _) = p
        .post(
            &client,
            &format!("/api/admin/users/{root_id}/deactivate"),
            json!({}),
            Some(&root),
        )
        .await;
    assert_error(status, &body, 400, "bad_request");

    let (status, body, _) = p.post(&client, &path, json!({}), Some(&root)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["is_active"], false);
    let (status, body) = p.get("/api/users/me", &eve_access).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.get("/api/tenants", &eve_access).await;
    assert_error(status, &body, 401, "token_revoked");
    let (status, body) = p.refresh(&eve_refresh).await;
    assert_error(status, &body, 401, "account_disabled");
    let (status, body) = p.try_login("eve@example.com", PASSWORD).await;
    assert_error(status, &body, 403, "account_inactive");
    p.mail("eve@example.com", "Your account was deactivated")
        .await;
    // The verification link of her registration does nothing for a deactivated account.
    let link = token_in(
        &p.mail("eve@example.com", "Verify your email address").await,
        "verify-email",
    );
    let (status, body, _) = p
        .post(
            &client,
            "/api/auth/verify-email",
            json!({"token": link}),
            None,
        )
        .await;
    assert_error(status, &body, 400, "invalid_token");

    // Reactivated: she signs in again (the old session stays ended).
    let (status, body, _) = p
        .post(
            &client,
            &format!("/api/admin/users/{eve_id}/reactivate"),
            json!({}),
            Some(&root),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = p.refresh(&eve_refresh).await;
    assert_error(status, &body, 401, "token_revoked");
    let (access, _) = p.login("eve@example.com").await;

    // An administrator signs her out everywhere; she is told.
    let (status, body) = p
        .delete(&format!("/api/admin/users/{eve_id}/sessions"), &root)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["sessions_revoked"], 1);
    let (status, body) = p.get("/api/users/me", &access).await;
    assert_error(status, &body, 401, "token_revoked");
    p.mail("eve@example.com", "You were signed out by an administrator")
        .await;
    let actions = p.audited(&eve_id, "user.reactivated").await;
    assert!(
        actions.contains(&"user.deactivated".to_owned()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn unverified_accounts_cannot_sign_in_when_verification_is_required() {
    let p = lifecycle(&[("REQUIRE_VERIFIED_EMAIL", "true")]).await;
    let body = p.register("strict@example.com").await;
    assert_eq!(body["message"], "User registered successfully");
    let (status, body) = p.try_login("strict@example.com", PASSWORD).await;
    assert_error(status, &body, 403, "email_not_verified");
    // A wrong password says nothing of the account's state.
    let (status, body) = p.try_login("strict@example.com", "wrong one 9").await;
    assert_error(status, &body, 401, "invalid_credentials");
    let mail = p
        .mail("strict@example.com", "Verify your email address")
        .await;
    let (status, _, _) = p
        .post(
            &Client::new(),
            "/api/auth/verify-email",
            json!({"token": token_in(&mail, "verify-email")}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    p.login("strict@example.com").await;
}

/// Sends `request(n)` from 127.0.0.2 until the limit: `allowed` answers that are not
/// 429, then a 429 with `Retry-After`; 127.0.0.3 is still answered.
async fn assert_throttled<F, Fut>(allowed: usize, request: F)
where
    F: Fn(Client, usize) -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value, reqwest::header::HeaderMap)>,
{
    let first = client_from("127.0.0.2");
    for n in 0..allowed {
        let (status, body, _) = request(first.clone(), n).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "attempt {n}: {body}");
    }
    let (status, body, headers) = request(first.clone(), allowed).await;
    assert_error(status, &body, 429, "rate_limited");
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=3600).contains(&retry), "{retry}");
    let (status, body, _) = request(client_from("127.0.0.3"), allowed + 1).await;
    assert_ne!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "another address: {body}"
    );
}

#[tokio::test]
async fn registration_is_throttled_per_client_address_and_per_email() {
    let p = lifecycle(&[
        ("REGISTER_RATE_LIMIT_PER_IP", "3/1h"),
        ("REGISTER_RATE_LIMIT_PER_EMAIL", "2/1h"),
    ])
    .await;
    assert_throttled(3, |client, n| {
        let p = &p;
        async move {
            p.post(&client, "/api/auth/register", json!({"first_name": "A", "last_name": "B", "email": format!("ip{n}@example.com"), "password": PASSWORD}), None).await
        }
    })
    .await;
    // Per email, whatever the address: the third try of one email is refused.
    for (n, ip) in ["127.0.0.5", "127.0.0.6"].into_iter().enumerate() {
        let (status, body, _) = p
            .post(&client_from(ip), "/api/auth/register", json!({"first_name": "A", "last_name": "B", "email": "same@example.com", "password": PASSWORD}), None)
            .await;
        assert_eq!(
            status,
            if n == 0 {
                StatusCode::CREATED
            } else {
                StatusCode::CONFLICT
            },
            "{body}"
        );
    }
    let (status, body, _) = p
        .post(&client_from("127.0.0.7"), "/api/auth/register", json!({"first_name": "A", "last_name": "B", "email": "Same@Example.com", "password": PASSWORD}), None)
        .await;
    assert_error(status, &body, 429, "rate_limited");
}

/// A link request (`path`, body `{email}`) allows 2 per client address, then 3 per
/// email whatever the address; both answer 429 past them.
async fn assert_link_requests_throttled(path: &str, per_ip: &str, per_email: &str) {
    let p = lifecycle(&[(per_ip, "2/1h"), (per_email, "3/1h")]).await;
    assert_throttled(2, |client, n| {
        let p = &p;
        async move {
            p.post(
                &client,
                path,
                json!({"email": format!("n{n}@example.com")}),
                None,
            )
            .await
        }
    })
    .await;
    for (n, ip) in ["127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"]
        .into_iter()
        .enumerate()
    {
        let (status, body, _) = p
            .post(
                &client_from(ip),
                path,
                json!({"email": "One@example.com"}),
                None,
            )
            .await;
        if n < 3 {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        } else {
            assert_error(status, &body, 429, "rate_limited");
        }
    }
}

#[tokio::test]
async fn resending_verification_is_throttled_per_client_address_and_per_email() {
    assert_link_requests_throttled(
        "/api/auth/resend-verification",
        "RESEND_VERIFICATION_RATE_LIMIT_PER_IP",
        "RESEND_VERIFICATION_RATE_LIMIT_PER_EMAIL",
    )
    .await;
}

#[tokio::test]
async fn asking_for_a_reset_is_throttled_per_client_address_and_per_email() {
    assert_link_requests_throttled(
        "/api/auth/password/forgot",
        "PASSWORD_FORGOT_RATE_LIMIT_PER_IP",
        "PASSWORD_FORGOT_RATE_LIMIT_PER_EMAIL",
    )
    .await;
}

#[tokio::test]
async fn resetting_a_password_is_throttled_per_client_address() {
    let p = lifecycle(&[("PASSWORD_RESET_RATE_LIMIT_PER_IP", "3/1h")]).await;
    assert_throttled(3, |client, n| {
        let p = &p;
        async move {
            p.post(
                &client,
                "/api/auth/password/reset",
                json!({"token": format!("guess-{n}"), "new_password": NEW_PASSWORD}),
                None,
            )
            .await
        }
    })
    .await;
}

#[tokio::test]
async fn verifying_emails_is_throttled_per_client_address() {
    let p = lifecycle(&[("VERIFY_EMAIL_RATE_LIMIT_PER_IP", "3/1h")]).await;
    assert_throttled(3, |client, n| {
        let p = &p;
        async move {
            p.post(
                &client,
                "/api/auth/verify-email",
                json!({"token": format!("guess-{n}")}),
                None,
            )
            .await
        }
    })
    .await;
}

#[tokio::test]
async fn changing_a_password_is_throttled_per_user() {
    let p = lifecycle(&[("PASSWORD_CHANGE_RATE_LIMIT_PER_USER", "2/1h")]).await;
    p.register("guessed@example.com").await;
    let (access, _) = p.login("guessed@example.com").await;
    for _ in 0..2 {
        let (status, body, _) = p
            .post(
                &Client::new(),
                "/api/users/me/password",
                json!({"current_password": "guess one 1", "new_password": NEW_PASSWORD}),
                Some(&access),
            )
            .await;
        assert_error(status, &body, 400, "validation_error");
    }
    // A stolen access token cannot go on guessing the password, from any address.
    let (status, body, headers) = p
        .post(
            &client_from("127.0.0.9"),
            "/api/users/me/password",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
            Some(&access),
        )
        .await;
    assert_error(status, &body, 429, "rate_limited");
    assert!(headers.get("retry-after").is_some());
    p.register("other@example.com").await;
    let (other, _) = p.login("other@example.com").await;
    let (status, body, _) = p
        .post(
            &Client::new(),
            "/api/users/me/password",
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
            Some(&other),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "another user: {body}");
}

#[tokio::test]
async fn failed_logins_lock_out_only_the_address_that_guessed() {
    let p = lifecycle(&[("LOGIN_RATE_LIMIT_PER_ACCOUNT", "3")]).await;
    p.register("target@example.com").await;
    let guesser = client_from("127.0.0.2");
    for _ in 0..3 {
        let (status, body, _) = p
            .post(
                &guesser,
                "/api/auth/login",
                json!({"email": "target@example.com", "password": "guess one 1"}),
                None,
            )
            .await;
        assert_error(status, &body, 401, "invalid_credentials");
    }
    let (status, body, headers) = p
        .post(
            &guesser,
            "/api/auth/login",
            json!({"email": " Target@Example.com", "password": PASSWORD}),
            None,
        )
        .await;
    assert_error(status, &body, 429, "rate_limited");
    assert!(headers.get("retry-after").is_some());
    // The owner, elsewhere, signs in.
    p.login_from(&client_from("127.0.0.3"), "target@example.com", PASSWORD)
        .await;
}

#[tokio::test]
async fn a_password_matches_whole_never_on_its_first_72_bytes() {
    let p = lifecycle(&[]).await;
    let password = format!("a1{}", "x".repeat(70));
    assert_eq!(password.len(), 72);
    let (status, body, _) = p
        .post(&Client::new(), "/api/auth/register", json!({"first_name": "L", "last_name": "P", "email": "long@example.com", "password": password}), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = p
        .try_login("long@example.com", &format!("{password}EXTRA"))
        .await;
    assert_error(status, &body, 401, "invalid_credentials");
    let (access, _) = p
        .login_from(&Client::new(), "long@example.com", &password)
        .await;
    // Nor as the current password of a change.
    let (status, body, _) = p
        .post(
            &Client::new(),
            "/api/users/me/password",
            json!({"current_password": format!("{password}ZZZZ"), "new_password": NEW_PASSWORD}),
            Some(&access),
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
    assert!(body["details"]["current_password"].is_array(), "{body}");
}
