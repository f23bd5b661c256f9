//! The document API over HTTP, with auth, the tenant service and a real S3 server
//! (s3s-fs): upload, deduplication, listing, reading, downloading, deleting, roles,
//! the size limit, and S3 going away mid-upload.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::{TestContext, TestS3};

use crate::auth::{assert_error, start_with, Auth};

pub(crate) struct Docs {
    pub(crate) auth: Auth,
    pub(crate) tenant: String,
    pub(crate) documents: String,
    pub(crate) s3: TestS3,
}

async fn platform(ctx: &TestContext, doc_extra: &[(&str, &str)]) -> Docs {
    platform_with(ctx, &[], doc_extra).await
}

/// Auth, tenant and document services; `shared` goes to all three.
pub(crate) async fn platform_with(
    ctx: &TestContext,
    shared: &[(&str, &str)],
    doc_extra: &[(&str, &str)],
) -> Docs {
    let (auth, tenant) = start_with(ctx, shared, shared);
    let s3 = TestS3::start().await.expect("s3");
    let documents = start_documents(ctx, &auth, &tenant, &s3, &[shared, doc_extra].concat()).await;
    Docs {
        auth,
        tenant,
        documents,
        s3,
    }
}

/// One more document service on the same databases, S3 and services.
pub(crate) async fn start_documents(
    ctx: &TestContext,
    auth: &Auth,
    tenant: &str,
    s3: &TestS3,
    doc_extra: &[(&str, &str)],
) -> String {
    let mut env = vec![
        ("S3_ENDPOINT_URL", s3.endpoint.as_str()),
        ("S3_PUBLIC_URL", s3.public_endpoint.as_str()),
        ("S3_ACCESS_KEY", s3.access_key.as_str()),
        ("S3_SECRET_KEY", s3.secret_key.as_str()),
        ("S3_BUCKET", "documents"),
        ("S3_CREATE_BUCKET", "true"),
        ("TENANT_SERVICE_URL", tenant),
        ("AUTH_SERVICE_URL", auth.base.as_str()),
    ];
    env.extend_from_slice(doc_extra);
    let documents = testkit::start_service::<document::Service>(ctx, &env);
    let ready = documents.clone();
    testkit::wait_until(Duration::from_secs(10), || async {
        reqwest::get(format!("{ready}/ready"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .expect("document service ready");
    documents
}

impl Docs {
    pub(crate) async fn tenant_of(&self, token: &str, name: &str) -> String {
        let response = self
            .auth
            .client
            .post(format!("{}/api/tenants", self.tenant))
            .bearer_auth(token)
            .json(&json!({"name": name}))
            .send()
            .await
            .expect("create tenant");
        let body: Value = response.json().await.expect("json");
        body["data"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no tenant made: {body}"))
            .to_owned()
    }

    /// Makes the holder of `member` a member of `tenant` with `role` (as its admin).
    pub(crate) async fn add_member(&self, admin: &str, tenant: &str, member: &str, role: &str) {
        let (_, me) = self.auth.get("/api/users/me", Some(member)).await;
        let response = self
            .auth
            .client
            .post(format!("{}/api/tenants/{tenant}/users", self.tenant))
            .bearer_auth(admin)
            .json(&json!({"user_id": me["data"]["id"], "role": role}))
            .send()
            .await
            .expect("add member");
        assert_eq!(response.status(), StatusCode::CREATED, "adding a {role}");
    }

    pub(crate) async fn upload(
        &self,
        token: &str,
        tenant: &str,
        bytes: Vec<u8>,
        filename: &str,
    ) -> (StatusCode, Value) {
        let form = Form::new()
            .part("file", Part::bytes(bytes).file_name(filename.to_owned()))
            .text("mime_type", "text/plain");
        let response = self
            .auth
            .client
            .post(format!("{}/api/tenants/{tenant}/documents", self.documents))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GET of a document's streamed download.
    async fn download(&self, token: &str, tenant: &str, id: &str) -> reqwest::Response {
        self.auth
            .client
            .get(format!(
                "{}/api/tenants/{tenant}/documents/{id}/download",
                self.documents
            ))
            .bearer_auth(token)
            .send()
            .await
            .expect("download")
    }

    /// How many documents `tenant` lists for `token`.
    async fn document_total(&self, token: &str, tenant: &str) -> i64 {
        let (status, list) = self
            .call(
                Method::GET,
                &format!("/api/tenants/{tenant}/documents"),
                token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["data"]["pagination"]["total"]
            .as_i64()
            .unwrap_or_else(|| panic!("no total: {list}"))
    }

    async fn call(&self, method: Method, path: &str, token: &str) -> (StatusCode, Value) {
        let response = self
            .auth
            .client
            .request(method, format!("{}{path}", self.documents))
            .bearer_auth(token)
            .send()
            .await
            .expect("send");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn s3_path_ends(path: &Value, tail: &str) -> bool {
    path.as_str()
        .is_some_and(|p| p.contains(&format!("/files/{tail}")))
}

#[tokio::test]
async fn upload_dedup_list_download_and_delete() {
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Docs").await;

    let (status, first) = docs
        .upload(&admin, &tenant, b"hello documents".to_vec(), "hello.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first = &first["data"];
    assert_eq!(first["filename"], "hello.txt");
    assert_eq!(first["mime_type"], "text/plain");
    assert_eq!(first["file"]["file_size"], 15);
    // Computed elsewhere (Python's hashlib) for b"hello documents".
    assert_eq!(
        first["file"]["md5_hash"],
        "24c77d74e9755a3658f7a535d05ca6aa"
    );
    assert_eq!(
        first["file"]["sha256_hash"],
        "7cfb967ffc81da5f93b59438dd55c9c535edd6e6c997eacdc6d263abdf57d287"
    );
    // The key names the File's id, not its hash (issue 19).
    let file_id = first["file_id"].as_str().expect("file id");
    assert!(
        s3_path_ends(
            &first["file"]["s3_path"],
            &format!("{}/{file_id}", &file_id[..2])
        ),
        "{first}"
    );
    let s3_path = first["file"]["s3_path"].as_str().expect("path").to_owned();
    assert!(s3_path.starts_with("tenants/tenant_docs_"), "{s3_path}");

    // The same bytes again: a new document on the same file, nothing stored twice.
    let (status, second) = docs
        .upload(&admin, &tenant, b"hello documents".to_vec(), "copy.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["data"]["file_id"], first["file_id"]);
    assert_eq!(docs.s3.objects("documents").len(), 1);
    // A file with one document besides; the files API counts each file's documents.
    let (status, other) = docs
        .upload(&admin, &tenant, b"other bytes".to_vec(), "other.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let counts = |files: &Value| -> Vec<(String, Option<i64>)> {
        files["data"]["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().expect("id").to_owned(),
                    f["document_count"].as_i64(),
                )
            })
            .collect()
    };
    let shared = first["file_id"].as_str().expect("file id").to_owned();
    let single = other["data"]["file_id"]
        .as_str()
        .expect("file id")
        .to_owned();
    let (status, files) = docs
        .call(
            Method::GET,
            &format!("/api/files/{tenant}/files?include_stats=true"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{files}");
    assert_eq!(
        counts(&files),
        vec![(single.clone(), Some(1)), (shared.clone(), Some(2))],
        "newest first, each with its document count: {files}"
    );
    let (_, files) = docs
        .call(Method::GET, &format!("/api/files/{tenant}/files"), &admin)
        .await;
    assert_eq!(
        counts(&files),
        vec![(single, None), (shared, None)],
        "counted only when asked"
    );
    let other_id = other["data"]["id"].as_str().expect("id");
    let (status, _) = docs
        .call(
            Method::DELETE,
            &format!("/api/tenants/{tenant}/documents/{other_id}"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, list) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents?per_page=1"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list["data"]["pagination"],
        json!({"page": 1, "per_page": 1, "total": 2, "pages": 2})
    );
    assert_eq!(
        list["data"]["documents"][0]["filename"], "copy.txt",
        "newest first"
    );
    // A page past the end has no rows but still knows the total.
    let (status, beyond) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents?per_page=1&page=5"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{beyond}");
    assert_eq!(beyond["data"]["documents"], json!([]));
    assert_eq!(
        beyond["data"]["pagination"],
        json!({"page": 5, "per_page": 1, "total": 2, "pages": 2})
    );
    let (_, filtered) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents?filename=HELLO"),
            &admin,
        )
        .await;
    assert_eq!(filtered["data"]["pagination"]["total"], 1);
    let (_, literal) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents?filename=%25"),
            &admin,
        )
        .await;
    assert_eq!(literal["data"]["pagination"]["total"], 0, "% is literal");
    for (bad, code) in [
        ("per_page=0", "invalid_pagination"),
        ("per_page=101", "invalid_pagination"),
        ("page=0", "invalid_pagination"),
        ("page=x", "validation_error"),
        ("sort=name", "validation_error"),
    ] {
        let (status, body) = docs
            .call(
                Method::GET,
                &format!("/api/tenants/{tenant}/documents?{bad}"),
                &admin,
            )
            .await;
        assert_error(status, &body, 400, code);
    }

    let id = first["id"].as_str().expect("id");
    let response = docs.download(&admin, &tenant, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["content-length"], "15");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers["content-disposition"]
        .to_str()
        .expect("ascii")
        .contains("filename*=UTF-8''hello.txt"));
    assert_eq!(
        response.bytes().await.expect("bytes").as_ref(),
        b"hello documents"
    );

    let (status, deleted) = docs
        .call(
            Method::DELETE,
            &format!("/api/tenants/{tenant}/documents/{id}"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(
        deleted["data"]["file_orphaned"], false,
        "the copy still uses the file"
    );
    assert_eq!(docs.s3.objects("documents").len(), 1);
    let copy = second["data"]["id"].as_str().expect("id");
    let (_, deleted) = docs
        .call(
            Method::DELETE,
            &format!("/api/tenants/{tenant}/documents/{copy}"),
            &admin,
        )
        .await;
    assert_eq!(deleted["data"]["file_orphaned"], true);
    assert!(
        docs.s3.objects("documents").is_empty(),
        "the last document took the object with it"
    );
    let (status, body) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents/{copy}"),
            &admin,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn roles_and_tenants_bound_what_a_caller_reaches() {
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[]).await;
    let (admin, _) = docs.auth.session("admin@example.com").await;
    let (viewer, _) = docs.auth.session("viewer@example.com").await;
    let (outsider, _) = docs.auth.session("outsider@example.com").await;
    let tenant = docs.tenant_of(&admin, "Guarded docs").await;
    let other_tenant = docs.tenant_of(&outsider, "Elsewhere").await;
    docs.add_member(&admin, &tenant, &viewer, "viewer").await;
    let (_, uploaded) = docs
        .upload(&admin, &tenant, b"secret".to_vec(), "s.txt")
        .await;
    let id = uploaded["data"]["id"].as_str().expect("id").to_owned();

    let (status, body) = docs
        .upload(&viewer, &tenant, b"nope".to_vec(), "v.txt")
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, _) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents/{id}"),
            &viewer,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "viewers read");
    let (status, body) = docs
        .call(
            Method::DELETE,
            &format!("/api/tenants/{tenant}/documents/{id}"),
            &viewer,
        )
        .await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents"),
            &outsider,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    // A document id of one tenant asked through another tenant is not found.
    let (status, body) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{other_tenant}/documents/{id}"),
            &outsider,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents/not-a-uuid"),
            &admin,
        )
        .await;
    assert_error(status, &body, 400, "validation_error");
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing() {
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[("MAX_UPLOAD_BYTES", "1024")]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Limits").await;
    let (status, body) = docs
        .upload(&admin, &tenant, vec![7u8; 4096], "big.bin")
        .await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = docs.upload(&admin, &tenant, Vec::new(), "empty.txt").await;
    assert_error(status, &body, 400, "validation_error");
    assert!(body["details"]["file"].is_array(), "{body}");
    // A separator, or a character that hides or reverses the name ("a\u{202E}gpj.exe"
    // shows as "aexe.jpg").
    for name in ["a/b.txt", "a\u{202E}gpj.exe", "zero\u{200B}width.txt"] {
        let (status, body) = docs.upload(&admin, &tenant, b"x".to_vec(), name).await;
        assert_error(status, &body, 400, "validation_error");
        assert!(body["details"]["filename"].is_array(), "{name:?}: {body}");
    }
    // Not multipart: 415, nothing read.
    let response = docs
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/documents", docs.documents))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"file": "x"}))
        .send()
        .await
        .expect("send");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        415,
        "unsupported_media_type",
    );
    let response = docs
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/documents", docs.documents))
        .bearer_auth(&admin)
        .multipart(Form::new().text("filename", "no-file.txt"))
        .send()
        .await
        .expect("send");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        400,
        "validation_error",
    );
    assert_eq!(docs.document_total(&admin, &tenant).await, 0);
    assert!(docs.s3.objects("documents").is_empty());

    // S3 goes away: 503, and no document row is left behind.
    docs.s3.stop();
    let (status, body) = docs
        .upload(&admin, &tenant, b"lost".to_vec(), "lost.txt")
        .await;
    assert_error(status, &body, 503, "service_unavailable");
    assert_eq!(docs.document_total(&admin, &tenant).await, 0);
}

#[tokio::test]
async fn concurrent_identical_uploads_store_one_file() {
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Race").await;
    let uploads = (0..4).map(|i| {
        docs.upload(
            &admin,
            &tenant,
            b"same bytes".to_vec(),
            if i % 2 == 0 { "a.txt" } else { "b.txt" },
        )
    });
    let results = futures_util::future::join_all(uploads).await;
    let files: std::collections::HashSet<String> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            body["data"]["file_id"].as_str().expect("file").to_owned()
        })
        .collect();
    assert_eq!(files.len(), 1, "one File");
    assert_eq!(docs.s3.objects("documents").len(), 1, "one object");
    assert_eq!(
        docs.document_total(&admin, &tenant).await,
        4,
        "four Documents"
    );
}

#[tokio::test]
async fn updates_presigned_urls_and_the_files_api() {
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Files").await;
    let (_, uploaded) = docs
        .upload(&admin, &tenant, b"presign me".to_vec(), "p.txt")
        .await;
    let id = uploaded["data"]["id"].as_str().expect("id").to_owned();
    let file_id = uploaded["data"]["file_id"]
        .as_str()
        .expect("file")
        .to_owned();

    let response = docs
        .auth
        .client
        .put(format!(
            "{}/api/tenants/{tenant}/documents/{id}",
            docs.documents
        ))
        .bearer_auth(&admin)
        .json(&json!({"filename": "renamed.txt"}))
        .send()
        .await
        .expect("update");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        (
            body["data"]["filename"].as_str(),
            body["data"]["mime_type"].as_str()
        ),
        (Some("renamed.txt"), Some("text/plain"))
    );
    for bad in [
        json!({}),
        json!({"filename": "a/b"}),
        json!({"mime_type": "nope"}),
        json!({"owner": "x"}),
    ] {
        let response = docs
            .auth
            .client
            .put(format!(
                "{}/api/tenants/{tenant}/documents/{id}",
                docs.documents
            ))
            .bearer_auth(&admin)
            .json(&bad)
            .send()
            .await
            .expect("update");
        let status = response.status();
        assert_error(
            status,
            &response.json().await.expect("json"),
            400,
            "validation_error",
        );
    }

    let (status, url) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents/{id}/download-url?expires_in=120"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{url}");
    let link = url["data"]["download_url"].as_str().expect("url");
    assert!(link.starts_with(&docs.s3.public_endpoint), "{link}");
    assert_eq!(url["data"]["expires_in"], 120);
    assert_eq!(url["data"]["filename"], "renamed.txt");
    let fetched = reqwest::get(link).await.expect("fetch");
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(
        fetched.bytes().await.expect("bytes").as_ref(),
        b"presign me"
    );
    for bad in ["expires_in=59", "expires_in=86401", "expires_in=soon"] {
        let (status, body) = docs
            .call(
                Method::GET,
                &format!("/api/tenants/{tenant}/documents/{id}/download-url?{bad}"),
                &admin,
            )
            .await;
        assert_error(status, &body, 400, "validation_error");
    }
    // Each issuance is recorded for the audit log, in the tenant's own outbox.
    let (_, me) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents/{id}"),
            &admin,
        )
        .await;
    assert_eq!(me["success"], true);
    let database = {
        let response = docs
            .auth
            .client
            .get(format!("{}/api/tenants/{tenant}", docs.tenant))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("tenant");
        let body: Value = response.json().await.expect("json");
        body["data"]["database_name"]
            .as_str()
            .expect("db")
            .to_owned()
    };
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(&ctx.url_of(&database))
        .await
        .expect("tenant db");
    let audits: i64 = events::outbox::outbox::table
        .filter(events::outbox::outbox::topic.eq("audit.events"))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(audits, 1);

    let (status, files) = docs
        .call(
            Method::GET,
            &format!("/api/files/{tenant}/files?include_stats=true"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{files}");
    assert_eq!(files["data"]["stats"]["total_files"], 1);
    assert_eq!(files["data"]["stats"]["total_storage_bytes"], 10);
    let (_, one) = docs
        .call(
            Method::GET,
            &format!("/api/files/{tenant}/files/{file_id}"),
            &admin,
        )
        .await;
    assert_eq!(
        (
            one["data"]["document_count"].as_i64(),
            one["data"]["is_orphaned"].as_bool()
        ),
        (Some(1), Some(false))
    );
    assert_eq!(one["data"]["documents"][0]["filename"], "renamed.txt");
    let (status, body) = docs
        .call(
            Method::DELETE,
            &format!("/api/files/{tenant}/files/{file_id}"),
            &admin,
        )
        .await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = docs
        .call(
            Method::DELETE,
            &format!("/api/files/{tenant}/files/{}", uuid::Uuid::new_v4()),
            &admin,
        )
        .await;
    assert_error(status, &body, 404, "not_found");
}

/// What a role-matrix row does.
#[derive(Debug, Clone, Copy)]
enum Act {
    List,
    Get,
    Upload,
    Update,
    Delete,
    Download,
    DownloadUrl,
    ListFiles,
    GetFile,
    /// Deleting a file that documents still reference: 400 once allowed.
    DeleteFile,
}

/// Whose document a row acts on.
#[derive(Debug, Clone, Copy)]
enum Whose {
    /// The caller's own (uploaded by it just before the row).
    Own,
    /// Another member's (the admin's, or for the admin the user's).
    Other,
}

#[tokio::test]
async fn the_role_matrix_holds_for_every_document_and_file_route() {
    use Act::*;
    use Whose::*;
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[]).await;
    let (admin, _) = docs.auth.session("admin@example.com").await;
    let (user, _) = docs.auth.session("user@example.com").await;
    let (viewer, _) = docs.auth.session("viewer@example.com").await;
    let (outsider, _) = docs.auth.session("outsider@example.com").await;
    let tenant = docs.tenant_of(&admin, "Matrix").await;
    docs.tenant_of(&outsider, "Outside").await;
    docs.add_member(&admin, &tenant, &user, "user").await;
    docs.add_member(&admin, &tenant, &viewer, "viewer").await;

    // One row per cell: role, action, whose document, expected status.
    let rows: &[(&str, Act, Whose, u16)] = &[
        ("admin", List, Other, 200),
        ("admin", Get, Other, 200),
        ("admin", Upload, Own, 201),
        ("admin", Update, Own, 200),
        ("admin", Update, Other, 200),
        ("admin", Delete, Own, 200),
        ("admin", Delete, Other, 200),
        ("admin", Download, Other, 200),
        ("admin", DownloadUrl, Other, 200),
        ("admin", ListFiles, Other, 200),
        ("admin", GetFile, Other, 200),
        ("admin", DeleteFile, Other, 400),
        ("user", List, Other, 200),
        ("user", Get, Other, 200),
        ("user", Upload, Own, 201),
        ("user", Update, Own, 200),
        ("user", Update, Other, 403),
        ("user", Delete, Own, 200),
        ("user", Delete, Other, 403),
        ("user", Download, Other, 200),
        ("user", DownloadUrl, Other, 200),
        ("user", ListFiles, Other, 200),
        ("user", GetFile, Other, 200),
        ("user", DeleteFile, Own, 403),
        ("viewer", List, Other, 200),
        ("viewer", Get, Other, 200),
        ("viewer", Upload, Other, 403),
        ("viewer", Update, Other, 403),
        ("viewer", Delete, Other, 403),
        ("viewer", Download, Other, 200),
        ("viewer", DownloadUrl, Other, 200),
        ("viewer", ListFiles, Other, 200),
        ("viewer", GetFile, Other, 200),
        ("viewer", DeleteFile, Other, 403),
        ("outsider", List, Other, 404),
        ("outsider", Get, Other, 404),
        ("outsider", Upload, Other, 404),
        ("outsider", Update, Other, 404),
        ("outsider", Delete, Other, 404),
        ("outsider", Download, Other, 404),
        ("outsider", DownloadUrl, Other, 404),
        ("outsider", ListFiles, Other, 404),
        ("outsider", GetFile, Other, 404),
        ("outsider", DeleteFile, Other, 404),
    ];
    for (n, &(role, act, whose, expected)) in rows.iter().enumerate() {
        let token = match role {
            "admin" => &admin,
            "user" => &user,
            "viewer" => &viewer,
            _ => &outsider,
        };
        // A fresh document (fresh bytes, so a fresh file) for every row that needs one.
        let owner = match (role, whose) {
            // An upload row acts on no existing document: any will do.
            _ if matches!(act, Upload) => &admin,
            ("admin", Other) => &user,
            (_, Other) => &admin,
            (_, Own) => token,
        };
        let (status, made) = docs
            .upload(owner, &tenant, format!("row {n}").into_bytes(), "row.txt")
            .await;
        assert_eq!(status, StatusCode::CREATED, "row {n}: {made}");
        let id = made["data"]["id"].as_str().expect("id");
        let file = made["data"]["file_id"].as_str().expect("file id");
        let docs_path = format!("/api/tenants/{tenant}/documents");
        let files_path = format!("/api/files/{tenant}/files");
        let (status, body) = match act {
            List => docs.call(Method::GET, &docs_path, token).await,
            Get => {
                docs.call(Method::GET, &format!("{docs_path}/{id}"), token)
                    .await
            }
            Upload => {
                docs.upload(token, &tenant, format!("new {n}").into_bytes(), "new.txt")
                    .await
            }
            Update => {
                let response = docs
                    .auth
                    .client
                    .put(format!("{}{docs_path}/{id}", docs.documents))
                    .bearer_auth(token)
                    .json(&json!({"filename": "renamed.txt"}))
                    .send()
                    .await
                    .expect("update");
                let status = response.status();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Delete => {
                docs.call(Method::DELETE, &format!("{docs_path}/{id}"), token)
                    .await
            }
            Download => {
                let response = docs
                    .auth
                    .client
                    .get(format!("{}{docs_path}/{id}/download", docs.documents))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("download");
                let status = response.status();
                let bytes = response.bytes().await.expect("body");
                if status == StatusCode::OK {
                    assert_eq!(&bytes[..], format!("row {n}").as_bytes(), "row {n}");
                }
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                )
            }
            DownloadUrl => {
                docs.call(
                    Method::GET,
                    &format!("{docs_path}/{id}/download-url"),
                    token,
                )
                .await
            }
            ListFiles => docs.call(Method::GET, &files_path, token).await,
            GetFile => {
                docs.call(Method::GET, &format!("{files_path}/{file}"), token)
                    .await
            }
            DeleteFile => {
                docs.call(Method::DELETE, &format!("{files_path}/{file}"), token)
                    .await
            }
        };
        assert_eq!(
            status.as_u16(),
            expected,
            "row {n}: {role} {act:?} on {whose:?} document: {body}"
        );
        if expected >= 400 {
            let code = match expected {
                400 => "bad_request",
                403 => "forbidden",
                _ => "not_found",
            };
            assert_error(status, &body, expected, code);
        }
        // A refused change changed nothing.
        let (_, after) = docs
            .call(Method::GET, &format!("{docs_path}/{id}"), &admin)
            .await;
        match (act, expected) {
            (Delete, 200) => assert_eq!(after["error"], "not_found", "row {n}: {after}"),
            (Update, 200) => assert_eq!(after["data"]["filename"], "renamed.txt", "row {n}"),
            _ => assert_eq!(after["data"]["filename"], "row.txt", "row {n}: {after}"),
        }
    }
}

#[tokio::test]
async fn s3_dying_in_the_middle_of_an_upload_answers_503_and_the_sweep_cleans_up() {
    let ctx = TestContext::new().await;
    let docs = platform(
        &ctx,
        &[
            ("UPLOAD_PART_BYTES", PART),
            ("UPLOAD_STALE_SECS", "2"),
            ("UPLOAD_SWEEP_EVERY_SECS", "1"),
        ],
    )
    .await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Interrupted").await;

    // The server dies once 6 MiB of the upload's parts have arrived.
    docs.s3.fail_after_receiving(6 * MIB as u64);
    let (status, body) = docs
        .upload(&admin, &tenant, pattern(16 * MIB, 7), "big.bin")
        .await;
    assert!(
        docs.s3.failed(),
        "the parts reached the server and were cut"
    );
    assert_error(status, &body, 503, "service_unavailable");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "the answer does not show internals: {body}"
    );
    for path in [
        format!("/api/tenants/{tenant}/documents"),
        format!("/api/files/{tenant}/files"),
    ] {
        let (status, list) = docs.call(Method::GET, &path, &admin).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["data"]["pagination"]["total"], 0, "{path}: {list}");
    }
    assert!(
        docs.s3.objects("documents").is_empty(),
        "{:?}",
        docs.s3.objects("documents")
    );
    // S3 could not be told to abort: the upload is left on it, and recorded.
    assert!(!docs.s3.upload_leftovers().is_empty());
    assert_eq!(pending_uploads(&ctx, &docs, &admin, &tenant).await, 1);

    // S3 comes back: the sweep aborts the upload and forgets it.
    docs.s3.revive();
    nothing_left_within(&ctx, &docs, &admin, &tenant, Duration::from_secs(30)).await;
    assert!(docs.s3.objects("documents").is_empty());
}

#[tokio::test]
async fn a_stalled_upload_is_refused_and_leaves_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ctx = TestContext::new().await;
    let docs = platform(
        &ctx,
        &[
            ("UPLOAD_PART_BYTES", PART),
            ("UPLOAD_IDLE_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Stalled").await;

    // A client that announces 10 MiB, sends 6 MiB (a part sent to S3), then goes quiet.
    let addr = docs.documents.trim_start_matches("http://").to_owned();
    let boundary = "stalledboundary";
    let part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let declared = part.len() + 10 * 1024 * 1024 + format!("\r\n--{boundary}--\r\n").len();
    let head = format!(
        "POST /api/tenants/{tenant}/documents HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {admin}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {declared}\r\n\r\n{part}"
    );
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    socket.write_all(head.as_bytes()).await.expect("head");
    socket
        .write_all(&vec![b'x'; 6 * 1024 * 1024])
        .await
        .expect("first bytes");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.windows(14).any(|w| w == b"upload stalled") {
                break;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the service answered before the test's deadline"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("upload stalled"), "{answer}");

    assert_eq!(docs.document_total(&admin, &tenant).await, 0);
    assert!(docs.s3.objects("documents").is_empty());
    // The part sent was aborted before the answer: nothing on S3, nothing recorded.
    assert_eq!(docs.s3.upload_leftovers(), Vec::<String>::new());
    assert_eq!(pending_uploads(&ctx, &docs, &admin, &tenant).await, 0);
}

/// Issue 16: a body whose closing boundary arrives before its declared length, and a
/// body with two `file` parts, are refused and store nothing.
#[tokio::test]
async fn short_bodies_and_second_file_parts_are_refused_and_leave_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[("UPLOAD_IDLE_TIMEOUT_SECS", "1")]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Short").await;

    // The whole multipart body, closing boundary included, but 100 bytes fewer than
    // the declared length; the connection stays open.
    let addr = docs.documents.trim_start_matches("http://").to_owned();
    let boundary = "shortboundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"short.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nhello short body\r\n--{boundary}--\r\n"
    );
    let head = format!(
        "POST /api/tenants/{tenant}/documents HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {admin}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len() + 100
    );
    let mut socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    socket.write_all(head.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
            if answer.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the service answered");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("declared length"), "{answer}");

    // A part given twice, 400 naming it: two files (which one to keep?), and a name or a
    // type (issue 16, found by the long schemathesis run). Nothing is stored.
    let once = || Part::bytes(b"once".to_vec()).file_name("once.txt");
    let cases = [
        (
            Form::new()
                .part("file", once())
                .part("file", Part::bytes(b"two".to_vec()).file_name("two.txt")),
            "file",
            "only one file part is allowed",
        ),
        (
            Form::new()
                .part("file", once())
                .text("filename", "a.txt")
                .text("filename", "a.txt"),
            "filename",
            "must be given once",
        ),
        (
            Form::new()
                .part("file", once())
                .text("mime_type", "text/plain")
                .text("mime_type", "text/plain"),
            "mime_type",
            "must be given once",
        ),
        // Refused at the first unknown part: a body of many must not grow the answer
        // (or the service's memory) with each (the attack pass of issue 19).
        (
            (0..2000).fold(Form::new().part("file", once()), |form, i| {
                form.text(format!("x{i}"), "")
            }),
            "x0",
            "unknown field",
        ),
        (
            Form::new()
                .part("file", once())
                .text("filename", "n".repeat(2000)),
            "filename",
            "is too long",
        ),
    ];
    for (form, field, message) in cases {
        let response = docs
            .auth
            .client
            .post(format!("{}/api/tenants/{tenant}/documents", docs.documents))
            .bearer_auth(&admin)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_error(status, &body, 400, "validation_error");
        assert_eq!(body["details"][field][0], message, "{body}");
        assert_eq!(
            body["details"].as_object().map(|d| d.len()),
            Some(1),
            "{body}"
        );
    }

    assert_eq!(docs.document_total(&admin, &tenant).await, 0);
    assert!(docs.s3.objects("documents").is_empty());
}

/// The part size of the multipart tests: S3's smallest, so a few MiB make several parts.
const PART: &str = "5242880";
const MIB: usize = 1024 * 1024;

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(seed.wrapping_add(7)) % 251) as u8)
        .collect()
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tenant's database name, as its admin reads it.
async fn tenant_database(docs: &Docs, admin: &str, tenant: &str) -> String {
    let response = docs
        .auth
        .client
        .get(format!("{}/api/tenants/{tenant}", docs.tenant))
        .bearer_auth(admin)
        .send()
        .await
        .expect("tenant");
    let body: Value = response.json().await.expect("json");
    body["data"]["database_name"]
        .as_str()
        .expect("database name")
        .to_owned()
}

async fn tenant_connection(
    ctx: &TestContext,
    docs: &Docs,
    admin: &str,
    tenant: &str,
) -> diesel_async::AsyncPgConnection {
    use diesel_async::AsyncConnection as _;
    let database = tenant_database(docs, admin, tenant).await;
    diesel_async::AsyncPgConnection::establish(&ctx.url_of(&database))
        .await
        .expect("tenant database")
}

/// Multipart uploads the tenant's database records as in flight.
async fn pending_uploads(ctx: &TestContext, docs: &Docs, admin: &str, tenant: &str) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let mut conn = tenant_connection(ctx, docs, admin, tenant).await;
    tenant_db::schema::pending_uploads::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("count")
}

/// Waits until no part of an unfinished upload is left on S3 and none is recorded.
async fn nothing_left_within(
    ctx: &TestContext,
    docs: &Docs,
    admin: &str,
    tenant: &str,
    within: Duration,
) {
    let cleaned = testkit::wait_until(within, || async {
        docs.s3.upload_leftovers().is_empty()
            && pending_uploads(ctx, docs, admin, tenant).await == 0
    })
    .await;
    assert!(
        cleaned.is_ok(),
        "left on S3: {:?}, recorded: {}",
        docs.s3.upload_leftovers(),
        pending_uploads(ctx, docs, admin, tenant).await
    );
}

/// An upload sent by hand: the head announcing `declared_file_bytes`, then a task
/// writing `file_bytes` of it (the service may stop reading before they are all sent).
struct RawUpload {
    read: tokio::net::tcp::OwnedReadHalf,
    writer: Option<tokio::task::JoinHandle<tokio::net::tcp::OwnedWriteHalf>>,
    write: Option<tokio::net::tcp::OwnedWriteHalf>,
}

async fn raw_upload(
    docs: &Docs,
    token: &str,
    tenant: &str,
    declared_file_bytes: usize,
    file_bytes: usize,
) -> RawUpload {
    use tokio::io::AsyncWriteExt;
    let addr = docs.documents.trim_start_matches("http://").to_owned();
    let boundary = "rawuploadboundary";
    let part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"raw.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let declared = part.len() + declared_file_bytes + format!("\r\n--{boundary}--\r\n").len();
    let head = format!(
        "POST /api/tenants/{tenant}/documents HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {declared}\r\n\r\n{part}"
    );
    let socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (read, mut write) = socket.into_split();
    write.write_all(head.as_bytes()).await.expect("head");
    let body = pattern(file_bytes, 11);
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&body).await;
        write
    });
    RawUpload {
        read,
        writer: Some(writer),
        write: None,
    }
}

impl RawUpload {
    /// Waits until every byte given is written (the connection stays open).
    async fn sent(&mut self) {
        if let Some(writer) = self.writer.take() {
            self.write = Some(writer.await.expect("writer"));
        }
    }

    /// Reads the answer until `until` appears in it, or 30 s pass.
    async fn answer(&mut self, until: &str) -> String {
        use tokio::io::AsyncReadExt;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            let mut buf = [0u8; 4096];
            loop {
                match self.read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
                if String::from_utf8_lossy(&answer).contains(until) {
                    break;
                }
            }
        })
        .await;
        String::from_utf8_lossy(&answer).into_owned()
    }
}

impl Drop for RawUpload {
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.abort();
        }
    }
}

#[tokio::test]
async fn large_uploads_stream_to_s3_in_parts_and_duplicates_store_nothing() {
    use md5::Digest as _;
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[("UPLOAD_PART_BYTES", PART)]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Parts").await;
    let database = tenant_database(&docs, &admin, &tenant).await;

    // Four parts (three whole, one short): the hashes are those of the whole file, the
    // object holds every byte under the File's key.
    let whole = pattern(3 * 5 * MIB + 12_345, 3);
    let (status, stored) = docs
        .upload(&admin, &tenant, whole.clone(), "whole.bin")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let file = &stored["data"]["file"];
    assert_eq!(file["md5_hash"], hex(&md5::Md5::digest(&whole)));
    assert_eq!(file["sha256_hash"], hex(&sha2::Sha256::digest(&whole)));
    assert_eq!(file["file_size"], whole.len());
    let file_id = stored["data"]["file_id"]
        .as_str()
        .expect("file id")
        .to_owned();
    let key = format!("tenants/{database}/files/{}/{file_id}", &file_id[..2]);
    assert_eq!(file["s3_path"], key.as_str());
    assert_eq!(docs.s3.objects("documents"), vec![key.clone()]);
    assert_eq!(docs.s3.upload_leftovers(), Vec::<String>::new());
    assert_eq!(pending_uploads(&ctx, &docs, &admin, &tenant).await, 0);
    let id = stored["data"]["id"].as_str().expect("id");
    let response = docs.download(&admin, &tenant, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.bytes().await.expect("body") == whole,
        "the stored bytes"
    );

    // The same bytes again: its parts went to S3 as they arrived and were aborted once
    // the hash matched; the bucket still holds one object and no part.
    let (status, again) = docs
        .upload(&admin, &tenant, whole.clone(), "again.bin")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["data"]["file_id"], file_id.as_str());
    assert_eq!(docs.s3.objects("documents"), vec![key.clone()]);
    assert_eq!(docs.s3.upload_leftovers(), Vec::<String>::new());
    assert_eq!(pending_uploads(&ctx, &docs, &admin, &tenant).await, 0);

    // Twins: the same new bytes twice at once. One File, one more object, both
    // Documents on it; the loser's completed object (if it got that far) is deleted.
    let twin = pattern(11 * MIB, 5);
    let (a, b) = tokio::join!(
        docs.upload(&admin, &tenant, twin.clone(), "a.bin"),
        docs.upload(&admin, &tenant, twin.clone(), "b.bin")
    );
    assert_eq!(
        (a.0, b.0),
        (StatusCode::CREATED, StatusCode::CREATED),
        "{a:?} {b:?}"
    );
    assert_eq!(a.1["data"]["file_id"], b.1["data"]["file_id"], "one File");
    let twin_key = a.1["data"]["file"]["s3_path"].as_str().expect("key");
    let mut expected = vec![key.clone(), twin_key.to_owned()];
    expected.sort();
    assert_eq!(docs.s3.objects("documents"), expected);
    assert_eq!(docs.s3.upload_leftovers(), Vec::<String>::new());
    assert_eq!(pending_uploads(&ctx, &docs, &admin, &tenant).await, 0);
    assert_eq!(docs.document_total(&admin, &tenant).await, 4);
}

#[tokio::test]
async fn uploads_refused_or_abandoned_midway_leave_no_part_object_or_record() {
    let ctx = TestContext::new().await;
    let docs = platform(
        &ctx,
        &[("UPLOAD_PART_BYTES", PART), ("MAX_UPLOAD_BYTES", "7340032")],
    )
    .await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Midway").await;

    // Over the 7 MiB limit: refused at its 7th MiB, after one part went to S3.
    let mut socket = raw_upload(&docs, &admin, &tenant, 12 * MIB, 12 * MIB).await;
    let answer = socket.answer("payload_too_large").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    drop(socket);
    assert!(docs.s3.objects("documents").is_empty());
    assert_eq!(docs.s3.upload_leftovers(), Vec::<String>::new());
    assert_eq!(pending_uploads(&ctx, &docs, &admin, &tenant).await, 0);

    // A client that leaves after 6 of its announced 7 MiB (a part already on S3).
    let mut socket = raw_upload(&docs, &admin, &tenant, 7 * MIB - 1024, 6 * MIB).await;
    socket.sent().await;
    testkit::wait_until(Duration::from_secs(10), || async {
        !docs.s3.upload_leftovers().is_empty()
    })
    .await
    .expect("the multipart upload started");
    drop(socket);
    nothing_left_within(&ctx, &docs, &admin, &tenant, Duration::from_secs(10)).await;
    assert!(docs.s3.objects("documents").is_empty());
    assert_eq!(docs.document_total(&admin, &tenant).await, 0);
}

#[tokio::test]
async fn uploads_past_the_concurrency_limit_are_told_to_retry() {
    let ctx = TestContext::new().await;
    let docs = platform(
        &ctx,
        &[("UPLOAD_CONCURRENCY", "1"), ("UPLOAD_PART_BYTES", PART)],
    )
    .await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Busy").await;
    // One upload in progress: it sent 6 of its 7 MiB (a part is on S3) and waits.
    let mut socket = raw_upload(&docs, &admin, &tenant, 7 * MIB, 6 * MIB).await;
    socket.sent().await;
    testkit::wait_until(Duration::from_secs(10), || async {
        !docs.s3.upload_leftovers().is_empty()
    })
    .await
    .expect("the first upload is in progress");
    let response = docs
        .auth
        .client
        .post(format!("{}/api/tenants/{tenant}/documents", docs.documents))
        .bearer_auth(&admin)
        .multipart(Form::new().part("file", Part::bytes(b"second".to_vec()).file_name("b.txt")))
        .send()
        .await
        .expect("upload");
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_error(status, &body, 503, "busy");
    assert_eq!(retry.as_deref(), Some("1"));
    // The slot is given back when that upload ends.
    drop(socket);
    let stored = testkit::wait_until(Duration::from_secs(10), || async {
        docs.upload(&admin, &tenant, b"third".to_vec(), "c.txt")
            .await
            .0
            == StatusCode::CREATED
    })
    .await;
    assert!(stored.is_ok(), "an upload is taken again");
    assert_eq!(docs.s3.upload_leftovers(), Vec::<String>::new());
}

#[tokio::test]
async fn uploads_finding_the_memory_budget_held_are_told_to_retry() {
    let ctx = TestContext::new().await;
    let docs = platform(
        &ctx,
        &[
            ("UPLOAD_PART_BYTES", PART),
            ("UPLOAD_BUFFER_BYTES", PART),
            ("UPLOAD_BUFFER_WAIT_MS", "300"),
        ],
    )
    .await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Budget").await;
    // One stalled upload holds the only part buffer (it sent 1 of its 2 MiB).
    let mut socket = raw_upload(&docs, &admin, &tenant, 2 * MIB, MIB).await;
    socket.sent().await;
    let answer = std::cell::RefCell::new(None);
    let refused = testkit::wait_until(Duration::from_secs(10), || async {
        let (status, body) = docs
            .upload(&admin, &tenant, b"small".to_vec(), "s.txt")
            .await;
        let busy = status == StatusCode::SERVICE_UNAVAILABLE;
        *answer.borrow_mut() = Some((status, body));
        busy
    })
    .await;
    let answer = answer.into_inner();
    assert!(refused.is_ok(), "{answer:?}");
    let (status, body) = answer.expect("answer");
    assert_error(status, &body, 503, "busy");
    drop(socket);
    let stored = testkit::wait_until(Duration::from_secs(10), || async {
        docs.upload(&admin, &tenant, b"small".to_vec(), "s.txt")
            .await
            .0
            == StatusCode::CREATED
    })
    .await;
    assert!(
        stored.is_ok(),
        "the buffer is given back when the stalled upload ends"
    );
}

#[tokio::test]
async fn the_sweep_aborts_what_a_dead_instance_left_and_old_keys_still_serve() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use tenant_db::schema::{documents, files, pending_uploads};
    let ctx = TestContext::new().await;
    let docs = platform(
        &ctx,
        &[
            ("UPLOAD_STALE_SECS", "60"),
            ("UPLOAD_SWEEP_EVERY_SECS", "1"),
        ],
    )
    .await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Swept").await;
    let database = tenant_database(&docs, &admin, &tenant).await;
    let (status, kept) = docs
        .upload(&admin, &tenant, b"a stored file".to_vec(), "kept.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{kept}");
    let kept_key = kept["data"]["file"]["s3_path"]
        .as_str()
        .expect("key")
        .to_owned();

    let storage = storage::Storage::new(storage::StorageSettings {
        endpoint_url: docs.s3.endpoint.clone(),
        public_url: docs.s3.public_endpoint.clone(),
        region: "us-east-1".into(),
        bucket: "documents".into(),
        access_key: docs.s3.access_key.clone(),
        secret_key: docs.s3.secret_key.clone(),
        request_timeout: Duration::from_secs(10),
        min_upload_rate: 1024 * 1024,
    })
    .expect("storage");
    let db = domain::TenantDatabaseName::parse(&database).expect("name");
    // What a killed instance leaves: a multipart upload with a part on S3, and one
    // completed whose File row was never written; both recorded an hour ago. And a
    // record of an upload that did become a File (its object must stay).
    let abandoned = storage::object_key(&db, uuid::Uuid::new_v4());
    let id = storage
        .start_multipart(&abandoned, "application/octet-stream")
        .await
        .expect("start");
    storage
        .put_part(&abandoned, &id, 1, bytes::Bytes::from(pattern(5 * MIB, 1)))
        .await
        .expect("part");
    let unrecorded = storage::object_key(&db, uuid::Uuid::new_v4());
    let done = storage
        .start_multipart(&unrecorded, "application/octet-stream")
        .await
        .expect("start");
    let part = storage
        .put_part(&unrecorded, &done, 1, bytes::Bytes::from_static(b"last"))
        .await
        .expect("part");
    storage
        .complete_multipart(&unrecorded, &done, vec![part], 4)
        .await
        .expect("complete");
    // A fresh one (an upload in progress elsewhere) is left alone.
    let fresh = storage::object_key(&db, uuid::Uuid::new_v4());
    let fresh_id = storage
        .start_multipart(&fresh, "application/octet-stream")
        .await
        .expect("start");
    let mut conn = tenant_connection(&ctx, &docs, &admin, &tenant).await;
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    for (key, upload_id, at) in [
        (&abandoned, &id, hour_ago),
        (&unrecorded, &done, hour_ago),
        (&kept_key, &"gone".to_owned(), hour_ago),
        (&fresh, &fresh_id, chrono::Utc::now()),
    ] {
        diesel::insert_into(pending_uploads::table)
            .values((
                pending_uploads::s3_key.eq(key),
                pending_uploads::upload_id.eq(upload_id),
                pending_uploads::started_at.eq(at),
            ))
            .execute(&mut conn)
            .await
            .expect("record");
    }
    let left = || async {
        pending_uploads::table
            .select(pending_uploads::s3_key)
            .load::<String>(&mut tenant_connection(&ctx, &docs, &admin, &tenant).await)
            .await
            .expect("records")
    };
    testkit::wait_until(Duration::from_secs(20), || async {
        left().await == vec![fresh.clone()]
    })
    .await
    .expect("the stale records are swept, the fresh one stays");
    let mut objects = vec![kept_key.clone()];
    objects.sort();
    assert_eq!(
        docs.s3.objects("documents"),
        objects,
        "the unrecorded object is deleted"
    );
    // Only the fresh upload's record is left on S3.
    let leftovers = docs.s3.upload_leftovers();
    assert!(
        leftovers.len() == 1 && leftovers[0].contains(&fresh_id),
        "{leftovers:?}"
    );
    storage
        .abort_multipart(&fresh, &fresh_id)
        .await
        .expect("abort");

    // A File stored before issue 19, under its MD5 key: downloads, presigned URL and
    // deletion work from the key its row records.
    let old_bytes = b"stored before the keys changed".to_vec();
    let md5 = {
        use md5::Digest as _;
        hex(&md5::Md5::digest(&old_bytes))
    };
    let sha = {
        use sha2::Digest as _;
        hex(&sha2::Sha256::digest(&old_bytes))
    };
    let old_file = uuid::Uuid::new_v4();
    let old_key = format!(
        "tenants/{database}/files/{}/{}/{md5}_{old_file}",
        &md5[..2],
        &md5[2..4]
    );
    storage
        .put_bytes(
            &old_key,
            "text/plain",
            bytes::Bytes::from(old_bytes.clone()),
        )
        .await
        .expect("old object");
    diesel::insert_into(files::table)
        .values((
            files::id.eq(old_file),
            files::md5_hash.eq(&md5),
            files::sha256_hash.eq(&sha),
            files::s3_path.eq(&old_key),
            files::file_size.eq(old_bytes.len() as i64),
        ))
        .execute(&mut conn)
        .await
        .expect("old file");
    let old_doc = uuid::Uuid::new_v4();
    let me = docs.auth.get("/api/users/me", Some(&admin)).await.1["data"]["id"]
        .as_str()
        .expect("me")
        .parse::<uuid::Uuid>()
        .expect("uuid");
    diesel::insert_into(documents::table)
        .values((
            documents::id.eq(old_doc),
            documents::filename.eq("old.txt"),
            documents::mime_type.eq("text/plain"),
            documents::file_id.eq(old_file),
            documents::user_id.eq(me),
            documents::created_by.eq(me),
        ))
        .execute(&mut conn)
        .await
        .expect("old document");
    let response = docs.download(&admin, &tenant, &old_doc.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.bytes().await.expect("bytes").as_ref(),
        old_bytes.as_slice()
    );
    let (status, url) = docs
        .call(
            Method::GET,
            &format!("/api/tenants/{tenant}/documents/{old_doc}/download-url"),
            &admin,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{url}");
    let fetched = reqwest::get(url["data"]["download_url"].as_str().expect("url"))
        .await
        .expect("presigned");
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(
        fetched.bytes().await.expect("bytes").as_ref(),
        old_bytes.as_slice()
    );
    // The same bytes uploaded now are deduplicated onto the old File.
    let (status, same) = docs
        .upload(&admin, &tenant, old_bytes.clone(), "again.txt")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{same}");
    assert_eq!(same["data"]["file_id"], old_file.to_string());
    for doc in [
        old_doc.to_string(),
        same["data"]["id"].as_str().expect("id").to_owned(),
    ] {
        let (status, _) = docs
            .call(
                Method::DELETE,
                &format!("/api/tenants/{tenant}/documents/{doc}"),
                &admin,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(docs.s3.objects("documents"), vec![kept_key]);
}

#[tokio::test]
async fn an_md5_collision_is_refused_not_served_as_the_other_file() {
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Collide").await;
    // Two different 128-byte blocks with one MD5 (Wang and Yu's published collision);
    // a common suffix keeps it (MD5 is Merkle-Damgard).
    let block = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let suffix = b"\n-- pay 100 EUR --\n";
    let mut evil = block("d131dd02c5e6eec4693d9a0698aff95c2fcab58712467eab4004583eb8fb7f8955ad340609f4b30283e488832571415a085125e8f7cdc99fd91dbdf280373c5bd8823e3156348f5bae6dacd436c919c6dd53e2b487da03fd02396306d248cda0e99f33420f577ee8ce54b67080a80d1ec69821bcb6a8839396f9652b6ff72a70");
    let mut good = block("d131dd02c5e6eec4693d9a0698aff95c2fcab50712467eab4004583eb8fb7f8955ad340609f4b30283e4888325f1415a085125e8f7cdc99fd91dbd7280373c5bd8823e3156348f5bae6dacd436c919c6dd53e23487da03fd02396306d248cda0e99f33420f577ee8ce54b67080280d1ec69821bcb6a8839396f965ab6ff72a70");
    evil.extend_from_slice(suffix);
    good.extend_from_slice(suffix);
    {
        use md5::Digest as _;
        assert_ne!(evil, good);
        assert_eq!(
            md5::Md5::digest(&evil),
            md5::Md5::digest(&good),
            "a collision"
        );
    }
    let (status, first) = docs.upload(&admin, &tenant, evil.clone(), "evil.bin").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, body) = docs.upload(&admin, &tenant, good.clone(), "good.bin").await;
    assert_error(status, &body, 409, "hash_collision");
    assert_eq!(docs.document_total(&admin, &tenant).await, 1);
    assert_eq!(docs.s3.objects("documents").len(), 1);
    assert_eq!(docs.s3.upload_leftovers(), Vec::<String>::new());
    // The same bytes again are still deduplicated.
    let (status, again) = docs.upload(&admin, &tenant, evil, "again.bin").await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(again["data"]["file_id"], first["data"]["file_id"]);
}

#[tokio::test]
async fn a_client_stalling_inside_a_small_field_is_refused() {
    use tokio::io::AsyncWriteExt;
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[("UPLOAD_IDLE_TIMEOUT_SECS", "1")]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Loris").await;
    let addr = docs.documents.trim_start_matches("http://").to_owned();
    let boundary = "lorisboundary";
    let body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"\r\n\r\nslo");
    let head = format!(
        "POST /api/tenants/{tenant}/documents HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {admin}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: 1000\r\n\r\n{body}"
    );
    let socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (read, mut write) = socket.into_split();
    write.write_all(head.as_bytes()).await.expect("head");
    let mut upload = RawUpload {
        read,
        writer: None,
        write: Some(write),
    };
    let answer = upload.answer("upload stalled").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("upload stalled"), "{answer}");
}

#[tokio::test]
async fn a_duplicate_racing_the_deletion_of_its_file_is_stored_not_lost() {
    let ctx = TestContext::new().await;
    let docs = platform(&ctx, &[]).await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Race").await;
    for round in 0..15 {
        let bytes = format!("raced bytes {round}").into_bytes();
        let (status, first) = docs.upload(&admin, &tenant, bytes.clone(), "a.txt").await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        let first_id = first["data"]["id"].as_str().expect("id").to_owned();
        let path = format!("/api/tenants/{tenant}/documents/{first_id}");
        let delete = docs.call(Method::DELETE, &path, &admin);
        let upload = docs.upload(&admin, &tenant, bytes.clone(), "b.txt");
        let ((deleted, body), (uploaded, second)) = tokio::join!(delete, upload);
        assert_eq!(deleted, StatusCode::OK, "round {round}: {body}");
        assert_eq!(uploaded, StatusCode::CREATED, "round {round}: {second}");
        // The second Document's bytes are there, whichever came first.
        let id = second["data"]["id"].as_str().expect("id");
        let response = docs.download(&admin, &tenant, id).await;
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
        assert_eq!(
            response.bytes().await.expect("bytes").as_ref(),
            bytes.as_slice()
        );
        let (status, _) = docs
            .call(
                Method::DELETE,
                &format!("/api/tenants/{tenant}/documents/{id}"),
                &admin,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    assert!(
        docs.s3.objects("documents").is_empty(),
        "{:?}",
        docs.s3.objects("documents")
    );
}

#[tokio::test]
async fn a_trickling_upload_is_refused_once_past_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let ctx = TestContext::new().await;
    let docs = platform(
        &ctx,
        &[
            ("UPLOAD_IDLE_TIMEOUT_SECS", "1"),
            ("UPLOAD_CLIENT_MIN_RATE", "1048576"),
        ],
    )
    .await;
    let admin = docs.auth.session("admin@example.com").await.0;
    let tenant = docs.tenant_of(&admin, "Trickle").await;
    // 64 KiB every 200 ms: never idle for a second, but about 320 KiB/s, a third of the
    // minimum rate.
    let mut upload = raw_upload(&docs, &admin, &tenant, 8 * MIB, 0).await;
    upload.sent().await;
    let mut write = upload.write.take().expect("write half");
    let trickle = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        for _ in 0..100 {
            every.tick().await;
            if write.write_all(&[b'x'; 64 * 1024]).await.is_err() {
                break;
            }
        }
    });
    let answer = upload.answer("upload too slow").await;
    trickle.abort();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("upload too slow"), "{answer}");
    assert_eq!(docs.document_total(&admin, &tenant).await, 0);
}
