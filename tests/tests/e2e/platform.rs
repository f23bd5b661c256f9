//! The services together: all five side by side; a user's tenants through auth (from
//! the tenant service's internal API); the tenant-role extractor every tenant route
//! uses, over real HTTP to the tenant service.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use domain::{Permission, Role, TenantName, UserId};
use http_kit::identity::{CachedRoles, JwksClient, TenantMember, TokenVerifier, VerifierSettings};
use http_kit::{ApiError, Secret};
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::{service_contract, start_service, TestContext, INTERNAL_TOKEN};

use crate::auth::{assert_error, start as start_auth, Auth};

#[tokio::test]
async fn every_service_runs_side_by_side() {
    let ctx = TestContext::new().await;
    let pem = auth::keys::generate_pem().expect("key");
    let s3 = testkit::TestS3::start().await.expect("s3");
    let bases = [
        (
            start_service::<auth::Service>(&ctx, &[("JWT_PRIVATE_KEY", pem.as_str())]),
            "auth",
        ),
        (start_service::<tenant::Service>(&ctx, &[]), "tenant"),
        (
            start_service::<document::Service>(
                &ctx,
                &[
                    ("S3_ENDPOINT_URL", s3.endpoint.as_str()),
                    ("S3_ACCESS_KEY", s3.access_key.as_str()),
                    ("S3_SECRET_KEY", s3.secret_key.as_str()),
                    ("S3_CREATE_BUCKET", "true"),
                ],
            ),
            "document",
        ),
        (start_service::<sso::Service>(&ctx, &[]), "sso"),
        (
            start_service::<event_worker::Service>(&ctx, &[]),
            "event-worker",
        ),
    ];
    for (base, name) in &bases {
        let ready = base.clone();
        testkit::wait_until(Duration::from_secs(10), || async {
            reqwest::get(format!("{ready}/ready"))
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await
        .expect("ready");
        service_contract::assert_common_endpoints(base, name).await;
    }
}

fn provisioner(ctx: &TestContext) -> tenant::provisioning::Provisioner {
    let env = ctx.service_env();
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = tenant::Settings::read(&mut reader);
    let settings = reader.finish(settings).expect("settings");
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )
    .expect("pool");
    let fleet = tenant::fleet::Fleet::new(db.clone(), settings.tenant_db.clone()).expect("fleet");
    tenant::provisioning::Provisioner::new(db, Arc::new(fleet))
}

async fn user_id(auth: &Auth, access: &str) -> UserId {
    let (_, me) = auth.get("/api/users/me", Some(access)).await;
    UserId::from_uuid(
        me["data"]["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid"),
    )
}

#[tokio::test]
async fn login_and_my_tenants_list_the_active_tenants_with_roles() {
    let ctx = TestContext::new().await;
    let auth = start_auth(&ctx, &[]);
    let (access, _) = auth.session("owner@example.com").await;
    let owner = user_id(&auth, &access).await;
    let provisioner = provisioner(&ctx);
    let first = provisioner
        .provision(TenantName::parse("First").expect("valid"), Some(owner))
        .await
        .expect("tenant");
    let second = provisioner
        .provision(TenantName::parse("Second").expect("valid"), Some(owner))
        .await
        .expect("tenant");
    let gone = provisioner
        .provision(TenantName::parse("Gone").expect("valid"), Some(owner))
        .await
        .expect("tenant");
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    diesel::update(main_db::schema::tenants::table.find(gone.id))
        .set((
            main_db::schema::tenants::is_active.eq(false),
            main_db::schema::tenants::status.eq("deleted"),
        ))
        .execute(&mut conn)
        .await
        .expect("deactivate");

    let (status, body) = auth
        .post(
            "/api/auth/login",
            json!({"email": "owner@example.com", "password": "correct horse 1"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tenants = body["tenants"].as_array().expect("tenants");
    assert_eq!(tenants.len(), 2, "active tenants only: {body}");
    assert_eq!(
        tenants[0],
        json!({"id": second.id, "name": "Second", "database_name": second.database_name, "role": "admin"})
    );
    assert_eq!(tenants[1]["id"], json!(first.id));

    let (status, mine) = auth.get("/api/users/me/tenants", Some(&access)).await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["success"], true);
    let listed = mine["data"].as_array().expect("list");
    assert_eq!(listed.len(), 2);
    let entry = &listed[0];
    for field in [
        "id",
        "name",
        "database_name",
        "is_active",
        "status",
        "auth_method",
        "sso_domain_whitelist",
        "sso_auto_provisioning",
        "sso_default_role",
        "created_at",
        "updated_at",
        "created_by",
        "role",
        "joined_at",
    ] {
        assert!(entry.get(field).is_some(), "{field} missing: {entry}");
    }
    assert_eq!(
        (entry["status"].as_str(), entry["role"].as_str()),
        (Some("active"), Some("admin"))
    );
    assert_eq!(entry["created_by"], json!(owner));
    assert!(
        entry["joined_at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+00:00")),
        "{entry}"
    );
}

#[tokio::test]
async fn the_tenant_service_being_down_is_a_503_not_an_empty_list() {
    let ctx = TestContext::new().await;
    let auth = start_auth(
        &ctx,
        &[
            ("TENANT_SERVICE_URL", "http://127.0.0.1:9"),
            ("SERVICE_CALL_TIMEOUT_MS", "500"),
        ],
    );
    auth.register("lone@example.com").await;
    let (status, body) = auth
        .post(
            "/api/auth/login",
            json!({"email": "lone@example.com", "password": "correct horse 1"}),
            None,
        )
        .await;
    assert_error(status, &body, 503, "service_unavailable");
}

async fn probe(member: TenantMember) -> Result<HttpResponse, ApiError> {
    member.require(Permission::UpdateTenant)?;
    Ok(HttpResponse::Ok().json(json!({"tenant": member.tenant_id, "role": member.role})))
}

/// A service route guarded by `TenantMember`, verifying tokens through auth's JWKS and
/// asking the tenant service at `tenant_url` for roles.
fn guarded_app(ctx: &TestContext, auth: &Auth, tenant_url: &str) -> String {
    let keys = JwksClient::new(
        format!("{}/.well-known/jwks.json", auth.base),
        Duration::from_secs(2),
        Duration::from_secs(5),
    )
    .expect("jwks");
    let redis = cache::connect(&ctx.redis_url, Duration::from_secs(1)).expect("redis");
    let verifier = web::Data::new(TokenVerifier::new(
        Arc::new(keys),
        cache::Revocations::new(
            redis,
            cache::Keys::new(ctx.redis_prefix.clone()),
            Duration::from_secs(1),
        ),
        &VerifierSettings {
            issuer: "saas-platform".into(),
            audience: "saas-platform".into(),
            leeway_secs: 30,
        },
    ));
    let client = clients::TenantClient::new(
        testkit::internal_url(tenant_url),
        Secret::new(INTERNAL_TOKEN.to_owned()),
        Duration::from_millis(500),
    )
    .expect("client");
    let roles = web::Data::new(CachedRoles::new(
        Arc::new(client),
        Duration::from_secs(30),
        1000,
    ));
    let env = ctx.service_env();
    let mut reader = http_kit::ConfigReader::new(&env);
    let common = http_kit::CommonSettings::read(&mut reader, 1);
    let common = reader.finish(common).expect("settings");
    let (listener, base) = testkit::free_listeners();
    let info = http_kit::ServiceInfo {
        name: "guarded",
        version: "0.0.0",
    };
    let doc = utoipa::openapi::OpenApiBuilder::new().build();
    let server = http_kit::server::start_service(info, &common, [], doc, listener, move |cfg| {
        cfg.app_data(verifier.clone())
            .app_data(roles.clone())
            .route("/t/{tenant_id}/probe", web::get().to(probe));
    })
    .expect("start");
    tokio::spawn(server);
    base
}

#[tokio::test]
async fn tenant_routes_know_the_callers_role_and_hide_tenants_from_outsiders() {
    let ctx = TestContext::new().await;
    let auth = start_auth(&ctx, &[]);
    let tenant_url = start_service::<tenant::Service>(&ctx, &[]);
    let (admin_token, _) = auth.session("admin@example.com").await;
    let (viewer_token, _) = auth.session("viewer@example.com").await;
    let (outsider_token, _) = auth.session("outsider@example.com").await;
    let admin = user_id(&auth, &admin_token).await;
    let viewer = user_id(&auth, &viewer_token).await;
    let tenant = provisioner(&ctx)
        .provision(TenantName::parse("Guarded").expect("valid"), Some(admin))
        .await
        .expect("tenant");
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    tenant::store::memberships::insert(&mut conn, viewer, tenant.tenant_id(), Role::Viewer)
        .await
        .expect("viewer");

    let app = guarded_app(&ctx, &auth, &tenant_url);
    let client = reqwest::Client::new();
    let call = |token: &str, tenant: String| {
        let request = client
            .get(format!("{app}/t/{tenant}/probe"))
            .bearer_auth(token.to_owned());
        async move {
            let response = request.send().await.expect("send");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let id = tenant.id.to_string();
    let (status, body) = call(&admin_token, id.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["role"], "admin");
    let (status, body) = call(&viewer_token, id.clone()).await;
    assert_error(status, &body, 403, "forbidden");
    let (status, body) = call(&outsider_token, id.clone()).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = call(&admin_token, uuid::Uuid::new_v4().to_string()).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = call(&admin_token, "not-a-uuid".to_owned()).await;
    assert_error(status, &body, 400, "validation_error");
    let (status, body) = call("garbage", id.clone()).await;
    assert_error(status, &body, 401, "invalid_token");

    // Without the tenant service, membership cannot be known: 503, never a pass.
    let blind = guarded_app(&ctx, &auth, "http://127.0.0.1:9");
    let response = client
        .get(format!("{blind}/t/{id}/probe"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("send");
    let status = response.status();
    assert_error(
        status,
        &response.json().await.expect("json"),
        503,
        "service_unavailable",
    );
}
