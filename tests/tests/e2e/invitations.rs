//! Invitations by email through the gateway (issue 15), with the event-worker mailing
//! to an SMTP sink: an admin invites an address; the link in the email previews the
//! invitation to anyone (tenant, role, inviter, expiry: nothing else) and is accepted
//! once, by the account of the invited address, verified; re-inviting sends a new link
//! and kills the old one; revoked and expired links are refused; members cannot be
//! invited again; only admins invite; the audit log records every step.

use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use testkit::{Mail, TestContext, TestGateway, TestSmtp, Upstreams};

use crate::account::{link_token, wait_mails};
use crate::auth::{assert_error, start_with};

const PASSWORD: &str = "correct horse 1";
pub(crate) const APP: &str = "http://app.example.test";

/// auth, tenant and an event-worker mailing to an SMTP sink, behind the gateway.
struct Invites {
    ctx: TestContext,
    smtp: TestSmtp,
    gw: String,
    client: Client,
    gateway: TestGateway,
}

async fn platform(tenant_extra: &[(&str, &str)]) -> Invites {
    let ctx = TestContext::new().await;
    let kafka = crate::events::kafka().await;
    let smtp = TestSmtp::start().await.expect("SMTP sink");
    let mut tenant_env = vec![
        ("KAFKA_BROKERS", kafka.brokers()),
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("PUBLIC_APP_URL", APP),
    ];
    tenant_env.extend_from_slice(tenant_extra);
    let (auth, tenant) = start_with(
        &ctx,
        &[
            ("KAFKA_BROKERS", kafka.brokers()),
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("PUBLIC_APP_URL", APP),
        ],
        &tenant_env,
    );
    let worker = testkit::start_service::<event_worker::Service>(
        &ctx,
        &[
            ("KAFKA_BROKERS", kafka.brokers()),
            ("TENANT_SERVICE_URL", tenant.as_str()),
            ("AUTH_SERVICE_URL", auth.base.as_str()),
            ("SMTP_URL", smtp.url.as_str()),
        ],
    );
    let gateway = TestGateway::start(
        Upstreams {
            auth: &auth.base,
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
    Invites {
        ctx,
        smtp,
        gw: gateway.base.clone(),
        client: Client::new(),
        gateway,
    }
}

/// A signed-in user: id and access token.
struct User {
    id: String,
    token: String,
}

impl Invites {
    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("send");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.get(format!("{}{path}", self.gw));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}{path}", self.gw)).json(&body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn delete(&self, path: &str, bearer: &str) -> (StatusCode, Value) {
        self.send(
            self.client
                .delete(format!("{}{path}", self.gw))
                .bearer_auth(bearer),
        )
        .await
    }

    /// Registers `email` (unverified) and signs in.
    async fn user(&self, first_name: &str, last_name: &str, email: &str) -> User {
        let (status, body) = self
            .post(
                "/api/auth/register",
                json!({"first_name": first_name, "last_name": last_name, "email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["user"]["id"].as_str().expect("id").to_owned();
        let (status, body) = self
            .post(
                "/api/auth/login",
                json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        User {
            id,
            token: body["access_token"].as_str().expect("access").to_owned(),
        }
    }

    /// Verifies `email` with the link of its verification email.
    async fn verify(&self, email: &str) {
        let mail = wait_mails(&self.smtp, email, "Verify your email address", 1)
            .await
            .remove(0);
        let token = link_token(&mail, APP, "verify-email");
        let (status, body) = self
            .post("/api/auth/verify-email", json!({"token": token}), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A registered, verified, signed-in user.
    async fn verified(&self, first_name: &str, email: &str) -> User {
        let user = self.user(first_name, "Tester", email).await;
        self.verify(email).await;
        user
    }

    async fn tenant(&self, admin: &User, name: &str) -> String {
        let (status, body) = self
            .post("/api/tenants", json!({"name": name}), Some(&admin.token))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["id"].as_str().expect("id").to_owned()
    }

    async fn invite(
        &self,
        admin: &User,
        tenant: &str,
        email: &str,
        role: &str,
    ) -> (StatusCode, Value) {
        self.post(
            &format!("/api/tenants/{tenant}/invitations"),
            json!({"email": email, "role": role}),
            Some(&admin.token),
        )
        .await
    }

    /// At least `count` invitation emails to `to` for `tenant_name`, oldest first.
    async fn invitation_mails(&self, to: &str, tenant_name: &str, count: usize) -> Vec<Mail> {
        wait_mails(
            &self.smtp,
            to,
            &format!("You are invited to join {tenant_name}"),
            count,
        )
        .await
    }

    async fn preview(&self, token: &str) -> (StatusCode, Value) {
        self.get(&format!("/api/invitations/{token}"), None).await
    }

    async fn accept(&self, user: &User, token: &str) -> (StatusCode, Value) {
        self.post(
            "/api/invitations/accept",
            json!({"token": token}),
            Some(&user.token),
        )
        .await
    }

    async fn pending(&self, admin: &User, tenant: &str) -> Value {
        let (status, body) = self
            .get(
                &format!("/api/tenants/{tenant}/invitations"),
                Some(&admin.token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].clone()
    }

    async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.ctx.main_url)
            .await
            .expect("main database")
    }

    /// The tenant's audit log (as its admin), once it holds every action of `expected`.
    async fn audited(&self, admin: &User, tenant: &str, expected: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self
                .get(
                    &format!("/api/tenants/{tenant}/audit-logs?per_page=100"),
                    Some(&admin.token),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let entries = body["data"]["audit_logs"]
                .as_array()
                .expect("entries")
                .clone();
            let has = |action: &str| entries.iter().any(|e| e["type"] == action);
            if expected.iter().all(|a| has(a)) {
                return entries;
            }
            assert!(
                Instant::now() < deadline,
                "{expected:?} not all audited: {entries:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The token of the invitation link in a mail: `{APP}/invitations/accept?token=…`,
/// the same in the text and the HTML part.
pub(crate) fn invitation_token(mail: &Mail) -> String {
    let text = mail.text();
    let prefix = format!("{APP}/invitations/accept?token=");
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

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// How many rows of `table` hold `needle` anywhere in their text.
async fn rows_holding(conn: &mut AsyncPgConnection, table: &str, needle: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {table} t WHERE t::text LIKE '%' || $1 || '%'"
    ))
    .bind::<diesel::sql_types::Text, _>(needle)
    .get_result(conn)
    .await
    .expect("count");
    count.n
}

#[tokio::test]
async fn an_invitation_is_mailed_previewed_and_accepted_once_by_its_verified_address() {
    let p = platform(&[]).await;
    let admin = p.user("Grace", "Hopper", "grace@example.com").await;
    p.verify("grace@example.com").await;
    let tenant = p.tenant(&admin, "Acme Invites").await;

    let (status, body) = p
        .invite(&admin, &tenant, " Guest@Example.COM ", "user")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let invitation = &body["data"];
    assert_eq!(
        keys(invitation),
        [
            "created_at",
            "email",
            "expires_at",
            "id",
            "invited_by",
            "role",
            "tenant_id"
        ]
    );
    assert_eq!(invitation["email"], "guest@example.com");
    assert_eq!(invitation["role"], "user");
    assert_eq!(invitation["tenant_id"], tenant.as_str());
    assert_eq!(
        invitation["invited_by"],
        json!({"id": admin.id, "name": "Grace Hopper"})
    );
    let created =
        chrono::DateTime::parse_from_rfc3339(invitation["created_at"].as_str().expect("at"))
            .expect("time");
    let expires =
        chrono::DateTime::parse_from_rfc3339(invitation["expires_at"].as_str().expect("at"))
            .expect("time");
    assert!(
        (expires - created - chrono::Duration::days(7))
            .num_seconds()
            .abs()
            < 5,
        "{invitation}"
    );
    let invitation_id = invitation["id"].as_str().expect("id").to_owned();
    let pending = p.pending(&admin, &tenant).await;
    assert_eq!(pending["invitations"].as_array().map(Vec::len), Some(1));
    assert_eq!(pending["invitations"][0]["id"], invitation_id.as_str());
    assert_eq!(
        pending["invitations"][0]["invited_by"]["name"],
        "Grace Hopper"
    );
    assert_eq!(pending["pagination"]["total"], 1);

    let mail = p
        .invitation_mails("guest@example.com", "Acme Invites", 1)
        .await
        .remove(0);
    let text = mail.text();
    assert!(
        text.contains("Grace Hopper invites guest@example.com"),
        "{text}"
    );
    assert!(text.contains("with the role user"), "{text}");
    assert!(text.contains("expires in 7 days"), "{text}");
    let token = invitation_token(&mail);

    // The token was never in clear on its way: not in the outbox, the audit log or the
    // notification rows.
    let mut conn = p.db().await;
    for table in [
        "outbox",
        "audit_logs",
        "notifications",
        "tenant_invitations",
    ] {
        assert_eq!(rows_holding(&mut conn, table, &token).await, 0, "{table}");
    }

    // Anyone with the link sees what it invites to, and nothing private.
    let (status, body) = p.preview(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let preview = &body["data"];
    assert_eq!(
        keys(preview),
        ["expires_at", "invited_by_name", "role", "tenant_name"]
    );
    assert_eq!(preview["tenant_name"], "Acme Invites");
    assert_eq!(preview["role"], "user");
    assert_eq!(preview["invited_by_name"], "Grace Hopper");
    // The token is in the preview's path: the gateway's access log leaves it out.
    // nginx writes the line just after answering: wait for it.
    testkit::wait_until(Duration::from_secs(5), || async {
        p.gateway
            .access_log()
            .contains("GET /api/invitations/[token]")
    })
    .await
    .expect("the preview's line in the access log");
    let log = p.gateway.access_log();
    assert!(!log.contains(&token), "the access log holds the token");
    let whole = body.to_string();
    for private in [
        "guest@example.com",
        "grace@example.com",
        tenant.as_str(),
        admin.id.as_str(),
        invitation_id.as_str(),
    ] {
        assert!(!whole.contains(private), "{private} in {whole}");
    }
    let (status, body) = p.preview(&"A".repeat(43)).await;
    assert_error(status, &body, 404, "not_found");

    // Another account cannot take it, signed in or not.
    let mallory = p.verified("Mallory", "mallory@example.com").await;
    let (status, body) = p.accept(&mallory, &token).await;
    assert_error(status, &body, 403, "invitation_email_mismatch");
    assert!(!body.to_string().contains("guest@"), "{body}");
    let (status, body) = p
        .post("/api/invitations/accept", json!({"token": token}), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // The invited address's account, once verified.
    let guest = p.user("Guest", "User", "guest@example.com").await;
    let (status, body) = p.accept(&guest, &token).await;
    assert_error(status, &body, 403, "email_not_verified");
    p.verify("guest@example.com").await;
    let (status, body) = p.accept(&guest, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        keys(&body["data"]),
        ["joined_at", "role", "tenant_id", "user_id"]
    );
    assert_eq!(body["data"]["tenant_id"], tenant.as_str());
    assert_eq!(body["data"]["user_id"], guest.id.as_str());
    assert_eq!(body["data"]["role"], "user");
    let (status, body) = p
        .get(&format!("/api/tenants/{tenant}"), Some(&guest.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["role"], "user");

    // Used once.
    let (status, body) = p.accept(&guest, &token).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = p.preview(&token).await;
    assert_error(status, &body, 404, "not_found");
    let pending = p.pending(&admin, &tenant).await;
    assert_eq!(pending["pagination"]["total"], 0, "{pending}");

    // A member is not invited again (whatever the case of the address).
    let (status, body) = p
        .invite(&admin, &tenant, "GUEST@example.com", "viewer")
        .await;
    assert_error(status, &body, 409, "conflict");

    let entries = p
        .audited(
            &admin,
            &tenant,
            &[
                "invitation.created",
                "invitation.accepted",
                "membership.changed",
            ],
        )
        .await;
    for entry in &entries {
        assert!(entry["details"].get("link").is_none(), "{entry}");
    }
    let created = entries
        .iter()
        .find(|e| e["type"] == "invitation.created")
        .expect("created");
    assert_eq!(created["resource_type"], "invitation");
    assert_eq!(created["resource_id"], invitation_id.as_str());
    assert_eq!(created["actor_id"], admin.id.as_str());
    assert_eq!(created["details"]["email"], "guest@example.com");
    let accepted = entries
        .iter()
        .find(|e| e["type"] == "invitation.accepted")
        .expect("accepted");
    assert_eq!(accepted["actor_id"], guest.id.as_str());
    assert_eq!(accepted["details"]["user_id"], guest.id.as_str());
    let joined = entries
        .iter()
        .find(|e| {
            e["type"] == "membership.changed"
                && e["details"]["user_id"] == guest.id.as_str()
                && e["details"]["added_by"] == "invitation"
                && e["details"]["invitation_id"] == invitation_id.as_str()
        })
        .unwrap_or_else(|| panic!("{entries:?}"));
    // The new member was not mailed "you were added": they accepted. Once the
    // notification consumer has handled that event, nothing was queued for them.
    let event_id: uuid::Uuid = joined["event_id"]
        .as_str()
        .expect("event id")
        .parse()
        .expect("uuid");
    let mut conn = p.db().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        #[derive(diesel::QueryableByName)]
        struct Seen {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let seen: Seen = diesel::sql_query(
            "SELECT count(*) AS n FROM processed_events WHERE consumer = 'notifications' AND event_id = $1",
        )
        .bind::<diesel::sql_types::Uuid, _>(event_id)
        .get_result(&mut conn)
        .await
        .expect("processed");
        if seen.n == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the notifications consumer never handled it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued: Vec<String> = {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            subject: String,
        }
        diesel::sql_query("SELECT subject FROM notifications WHERE event_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(event_id)
            .load::<Row>(&mut conn)
            .await
            .expect("notifications")
            .into_iter()
            .map(|r| r.subject)
            .collect()
    };
    assert!(
        queued.iter().all(|s| !s.starts_with("You were added")),
        "{queued:?}"
    );
    assert!(
        p.smtp
            .mails()
            .iter()
            .all(|m| !(m.to == ["guest@example.com"]
                && m.header("Subject")
                    .is_some_and(|s| s.starts_with("You were added")))),
        "{:?}",
        p.smtp.mails()
    );
}

#[tokio::test]
async fn resent_revoked_and_expired_invitations_stop_their_links() {
    let p = platform(&[]).await;
    let admin = p.user("Grace", "Hopper", "grace@example.com").await;
    p.verify("grace@example.com").await;
    let tenant = p.tenant(&admin, "Resend Co").await;

    // Re-inviting a pending address sends a new link; the first stops working.
    let (status, first) = p.invite(&admin, &tenant, "ada@example.com", "user").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let old = invitation_token(
        &p.invitation_mails("ada@example.com", "Resend Co", 1)
            .await
            .remove(0),
    );
    let (status, again) = p.invite(&admin, &tenant, "ada@example.com", "viewer").await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["message"], "Invitation sent again");
    assert_eq!(
        again["data"]["id"], first["data"]["id"],
        "the same invitation"
    );
    assert_eq!(again["data"]["role"], "viewer");
    assert!(
        again["data"]["expires_at"].as_str() >= first["data"]["expires_at"].as_str(),
        "{first} {again}"
    );
    let mails = p.invitation_mails("ada@example.com", "Resend Co", 2).await;
    let new = invitation_token(&mails[1]);
    assert_ne!(new, old);
    let (status, body) = p.preview(&old).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = p.preview(&new).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["role"], "viewer");
    let pending = p.pending(&admin, &tenant).await;
    assert_eq!(pending["pagination"]["total"], 1, "{pending}");

    // Revoked: the link is refused; revoking twice, or through another tenant, is a 404.
    let id = first["data"]["id"].as_str().expect("id");
    let other_admin = p.user("Other", "Admin", "other@example.com").await;
    p.verify("other@example.com").await;
    let other = p.tenant(&other_admin, "Other Co").await;
    let (status, body) = p
        .delete(
            &format!("/api/tenants/{other}/invitations/{id}"),
            &other_admin.token,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = p
        .delete(
            &format!("/api/tenants/{tenant}/invitations/{id}"),
            &admin.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({"id": id, "tenant_id": tenant}));
    let (status, body) = p
        .delete(
            &format!("/api/tenants/{tenant}/invitations/{id}"),
            &admin.token,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let pending = p.pending(&admin, &tenant).await;
    assert_eq!(pending["pagination"]["total"], 0, "{pending}");
    let ada = p.verified("Ada", "ada@example.com").await;
    let (status, body) = p.accept(&ada, &new).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = p.preview(&new).await;
    assert_error(status, &body, 404, "not_found");

    // Expired: 410, for the preview and the acceptance.
    let (status, body) = p.invite(&admin, &tenant, "ada@example.com", "user").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(body["data"]["id"], first["data"]["id"], "a new invitation");
    let token = invitation_token(
        &p.invitation_mails("ada@example.com", "Resend Co", 3)
            .await
            .remove(2),
    );
    let mut conn = p.db().await;
    diesel::sql_query(
        "UPDATE tenant_invitations SET created_at = now() - interval '8 days', \
         expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(body["data"]["id"].as_str().expect("id"))
    .execute(&mut conn)
    .await
    .expect("expire");
    let (status, body) = p.preview(&token).await;
    assert_error(status, &body, 410, "token_expired");
    let (status, body) = p.accept(&ada, &token).await;
    assert_error(status, &body, 410, "token_expired");
    let pending = p.pending(&admin, &tenant).await;
    assert_eq!(
        pending["pagination"]["total"], 0,
        "expired ones are not listed"
    );
    let (status, body) = p
        .get(&format!("/api/tenants/{tenant}"), Some(&ada.token))
        .await;
    assert_error(status, &body, 404, "not_found");

    p.audited(
        &admin,
        &tenant,
        &["invitation.created", "invitation.revoked"],
    )
    .await;
}

#[tokio::test]
async fn only_admins_invite_and_inputs_and_limits_are_checked() {
    let p = platform(&[
        ("INVITATION_MAX_PENDING", "3"),
        ("INVITATION_RATE_LIMIT_PER_EMAIL", "2/1h"),
        ("INVITATION_TOKEN_RATE_LIMIT_PER_IP", "3/1h"),
    ])
    .await;
    let admin = p.user("Grace", "Hopper", "grace@example.com").await;
    p.verify("grace@example.com").await;
    let tenant = p.tenant(&admin, "Limits Co").await;
    let member = p.user("Mem", "Ber", "member@example.com").await;
    let outsider = p.user("Out", "Sider", "outsider@example.com").await;

    // Adding by user id stays, and says so in membership.changed.
    let (status, body) = p
        .post(
            &format!("/api/tenants/{tenant}/users"),
            json!({"user_id": member.id, "role": "user"}),
            Some(&admin.token),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let entries = p.audited(&admin, &tenant, &["membership.changed"]).await;
    assert!(
        entries.iter().any(|e| e["type"] == "membership.changed"
            && e["details"]["user_id"] == member.id.as_str()
            && e["details"]["added_by"] == "user_id"),
        "{entries:?}"
    );

    // Members who are not admins may not invite; others do not see the tenant.
    let path = format!("/api/tenants/{tenant}/invitations");
    let (status, body) = p.invite(&member, &tenant, "x@example.com", "user").await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = p.get(&path, Some(&member.token)).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = p.invite(&outsider, &tenant, "x@example.com", "user").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = p.get(&path, Some(&outsider.token)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = p
        .post(
            &path,
            json!({"email": "x@example.com", "role": "user"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // Inputs name their field; members' addresses are refused.
    let (status, body) = p.invite(&admin, &tenant, "not an address", "owner").await;
    assert_error(status, &body, 400, "validation_error");
    assert!(body["details"]["email"].is_array(), "{body}");
    assert!(body["details"]["role"].is_array(), "{body}");
    let (status, body) = p.post(&path, json!({}), Some(&admin.token)).await;
    assert_error(status, &body, 400, "validation_error");
    assert!(
        body["details"]["email"].is_array() && body["details"]["role"].is_array(),
        "{body}"
    );
    for taken in ["member@example.com", "Grace@Example.com"] {
        let (status, body) = p.invite(&admin, &tenant, taken, "user").await;
        assert_error(status, &body, 409, "conflict");
    }
    let (status, body) = p
        .post("/api/invitations/accept", json!({}), Some(&member.token))
        .await;
    assert_error(status, &body, 400, "validation_error");

    // Pages of pending invitations; at most INVITATION_MAX_PENDING of them.
    for n in 1..=3 {
        let (status, body) = p
            .invite(&admin, &tenant, &format!("guest{n}@example.com"), "viewer")
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = p
        .get(&format!("{path}?per_page=2"), Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["invitations"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        body["data"]["pagination"],
        json!({"page": 1, "per_page": 2, "total": 3, "pages": 2})
    );
    assert_eq!(
        body["data"]["invitations"][0]["email"], "guest3@example.com",
        "newest first"
    );
    let (status, body) = p
        .get(&format!("{path}?per_page=2&page=2"), Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["invitations"].as_array().map(Vec::len),
        Some(1)
    );
    let (status, body) = p
        .get(&format!("{path}?per_page=0"), Some(&admin.token))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = p
        .invite(&admin, &tenant, "guest4@example.com", "viewer")
        .await;
    assert_error(status, &body, 409, "invitation_limit_reached");
    // Sending a pending one again is no new invitation: allowed at the limit, but an
    // address is not flooded (INVITATION_RATE_LIMIT_PER_EMAIL: 2 per hour).
    let (status, body) = p
        .invite(&admin, &tenant, "guest1@example.com", "user")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let response = p
        .client
        .post(format!("{}{path}", p.gw))
        .bearer_auth(&admin.token)
        .json(&json!({"email": "guest1@example.com", "role": "user"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "rate_limited", "{body}");

    // Looking links up is limited per client address (3 per hour here).
    for _ in 0..3 {
        let (status, body) = p.preview(&"B".repeat(43)).await;
        assert_error(status, &body, 404, "not_found");
    }
    let (status, body) = p.preview(&"B".repeat(43)).await;
    assert_error(status, &body, 429, "rate_limited");
}

#[tokio::test]
async fn invitations_end_with_their_senders_rights_and_need_a_verified_sender() {
    let p = platform(&[]).await;
    let owner = p.verified("Owner", "owner@example.com").await;
    let tenant = p.tenant(&owner, "Rights").await;

    // An admin who is removed: what they sent stops working.
    let dave = p.verified("Dave", "dave@example.com").await;
    assert_eq!(
        add(&p, &owner, &tenant, &dave, "admin").await,
        StatusCode::CREATED
    );
    let (status, body) = p
        .invite(&dave, &tenant, "accomplice@example.com", "admin")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let from_dave = token_sent_to(&p, "accomplice@example.com").await;
    let (status, _) = p
        .delete(
            &format!("/api/tenants/{tenant}/users/{}", dave.id),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let accomplice = p.verified("Acc", "accomplice@example.com").await;
    let (status, body) = p.accept(&accomplice, &from_dave).await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(p.preview(&from_dave).await.0, StatusCode::NOT_FOUND);

    // An admin who is demoted: likewise.
    let erin = p.verified("Erin", "erin@example.com").await;
    assert_eq!(
        add(&p, &owner, &tenant, &erin, "admin").await,
        StatusCode::CREATED
    );
    let (status, _) = p
        .invite(&erin, &tenant, "friend@example.com", "admin")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let from_erin = token_sent_to(&p, "friend@example.com").await;
    let (status, _) = p
        .send(
            p.client
                .put(format!("{}/api/tenants/{tenant}/users/{}", p.gw, erin.id))
                .bearer_auth(&owner.token)
                .json(&json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let friend = p.verified("Friend", "friend@example.com").await;
    let (status, body) = p.accept(&friend, &from_erin).await;
    assert_error(status, &body, 404, "not_found");

    // A member removed cannot come back through an invitation sent before.
    let (status, _) = p
        .invite(&owner, &tenant, "frank@example.com", "viewer")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let for_frank = token_sent_to(&p, "frank@example.com").await;
    let frank = p.verified("Frank", "frank@example.com").await;
    assert_eq!(
        add(&p, &owner, &tenant, &frank, "viewer").await,
        StatusCode::CREATED
    );
    let (status, _) = p
        .delete(
            &format!("/api/tenants/{tenant}/users/{}", frank.id),
            &owner.token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = p.accept(&frank, &for_frank).await;
    assert_error(status, &body, 404, "not_found");
    // Each revocation is audited.
    p.audited(&owner, &tenant, &["invitation.revoked"]).await;
    let pending = p.pending(&owner, &tenant).await;
    assert_eq!(
        pending["invitations"].as_array().map(Vec::len),
        Some(0),
        "{pending}"
    );

    // Mail goes out in the name of verified people only.
    let unverified = p.user("Una", "Verified", "una@example.com").await;
    assert_eq!(
        add(&p, &owner, &tenant, &unverified, "admin").await,
        StatusCode::CREATED
    );
    let (status, body) = p
        .invite(&unverified, &tenant, "victim@example.com", "viewer")
        .await;
    assert_error(status, &body, 403, "email_not_verified");
}

async fn add(p: &Invites, owner: &User, tenant: &str, user: &User, role: &str) -> StatusCode {
    p.post(
        &format!("/api/tenants/{tenant}/users"),
        json!({"user_id": user.id, "role": role}),
        Some(&owner.token),
    )
    .await
    .0
}

async fn token_sent_to(p: &Invites, to: &str) -> String {
    let mail = p.invitation_mails(to, "Rights", 1).await.remove(0);
    invitation_token(&mail)
}
