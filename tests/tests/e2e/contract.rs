//! The contract, checked from outside (issue 16): the published OpenAPI document is
//! valid OpenAPI 3.1 (`openapi-spec-validator`), and schemathesis, run through the
//! gateway as a tenant admin with real ids in every path, finds no answer that breaks
//! it: no 5xx, no undocumented status, no body off its schema, no wrong content type.
//!
//! Both tools come from PyPI at the versions of `tests/contract/requirements.txt`;
//! `scripts/test.sh` installs them once per machine and names their folder in
//! `PLATFORM_PYTHON_TOOLS`. The longer random run is `scripts/fuzz-api.sh`.

use std::path::PathBuf;
use std::process::Command;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use testkit::{TestContext, TestSmtp};

use crate::account::{link_token, wait_mails};
use crate::edge::edge;
use crate::invitations::{invitation_token, APP};

const PASSWORD: &str = "correct horse 1";

/// The seed of the CI lane: the same cases every run.
const SEED: u64 = 16;
/// Generated cases per operation and phase in the CI lane.
const MAX_EXAMPLES: u32 = 12;

/// A program of the Python tools' folder (or of `PATH`).
fn tool(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("PLATFORM_PYTHON_TOOLS") {
        let path = PathBuf::from(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    if let Some(path) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
    {
        return path;
    }
    panic!(
        "{name} is missing: scripts/test.sh installs it from tests/contract/requirements.txt \
         and sets PLATFORM_PYTHON_TOOLS"
    )
}

#[test]
fn the_published_openapi_document_is_valid_openapi_3_1() {
    let document = testkit::workspace_root().join("deploy/gateway/static/openapi.json");
    let output = Command::new(tool("openapi-spec-validator"))
        .arg(&document)
        .output()
        .expect("openapi-spec-validator runs");
    assert!(
        output.status.success(),
        "{} is not valid OpenAPI: {}{}",
        document.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&document).expect("read")).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
}

/// A signed-in user of the fixture.
struct User {
    id: String,
    token: String,
}

struct Fixture {
    gw: String,
    client: Client,
    smtp: TestSmtp,
}

impl Fixture {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.gw));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, body: Value, token: Option<&str>) -> Value {
        self.call(reqwest::Method::POST, path, Some(body), token)
            .await
    }

    /// Registers, verifies (with the mailed link) and signs in.
    async fn user(&self, first_name: &str, email: &str) -> User {
        let registered = self
            .post(
                "/api/auth/register",
                json!({"first_name": first_name, "last_name": "Contract", "email": email, "password": PASSWORD}),
                None,
            )
            .await;
        let mail = wait_mails(&self.smtp, email, "Verify your email address", 1)
            .await
            .remove(0);
        let token = link_token(&mail, APP, "verify-email");
        self.post("/api/auth/verify-email", json!({"token": token}), None)
            .await;
        let login = self
            .post(
                "/api/auth/login",
                json!({"email": email, "password": PASSWORD}),
                None,
            )
            .await;
        User {
            id: registered["user"]["id"].as_str().expect("id").to_owned(),
            token: login["access_token"].as_str().expect("token").to_owned(),
        }
    }

    async fn tenant(&self, admin: &User, name: &str) -> String {
        let body = self
            .post("/api/tenants", json!({"name": name}), Some(&admin.token))
            .await;
        body["data"]["id"].as_str().expect("tenant id").to_owned()
    }

    async fn member(&self, admin: &User, tenant: &str, user: &User, role: &str) {
        self.post(
            &format!("/api/tenants/{tenant}/users"),
            json!({"user_id": user.id, "role": role}),
            Some(&admin.token),
        )
        .await;
    }

    async fn upload(&self, admin: &User, tenant: &str, text: &str) -> (String, String) {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
                    .file_name(format!("{text}.txt")),
            )
            .text("mime_type", "text/plain");
        let response = self
            .client
            .post(format!("{}/api/tenants/{tenant}/documents", self.gw))
            .bearer_auth(&admin.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        (
            body["data"]["id"].as_str().expect("document id").to_owned(),
            body["data"]["file_id"]
                .as_str()
                .expect("file id")
                .to_owned(),
        )
    }
}

/// The values schemathesis puts in every path, so its cases reach the handlers rather
/// than stopping at a 404.
struct Ids {
    tenant: String,
    doomed_tenant: String,
    document: String,
    doomed_document: String,
    file: String,
    member: String,
    doomed_member: String,
    webhook: String,
    invitation: String,
    invitation_token: String,
    session: String,
}

/// Operations that can refuse a request its schema admits, because their rule is more
/// than JSON Schema says: for them, schemathesis's `positive_data_acceptance` also
/// expects 400 (`validation_error` naming the field, or the operation's own code).
const BEYOND_THE_SCHEMA: &[(&str, &str)] = &[
    (
        "POST /api/auth/register",
        "the password policy; names need a visible character; the email grammar",
    ),
    ("POST /api/auth/password/forgot", "the email grammar"),
    ("POST /api/auth/resend-verification", "the email grammar"),
    ("POST /api/auth/sso/detect", "the email grammar"),
    (
        "POST /api/auth/password/reset",
        "the token must be one the platform mailed; the password policy",
    ),
    (
        "POST /api/auth/verify-email",
        "the token must be one the platform mailed",
    ),
    ("POST /api/users/me/password", "the password policy"),
    ("PUT /api/users/me", "names need a visible character"),
    ("POST /api/tenants", "names need a visible character"),
    ("PUT /api/tenants/{id}", "names need a visible character"),
    (
        "POST /api/tenants/{tenant_id}/webhooks",
        "the URL must be https and not a private address",
    ),
    (
        "PUT /api/tenants/{tenant_id}/sso/config/auto-provisioning",
        "group ids and email domains have their own grammar",
    ),
    (
        "GET /api/auth/sso/azure/callback",
        "the state must be one a sign-in started",
    ),
    (
        "GET /api/auth/sso/azure/login/{tenant_id}",
        "return_url must be an allowed origin",
    ),
    (
        "POST /api/tenants/{tenant_id}/sso/config",
        "redirect_uri must be an absolute http(s) URL",
    ),
    (
        "PUT /api/tenants/{tenant_id}/sso/config",
        "redirect_uri must be an absolute http(s) URL",
    ),
    (
        "DELETE /api/files/{tenant_id}/files/{file_id}",
        "a file documents still refer to is kept",
    ),
    (
        "POST /api/tenants/{id}/retry",
        "only a failed provisioning can be retried",
    ),
    (
        "PUT /api/tenants/{tenant_id}/documents/{document_id}",
        "filename or mime_type must be a string (null leaves it unchanged)",
    ),
    (
        "POST /api/users/me/sso-identities/link/{tenant_id}",
        "return_url must be an allowed origin",
    ),
];

fn semantic() -> String {
    BEYOND_THE_SCHEMA
        .iter()
        .map(|(operation, why)| {
            format!(
                "\n# {why}\n[[operations]]\ninclude-name = \"{operation}\"\n\
                 checks.positive_data_acceptance.expected-statuses = \
                 [\"2xx\", \"3xx\", \"400\", \"401\", \"403\", \"404\", \"409\", \"410\", \"429\"]\n"
            )
        })
        .collect()
}

/// Bearer tokens of users whose sessions the run may end.
struct Tokens {
    loner: String,
    leaver: String,
    sso_leaver: String,
    refresh: String,
}

fn config(gw: &str, admin: &User, tokens: &Tokens, ids: &Ids, max_examples: u32) -> String {
    format!(
        r#"# Written by tests/tests/e2e/contract.rs for one run.
base-url = "{gw}"
workers = 1
request-timeout = 30.0
headers = {{ Authorization = "Bearer {admin}" }}

[generation]
max-examples = {max_examples}
# No string of the API may hold a NUL (PostgreSQL's text cannot): every edge answers
# 400 naming the field, which tests of their own check.
allow-x00 = false

# Every check schemathesis has (set here, not with --checks, so that an operation can
# narrow one below).
[checks]
enabled = true

# The stateful phase (scripts/fuzz-api.sh) links a created document to its deletion,
# but the pinned id of the deletion (below) wins over the link.
[checks.ensure_resource_availability]
enabled = false

[parameters]
"path.tenant_id" = "{tenant}"
"path.id" = "{tenant}"
"path.document_id" = "{document}"
"path.file_id" = "{file}"
"path.user_id" = "{member}"
"path.webhook_id" = "{webhook}"
"path.invitation_id" = "{invitation}"
"path.token" = "{invitation_token}"
"path.session_id" = "{session}"

# What deletes is pointed at things of its own, so that the other operations keep
# their real ids for the whole run.
[[operations]]
include-name = "DELETE /api/tenants/{{id}}"
parameters = {{ "path.id" = "{doomed_tenant}" }}

[[operations]]
include-name = "DELETE /api/tenants/{{tenant_id}}/documents/{{document_id}}"
parameters = {{ "path.document_id" = "{doomed_document}" }}

[[operations]]
include-name = "DELETE /api/tenants/{{id}}/users/{{user_id}}"
parameters = {{ "path.user_id" = "{doomed_member}" }}

# Multipart parts are text: `false` is a filename, whatever type the case meant.
[[operations]]
include-name = "POST /api/tenants/{{tenant_id}}/documents"
checks.negative_data_rejection.enabled = false


# What ends the caller's own sessions is done by users of its own.
[[operations]]
include-name = "DELETE /api/users/me/sessions"
headers = {{ Authorization = "Bearer {loner}" }}

[[operations]]
include-name = "POST /api/auth/logout"
headers = {{ Authorization = "Bearer {leaver}" }}

[[operations]]
include-name = "POST /api/auth/sso/azure/logout/{{tenant_id}}"
headers = {{ Authorization = "Bearer {sso_leaver}" }}

# The refresh operation takes a refresh token as its bearer token.
[[operations]]
include-name = "POST /api/auth/refresh"
headers = {{ Authorization = "Bearer {refresh}" }}
{semantic}"#,
        admin = admin.token,
        loner = tokens.loner,
        leaver = tokens.leaver,
        sso_leaver = tokens.sso_leaver,
        refresh = tokens.refresh,
        semantic = semantic(),
        tenant = ids.tenant,
        doomed_tenant = ids.doomed_tenant,
        document = ids.document,
        doomed_document = ids.doomed_document,
        file = ids.file,
        member = ids.member,
        doomed_member = ids.doomed_member,
        webhook = ids.webhook,
        invitation = ids.invitation,
        invitation_token = ids.invitation_token,
        session = ids.session,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_nothing_through_the_gateway() {
    let ctx = TestContext::new().await;
    let kafka = crate::events::kafka().await;
    let smtp = TestSmtp::start().await.expect("SMTP sink");
    let smtp_url = smtp.url.clone();
    let edge = edge(
        &ctx,
        &[
            ("KAFKA_BROKERS", kafka.brokers()),
            ("SMTP_URL", smtp_url.as_str()),
            ("PUBLIC_APP_URL", APP),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
        &[],
    )
    .await;
    let f = Fixture {
        gw: edge.gateway.base.clone(),
        client: Client::new(),
        smtp,
    };

    let admin = f.user("Ada", "ada@contract.example").await;
    let bob = f.user("Bob", "bob@contract.example").await;
    let carol = f.user("Carol", "carol@contract.example").await;
    let loner = f.user("Lone", "lone@contract.example").await;
    let leaver = f.user("Leo", "leo@contract.example").await;
    let sso_leaver = f.user("Sue", "sue@contract.example").await;
    let refresher = f
        .post(
            "/api/auth/login",
            json!({"email": "leo@contract.example", "password": PASSWORD}),
            None,
        )
        .await;
    let tokens = Tokens {
        loner: loner.token,
        leaver: leaver.token,
        sso_leaver: sso_leaver.token.clone(),
        refresh: refresher["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    };
    let tenant = f.tenant(&admin, "Contract").await;
    let doomed_tenant = f.tenant(&admin, "Doomed").await;
    f.member(&admin, &tenant, &bob, "user").await;
    f.member(&admin, &tenant, &carol, "viewer").await;
    // The SSO logout of a member (a non-member's is a 404, which proves less).
    f.member(&admin, &tenant, &sso_leaver, "viewer").await;
    let (document, file) = f.upload(&admin, &tenant, "kept").await;
    let (doomed_document, _) = f.upload(&admin, &tenant, "doomed").await;
    let webhook = f
        .post(
            &format!("/api/tenants/{tenant}/webhooks"),
            json!({"url": "https://hooks.example.com/in", "event_types": ["document.uploaded"]}),
            Some(&admin.token),
        )
        .await;
    let invitation = f
        .post(
            &format!("/api/tenants/{tenant}/invitations"),
            json!({"email": "dora@contract.example", "role": "user"}),
            Some(&admin.token),
        )
        .await;
    let mail = wait_mails(
        &f.smtp,
        "dora@contract.example",
        "You are invited to join Contract",
        1,
    )
    .await
    .remove(0);
    // A second session of the admin's, for the operation that ends one.
    let second = f
        .post(
            "/api/auth/login",
            json!({"email": "ada@contract.example", "password": PASSWORD}),
            None,
        )
        .await;
    let sessions = f
        .call(
            reqwest::Method::GET,
            "/api/users/me/sessions",
            None,
            Some(second["access_token"].as_str().expect("token")),
        )
        .await;
    let session = sessions["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["current"] == true)
        .expect("the second session")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let ids = Ids {
        tenant,
        doomed_tenant,
        document,
        doomed_document,
        file,
        member: bob.id.clone(),
        doomed_member: carol.id.clone(),
        webhook: webhook["data"]["id"].as_str().expect("webhook").to_owned(),
        invitation: invitation["data"]["id"]
            .as_str()
            .expect("invitation")
            .to_owned(),
        invitation_token: invitation_token(&mail),
        session,
    };

    let dir = std::env::temp_dir().join(format!(
        "contract-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config_path = dir.join("schemathesis.toml");
    // scripts/fuzz-api.sh runs longer, with a random seed: SCHEMATHESIS_SEED,
    // SCHEMATHESIS_MAX_EXAMPLES and SCHEMATHESIS_PHASES override the CI lane's.
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| SEED.to_string());
    let seed = if seed == "random" {
        (chrono::Utc::now().timestamp_subsec_nanos() as u64 ^ std::process::id() as u64).to_string()
    } else {
        seed
    };
    let max_examples = std::env::var("SCHEMATHESIS_MAX_EXAMPLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MAX_EXAMPLES);
    let phases = std::env::var("SCHEMATHESIS_PHASES")
        .unwrap_or_else(|_| "examples,coverage,fuzzing".to_owned());
    eprintln!("schemathesis: seed {seed}, {max_examples} examples, phases {phases}");
    std::fs::write(
        &config_path,
        config(&f.gw, &admin, &tokens, &ids, max_examples),
    )
    .expect("write config");
    let schema = format!("{}/api/docs/openapi.json", f.gw);
    let started = std::time::Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tool("schemathesis"))
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "")
            .arg("--config-file")
            .arg(&config_path)
            .args(["run", &schema])
            .args(["--seed", &seed])
            .args(["--phases", &phases])
            .args(["--report", "junit,har"])
            .arg("--report-dir")
            .arg(dir.join("report"))
            .output()
            .inspect(|_| {
                // SCHEMATHESIS_KEEP keeps the reports (JUnit, HAR) for a look.
                if std::env::var_os("SCHEMATHESIS_KEEP").is_none() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
            })
            .expect("schemathesis runs")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "schemathesis ran for {:.0?}:\n{stdout}{stderr}",
        started.elapsed()
    );
    assert!(
        output.status.success(),
        "schemathesis found failures (above)"
    );
    // "2169 generated, 2169 passed, 72 skipped": every generated case passed.
    let counts = stdout
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or_else(|| panic!("no case counts in the summary: {stdout}"));
    let numbers: Vec<u64> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.len() >= 2 && numbers[0] > 1000 && numbers[0] == numbers[1],
        "not every case passed: {counts}"
    );
}
