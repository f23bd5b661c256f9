//! The platform through the gateway only (nginx with deploy/gateway/nginx.conf.template
//! in front of the five services): the main journey, the request id, and what the
//! gateway must not expose.

use reqwest::StatusCode;
use serde_json::Value;
use testkit::{TestContext, TestGateway, Upstreams};

use crate::documents::{platform_with, Docs};

/// The gateway in front of `direct`'s auth, tenant and document services, with an sso
/// service and an event-worker of its own (`worker_extra` is the worker's), and the
/// clients through it.
pub(crate) async fn through_gateway(
    ctx: &TestContext,
    direct: Docs,
    worker_extra: &[(&str, &str)],
) -> (TestGateway, Docs) {
    let sso = testkit::start_service::<sso::Service>(ctx, &[]);
    let mut worker_env = vec![
        ("TENANT_SERVICE_URL", direct.tenant.as_str()),
        ("AUTH_SERVICE_URL", direct.auth.base.as_str()),
    ];
    worker_env.extend_from_slice(worker_extra);
    let worker = testkit::start_service::<event_worker::Service>(ctx, &worker_env);
    let gateway = TestGateway::start(
        Upstreams {
            auth: &direct.auth.base,
            tenant: &direct.tenant,
            document: &direct.documents,
            sso: &sso,
            event_worker: &worker,
        },
        "2m",
    )
    .await
    .expect("gateway");
    let gw = gateway.base.clone();
    let docs = Docs {
        auth: direct.auth.through(&gw),
        tenant: gw.clone(),
        documents: gw,
        s3: direct.s3,
    };
    (gateway, docs)
}

#[tokio::test]
async fn the_main_journey_works_through_the_gateway_and_internals_stay_hidden() {
    let ctx = TestContext::new().await;
    let direct = platform_with(&ctx, &[], &[]).await;
    let (gateway, docs) = through_gateway(&ctx, direct, &[]).await;
    let gw = gateway.base.clone();
    let client = reqwest::Client::new();

    // Health of the gateway and of each area.
    for path in [
        "/health",
        "/",
        "/api/auth/health",
        "/api/users/health",
        "/api/tenants/health",
    ] {
        let response = client.get(format!("{gw}{path}")).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    // register → login → create tenant → add member
    let (admin, _) = docs.auth.session("journey@example.com").await;
    let tenant = docs.tenant_of(&admin, "Journey").await;
    let (member, _) = docs.auth.session("member@example.com").await;
    docs.add_member(&admin, &tenant, &member, "viewer").await;

    // upload twice (dedup) → download → presigned URL fetched from S3
    let bytes = b"through the gateway, streamed".to_vec();
    let (status, first) = docs.upload(&admin, &tenant, bytes.clone(), "a.txt").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, second) = docs.upload(&admin, &tenant, bytes.clone(), "b.txt").await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(
        first["data"]["file_id"], second["data"]["file_id"],
        "deduplicated"
    );
    let id = first["data"]["id"].as_str().expect("id");
    let download = client
        .get(format!("{gw}/api/tenants/{tenant}/documents/{id}/download"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    let headers_of = |response: &reqwest::Response, name: &str| -> Vec<String> {
        response
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    };
    // A download opened in a browser runs nothing: one nosniff (the gateway's, the
    // service's hidden), a sandbox, and always an attachment.
    assert_eq!(
        (
            headers_of(&download, "x-content-type-options"),
            headers_of(&download, "content-security-policy"),
        ),
        (vec!["nosniff".to_owned()], vec!["sandbox".to_owned()])
    );
    assert!(
        headers_of(&download, "content-disposition")
            .first()
            .is_some_and(|d| d.starts_with("attachment; filename=\"a.txt\"")),
        "{:?}",
        download.headers()
    );
    assert_eq!(
        download.bytes().await.expect("bytes").as_ref(),
        bytes.as_slice()
    );
    // A document's presigned URL through the gateway, fetched from S3.
    let fetch_presigned = |doc: String| {
        let (client, gw, tenant, admin) = (&client, &gw, &tenant, &admin);
        async move {
            let url: Value = client
                .get(format!(
                    "{gw}/api/tenants/{tenant}/documents/{doc}/download-url"
                ))
                .bearer_auth(admin)
                .send()
                .await
                .expect("download-url")
                .json()
                .await
                .expect("json");
            let link = url["data"]["download_url"].as_str().expect("url");
            let fetched = reqwest::get(link).await.expect("fetch");
            assert_eq!(fetched.status(), StatusCode::OK);
            fetched
        }
    };
    let fetched = fetch_presigned(id.to_owned()).await;
    assert_eq!(
        (
            headers_of(&fetched, "content-type"),
            headers_of(&fetched, "content-disposition")
        ),
        (
            vec!["text/plain".to_owned()],
            vec!["attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt".to_owned()]
        ),
        "S3 answers with the headers signed into the URL"
    );
    assert_eq!(
        fetched.bytes().await.expect("bytes").as_ref(),
        bytes.as_slice()
    );
    // An uploaded page is never served as one from the storage origin.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"<script>alert(document.domain)</script>".to_vec())
                .file_name("page.html"),
        )
        .text("mime_type", "text/html");
    let page: Value = client
        .post(format!("{gw}/api/tenants/{tenant}/documents"))
        .bearer_auth(&admin)
        .multipart(form)
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    assert_eq!(page["data"]["mime_type"], "text/html", "{page}");
    let fetched = fetch_presigned(page["data"]["id"].as_str().expect("id").to_owned()).await;
    assert_eq!(
        (
            headers_of(&fetched, "content-type"),
            headers_of(&fetched, "content-disposition")
        ),
        (
            vec!["application/octet-stream".to_owned()],
            vec!["attachment; filename=\"page.html\"; filename*=UTF-8''page.html".to_owned()]
        )
    );

    // role checks: the viewer reads but may not delete; an outsider sees nothing.
    let as_viewer = client
        .delete(format!("{gw}/api/tenants/{tenant}/documents/{id}"))
        .bearer_auth(&member)
        .send()
        .await
        .expect("delete");
    assert_eq!(as_viewer.status(), StatusCode::FORBIDDEN);
    let audit = client
        .get(format!("{gw}/api/tenants/{tenant}/audit-logs"))
        .bearer_auth(&member)
        .send()
        .await
        .expect("audit");
    assert_eq!(
        audit.status(),
        StatusCode::FORBIDDEN,
        "routed to the event-worker"
    );
    let (outsider, _) = docs.auth.session("outsider@example.com").await;
    let hidden = client
        .get(format!("{gw}/api/tenants/{tenant}/documents"))
        .bearer_auth(&outsider)
        .send()
        .await
        .expect("list");
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);

    // delete
    let deleted = client
        .delete(format!("{gw}/api/tenants/{tenant}/documents/{id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);

    // The request id is passed through (the service's error body names it) or made.
    let response = client
        .get(format!("{gw}/api/users/me"))
        .header("x-request-id", "journey-42")
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-request-id"], "journey-42");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["request_id"], "journey-42");
    let made = client
        .get(format!("{gw}/health"))
        .send()
        .await
        .expect("get");
    assert!(made
        .headers()
        .get("x-request-id")
        .is_some_and(|v| !v.is_empty()));

    // Internal routes and metrics are not reachable; unknown paths are JSON 404s.
    for path in [
        "/internal/v1/tenant-databases",
        "/internal/v1/users/lookup",
        "/metrics",
        "/nowhere",
    ] {
        let response = client
            .get(format!("{gw}{path}"))
            .bearer_auth(testkit::INTERNAL_TOKEN)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "not_found", "{path}");
    }

    // The API documentation.
    let page = client
        .get(format!("{gw}/api/docs"))
        .send()
        .await
        .expect("docs");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/html"));
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("/api/docs/openapi.json"));
    let served: Value = client
        .get(format!("{gw}/api/docs/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(served["paths"]["/api/tenants/{tenant_id}/documents"].is_object());

    // Every documented operation reaches a service (none falls through to the gateway's
    // own 404), and its declared security holds: without a token, an operation that
    // declares `bearer` answers 401 `unauthorized`, one that declares none does not.
    for (path, item) in served["paths"].as_object().expect("paths") {
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "00000000-0000-4000-8000-000000000000"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let security = operation["security"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} declares its security"));
            let bearer = security.iter().any(|r| r.get("bearer").is_some());
            let response = client
                .request(
                    method.to_uppercase().parse().expect("method"),
                    format!("{gw}{concrete}"),
                )
                .send()
                .await
                .expect("request");
            assert!(
                response.headers().get("x-gateway-unrouted").is_none(),
                "{method} {path} is not routed by the gateway"
            );
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let refused = status == StatusCode::UNAUTHORIZED && body["error"] == "unauthorized";
            assert_eq!(
                refused, bearer,
                "{method} {path}: declares bearer = {bearer}, answered {status} {body}"
            );
        }
    }
    let unrouted = client
        .get(format!("{gw}/nowhere"))
        .send()
        .await
        .expect("get");
    assert!(unrouted.headers().get("x-gateway-unrouted").is_some());
    assert!(unrouted.headers().get("x-request-id").is_some());
    let jwks: Value = client
        .get(format!("{gw}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert!(
        jwks["keys"].as_array().is_some_and(|k| !k.is_empty()),
        "{jwks}"
    );

    // The body limit answers in the platform's error shape.
    let too_big = client
        .post(format!("{gw}/api/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = too_big.json().await.expect("json");
    assert_eq!(body["error"], "payload_too_large");
}

/// Every service's public routes in one document (internal routes left out).
fn merged_openapi() -> utoipa::openapi::OpenApi {
    let mut merged = auth::openapi();
    for other in [
        tenant::openapi(),
        document::openapi(),
        sso::openapi(),
        event_worker::openapi(),
    ] {
        merged.merge(other);
    }
    merged
        .paths
        .paths
        .retain(|path, _| !path.starts_with("/internal"));
    gateway_answers(&mut merged);
    prune_schemas(&mut merged);
    merged.info.title = "SaaS platform".to_owned();
    merged.info.description = Some(
        "Every public route of the platform, as the gateway serves it (the contract: the repository's docs/API.md)."
            .to_owned(),
    );
    merged.info.version = env!("CARGO_PKG_VERSION").to_owned();
    merged
}

/// What the gateway itself can answer on top of the services: 429 `rate_limited` on
/// `/api/auth/…` (its per-address limit).
fn gateway_answers(doc: &mut utoipa::openapi::OpenApi) {
    let mut value = serde_json::to_value(&*doc).expect("document");
    for (path, item) in value["paths"].as_object_mut().expect("paths") {
        if !path.starts_with("/api/auth/") {
            continue;
        }
        for operation in item.as_object_mut().expect("item").values_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(|r| r.as_object_mut())
            else {
                continue;
            };
            responses.entry("429").or_insert_with(|| {
                serde_json::json!({
                    "description": "`rate_limited`: too many requests from this address (the gateway's limit, or the operation's own)",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                })
            });
        }
    }
    *doc = serde_json::from_value(value).expect("document");
}

/// Drops the component schemas no public path reaches (those of internal routes:
/// `IssueRequest`, `ResolveRequest`…), following references between schemas.
fn prune_schemas(doc: &mut utoipa::openapi::OpenApi) {
    fn refs(value: &Value, found: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    if key == "$ref" {
                        if let Some(name) = item
                            .as_str()
                            .and_then(|r| r.strip_prefix("#/components/schemas/"))
                        {
                            found.insert(name.to_owned());
                        }
                    } else {
                        refs(item, found);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    let mut reached = std::collections::BTreeSet::new();
    refs(
        &serde_json::to_value(&doc.paths).expect("paths"),
        &mut reached,
    );
    // The error envelope is every error's schema.
    reached.insert("ErrorBody".to_owned());
    loop {
        let mut next = reached.clone();
        for name in &reached {
            if let Some(schema) = components.schemas.get(name) {
                refs(&serde_json::to_value(schema).expect("schema"), &mut next);
            }
        }
        if next == reached {
            break;
        }
        reached = next;
    }
    components
        .schemas
        .retain(|name, _| reached.contains(name.as_str()));
    // Likewise the security schemes: the internal token belongs to internal documents.
    let paths = serde_json::to_value(&doc.paths).expect("paths");
    let used: std::collections::BTreeSet<String> = paths
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
        .flat_map(|item| item.as_object().into_iter().flat_map(|o| o.values()))
        .flat_map(|op| op["security"].as_array().cloned().unwrap_or_default())
        .flat_map(|req| {
            req.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    components
        .security_schemes
        .retain(|name, _| used.contains(name.as_str()));
}

#[test]
fn the_merged_openapi_document_is_current() {
    let path = testkit::workspace_root().join("deploy/gateway/static/openapi.json");
    let generated = merged_openapi().to_pretty_json().expect("json") + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date: run `UPDATE_OPENAPI=1 cargo nextest run -p platform-tests the_merged_openapi_document_is_current` and commit it",
        path.display()
    );
    let doc: Value = serde_json::from_str(&committed).expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for public in [
        "/api/auth/login",
        "/api/tenants",
        "/api/tenants/{tenant_id}/documents",
        "/api/tenants/{tenant_id}/audit-logs",
        "/api/tenants/{tenant_id}/webhooks",
    ] {
        assert!(paths.contains_key(public), "{public} is documented");
    }
    assert!(
        !paths.keys().any(|p| p.starts_with("/internal")),
        "internal routes are not published"
    );
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for internal in [
        "IssueRequest",
        "ResolveRequest",
        "LookupRequest",
        "SetMembership",
        "SetSso",
    ] {
        assert!(
            !schemas.contains_key(internal),
            "{internal} (an internal route's schema) is not published"
        );
    }
    assert!(schemas.contains_key("LoginRequest") && schemas.contains_key("ErrorBody"));
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert!(schemes.contains_key("bearer") && !schemes.contains_key("internal"));
}
