//! The tenant API through HTTP, with auth beside it: creating (a real database),
//! listing, reading with members, renaming, members and roles with the last-admin rule,
//! deactivating and purging, the per-user limit, and retrying a failed provisioning.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use main_db::schema::outbox;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::TestContext;

use crate::auth::{assert_error, start_with, Auth};

async fn call(
    auth: &Auth,
    method: Method,
    url: &str,
    body: Option<Value>,
    token: &str,
) -> (StatusCode, Value) {
    let mut request = auth.client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

struct Users {
    admin: (String, String),
    other: (String, String),
    outsider: String,
}

async fn users(auth: &Auth) -> Users {
    let admin = auth.session("admin@example.com").await.0;
    let other = auth.session("other@example.com").await.0;
    let outsider = auth.session("outsider@example.com").await.0;
    let id = |token: String| async move {
        let (_, me) = auth.get("/api/users/me", Some(&token)).await;
        (token, me["data"]["id"].as_str().expect("id").to_owned())
    };
    Users {
        admin: id(admin).await,
        other: id(other).await,
        outsider,
    }
}

async fn create(auth: &Auth, tenant: &str, token: &str, name: &str) -> Value {
    let (status, body) = call(
        auth,
        Method::POST,
        &format!("{tenant}/api/tenants"),
        Some(json!({"name": name})),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["data"].clone()
}

#[tokio::test]
async fn tenants_are_created_listed_read_and_renamed() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let u = users(&auth).await;
    let (admin, admin_id) = (&u.admin.0, &u.admin.1);
    let created = create(&auth, &tenant, admin, "  Acme Corp  ").await;
    assert_eq!(created["name"], "Acme Corp");
    assert_eq!(
        (created["status"].as_str(), created["role"].as_str()),
        (Some("active"), Some("admin"))
    );
    assert_eq!(created["is_active"], true);
    assert_eq!(created["created_by"], admin_id.as_str());
    let id = created["id"].as_str().expect("id").to_owned();
    let database = created["database_name"].as_str().expect("db").to_owned();
    assert!(database.starts_with("tenant_acme_corp_"), "{database}");
    let exists = {
        let mut conn = AsyncPgConnection::establish(&ctx.main_url)
            .await
            .expect("connect");
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{database}')"
        )))
        .get_result::<bool>(&mut conn)
        .await
        .expect("query")
    };
    assert!(exists, "the database exists when 201 is sent");

    let (status, list) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants"),
        None,
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["role"], "admin");

    let (status, one) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{id}"),
        None,
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let members = one["data"]["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["email"], "admin@example.com");
    assert_eq!(members[0]["role"], "admin");
    assert!(members[0]["joined_at"]
        .as_str()
        .is_some_and(|t| t.ends_with("+00:00")));

    let (status, renamed) = call(
        &auth,
        Method::PUT,
        &format!("{tenant}/api/tenants/{id}"),
        Some(json!({"name": "Acme Inc"})),
        admin,
    )
    .await;
    assert_eq!(
        (status, renamed["data"]["name"].as_str()),
        (StatusCode::OK, Some("Acme Inc"))
    );
    for (body, field) in [
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(256)}), "name"),
        (
            json!({"name": "ok", "database_name": "tenant_evil_00000000"}),
            "database_name",
        ),
    ] {
        let (status, reply) = call(
            &auth,
            Method::PUT,
            &format!("{tenant}/api/tenants/{id}"),
            Some(body),
            admin,
        )
        .await;
        assert_error(status, &reply, 400, "validation_error");
        assert!(reply["details"][field].is_array(), "{reply}");
    }
    let (status, reply) = call(
        &auth,
        Method::POST,
        &format!("{tenant}/api/tenants"),
        Some(json!({})),
        admin,
    )
    .await;
    assert_error(status, &reply, 400, "validation_error");
    let (status, reply) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/not-a-uuid"),
        None,
        admin,
    )
    .await;
    assert_error(status, &reply, 400, "validation_error");
    let (status, reply) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{id}"),
        None,
        &u.outsider,
    )
    .await;
    assert_error(status, &reply, 404, "not_found");
    let (status, reply) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants"),
        None,
        "garbage",
    )
    .await;
    assert_error(status, &reply, 401, "invalid_token");

    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let topics: Vec<String> = outbox::table
        .select(outbox::topic)
        .filter(outbox::topic.eq("tenant.created"))
        .load(&mut conn)
        .await
        .expect("outbox");
    assert_eq!(topics.len(), 1);
}

#[tokio::test]
async fn members_and_roles_follow_the_rules() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let u = users(&auth).await;
    let (admin, admin_id) = (&u.admin.0, &u.admin.1);
    let (other, other_id) = (&u.other.0, &u.other.1);
    let id = create(&auth, &tenant, admin, "Members").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let users_url = format!("{tenant}/api/tenants/{id}/users");

    let (status, added) = call(
        &auth,
        Method::POST,
        &users_url,
        Some(json!({"user_id": other_id, "role": "viewer"})),
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["data"]["role"], "viewer");
    assert_eq!(added["data"]["tenant_id"], id.as_str());
    let (status, reply) = call(
        &auth,
        Method::POST,
        &users_url,
        Some(json!({"user_id": other_id, "role": "user"})),
        admin,
    )
    .await;
    assert_error(status, &reply, 409, "conflict");
    let (status, reply) = call(
        &auth,
        Method::POST,
        &users_url,
        Some(json!({"user_id": uuid::Uuid::new_v4(), "role": "user"})),
        admin,
    )
    .await;
    assert_error(status, &reply, 404, "not_found");
    for role in ["Admin", "owner", ""] {
        let (status, reply) = call(
            &auth,
            Method::POST,
            &users_url,
            Some(json!({"user_id": other_id, "role": role})),
            admin,
        )
        .await;
        assert_error(status, &reply, 400, "validation_error");
    }

    // The viewer reads but does not manage.
    let (status, seen) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{id}"),
        None,
        other,
    )
    .await;
    assert_eq!(
        (status, seen["data"]["role"].as_str()),
        (StatusCode::OK, Some("viewer"))
    );
    let (status, reply) = call(
        &auth,
        Method::PUT,
        &format!("{tenant}/api/tenants/{id}"),
        Some(json!({"name": "x"})),
        other,
    )
    .await;
    assert_error(status, &reply, 403, "forbidden");
    let (status, reply) = call(
        &auth,
        Method::DELETE,
        &format!("{users_url}/{admin_id}"),
        None,
        other,
    )
    .await;
    assert_error(status, &reply, 403, "forbidden");

    let (status, reply) = call(
        &auth,
        Method::PUT,
        &format!("{users_url}/{admin_id}"),
        Some(json!({"role": "user"})),
        admin,
    )
    .await;
    assert_error(status, &reply, 400, "bad_request");
    let (status, reply) = call(
        &auth,
        Method::DELETE,
        &format!("{users_url}/{admin_id}"),
        None,
        admin,
    )
    .await;
    assert_error(status, &reply, 400, "bad_request");

    let (status, promoted) = call(
        &auth,
        Method::PUT,
        &format!("{users_url}/{other_id}"),
        Some(json!({"role": "admin"})),
        admin,
    )
    .await;
    assert_eq!(
        (status, promoted["data"]["role"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
    // Two admins now: one may step down.
    let (status, _) = call(
        &auth,
        Method::PUT,
        &format!("{users_url}/{admin_id}"),
        Some(json!({"role": "viewer"})),
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = call(
        &auth,
        Method::DELETE,
        &format!("{users_url}/{other_id}"),
        None,
        other,
    )
    .await;
    assert_error(status, &reply, 400, "bad_request");
    let (status, _) = call(
        &auth,
        Method::DELETE,
        &format!("{users_url}/{admin_id}"),
        None,
        other,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{id}"),
        None,
        admin,
    )
    .await;
    assert_error(status, &reply, 404, "not_found");

    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let changes: i64 = outbox::table
        .filter(outbox::topic.eq("membership.changed"))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(changes, 4, "added, promoted, stepped down, removed");
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let u = users(&auth).await;
    let (a, a_id) = (&u.admin.0, &u.admin.1);
    let (b, b_id) = (&u.other.0, &u.other.1);
    for _ in 0..3 {
        let id = create(&auth, &tenant, a, "Duel").await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let users_url = format!("{tenant}/api/tenants/{id}/users");
        let (status, _) = call(
            &auth,
            Method::POST,
            &users_url,
            Some(json!({"user_id": b_id, "role": "admin"})),
            a,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
        let (demote_b, demote_a) = (format!("{users_url}/{b_id}"), format!("{users_url}/{a_id}"));
        let (first, second) = tokio::join!(
            call(
                &auth,
                Method::PUT,
                &demote_b,
                Some(json!({"role": "viewer"})),
                a
            ),
            call(
                &auth,
                Method::PUT,
                &demote_a,
                Some(json!({"role": "viewer"})),
                b
            ),
        );
        let wins = [&first, &second]
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .count();
        assert_eq!(wins, 1, "{first:?} {second:?}");
        let mut conn = AsyncPgConnection::establish(&ctx.main_url)
            .await
            .expect("connect");
        let admins: i64 = main_db::schema::user_tenant_associations::table
            .filter(
                main_db::schema::user_tenant_associations::tenant_id
                    .eq(uuid::Uuid::parse_str(&id).expect("uuid")),
            )
            .filter(main_db::schema::user_tenant_associations::role.eq("admin"))
            .count()
            .get_result(&mut conn)
            .await
            .expect("count");
        assert_eq!(admins, 1);
    }
}

#[tokio::test]
async fn ten_members_added_at_once_all_join() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let admin = auth.session("admin@example.com").await.0;
    let id = create(&auth, &tenant, &admin, "Crowd").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut ids = Vec::new();
    for i in 0..10 {
        let body = auth.register(&format!("m{i}@example.com")).await;
        ids.push(body["user"]["id"].as_str().expect("id").to_owned());
    }
    let url = format!("{tenant}/api/tenants/{id}/users");
    let adds = ids.iter().map(|user| {
        call(
            &auth,
            Method::POST,
            &url,
            Some(json!({"user_id": user, "role": "user"})),
            &admin,
        )
    });
    for (status, body) in futures_util::future::join_all(adds).await {
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, one) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{id}"),
        None,
        &admin,
    )
    .await;
    assert_eq!(one["data"]["members"].as_array().map(Vec::len), Some(11));
}

#[tokio::test]
async fn deleting_deactivates_and_purging_drops_the_database() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(
        &ctx,
        &[("LOGIN_RATE_LIMIT_PER_ACCOUNT", "100")],
        &[("TENANT_LIMIT_PER_USER", "2")],
    );
    let admin = auth.session("admin@example.com").await.0;
    let kept = create(&auth, &tenant, &admin, "Kept").await;
    let purged = create(&auth, &tenant, &admin, "Purged").await;
    let (status, reply) = call(
        &auth,
        Method::POST,
        &format!("{tenant}/api/tenants"),
        Some(json!({"name": "Third"})),
        &admin,
    )
    .await;
    assert_error(status, &reply, 403, "forbidden");

    let kept_id = kept["id"].as_str().expect("id");
    let (status, body) = call(
        &auth,
        Method::DELETE,
        &format!("{tenant}/api/tenants/{kept_id}"),
        None,
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["hard_delete"], false);
    let (status, reply) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{kept_id}"),
        None,
        &admin,
    )
    .await;
    assert_error(status, &reply, 404, "not_found");
    let purged_id = purged["id"].as_str().expect("id");
    let (status, body) = call(
        &auth,
        Method::DELETE,
        &format!("{tenant}/api/tenants/{purged_id}?purge=true"),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        (status, body["data"]["hard_delete"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (_, list) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants"),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        list["data"].as_array().map(Vec::len),
        Some(0),
        "deactivated tenants disappear from lists"
    );

    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let exists = |db: String| {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = '{db}')"
        )))
    };
    let kept_db = kept["database_name"].as_str().expect("db").to_owned();
    let purged_db = purged["database_name"].as_str().expect("db").to_owned();
    assert!(
        exists(kept_db)
            .get_result::<bool>(&mut conn)
            .await
            .expect("query"),
        "a deactivated tenant keeps its database"
    );
    assert!(
        !exists(purged_db)
            .get_result::<bool>(&mut conn)
            .await
            .expect("query"),
        "a purged tenant's database is gone"
    );
    let payloads: Vec<Value> = outbox::table
        .filter(outbox::topic.eq("tenant.deleted"))
        .select(outbox::payload)
        .load(&mut conn)
        .await
        .expect("outbox");
    let hard: Vec<bool> = payloads
        .iter()
        .map(|p| p["data"]["hard_delete"].as_bool().expect("flag"))
        .collect();
    assert_eq!(hard.len(), 2);
    assert!(hard.contains(&true) && hard.contains(&false));
    // Deleted tenants no longer count against the creation limit.
    create(&auth, &tenant, &admin, "Third").await;
}

#[tokio::test]
async fn a_failed_provisioning_answers_503_and_is_retried_by_an_admin() {
    let ctx = TestContext::new().await;
    let template = format!("{}_late", ctx.tenant_template);
    ctx.track_database(&template);
    let (auth, tenant) = start_with(&ctx, &[], &[("TENANT_TEMPLATE_DATABASE", &template)]);
    let admin = auth.session("admin@example.com").await.0;
    let (status, reply) = call(
        &auth,
        Method::POST,
        &format!("{tenant}/api/tenants"),
        Some(json!({"name": "Late"})),
        &admin,
    )
    .await;
    assert_error(status, &reply, 503, "service_unavailable");
    let message = reply["message"].as_str().expect("message");
    let id = message
        .split_whitespace()
        .nth(2)
        .expect("tenant id in the message")
        .to_owned();
    let (status, failed) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{id}"),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        (status, failed["data"]["status"].as_str()),
        (StatusCode::OK, Some("failed")),
        "{failed}"
    );

    let mut settings = tenant_db::TenantDbSettings::new(ctx.main_url.clone(), template);
    settings.timeout = Duration::from_secs(5);
    tenant_db::TenantDatabaseManager::new(settings)
        .expect("manager")
        .ensure_template()
        .await
        .expect("template");
    let (status, body) = call(
        &auth,
        Method::POST,
        &format!("{tenant}/api/tenants/{id}/retry"),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{body}"
    );
    let (status, reply) = call(
        &auth,
        Method::POST,
        &format!("{tenant}/api/tenants/{id}/retry"),
        None,
        &admin,
    )
    .await;
    assert_error(status, &reply, 400, "bad_request");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    Outsider,
    Viewer,
    User,
    Admin,
}

/// Every tenant route × every kind of caller, one row per cell. Within a route the
/// admin comes last (its call succeeds and may change state); the tenant's deletion is
/// the last route.
const MATRIX: &[(&str, Caller, u16)] = &[
    ("GET /api/tenants/{id}", Caller::Outsider, 404),
    ("GET /api/tenants/{id}", Caller::Viewer, 200),
    ("GET /api/tenants/{id}", Caller::User, 200),
    ("GET /api/tenants/{id}", Caller::Admin, 200),
    ("PUT /api/tenants/{id}", Caller::Outsider, 404),
    ("PUT /api/tenants/{id}", Caller::Viewer, 403),
    ("PUT /api/tenants/{id}", Caller::User, 403),
    ("PUT /api/tenants/{id}", Caller::Admin, 200),
    ("POST /api/tenants/{id}/retry", Caller::Outsider, 404),
    ("POST /api/tenants/{id}/retry", Caller::Viewer, 403),
    ("POST /api/tenants/{id}/retry", Caller::User, 403),
    ("POST /api/tenants/{id}/retry", Caller::Admin, 400),
    ("POST /api/tenants/{id}/users", Caller::Outsider, 404),
    ("POST /api/tenants/{id}/users", Caller::Viewer, 403),
    ("POST /api/tenants/{id}/users", Caller::User, 403),
    ("POST /api/tenants/{id}/users", Caller::Admin, 201),
    (
        "PUT /api/tenants/{id}/users/{member}",
        Caller::Outsider,
        404,
    ),
    ("PUT /api/tenants/{id}/users/{member}", Caller::Viewer, 403),
    ("PUT /api/tenants/{id}/users/{member}", Caller::User, 403),
    ("PUT /api/tenants/{id}/users/{member}", Caller::Admin, 200),
    (
        "DELETE /api/tenants/{id}/users/{member}",
        Caller::Outsider,
        404,
    ),
    (
        "DELETE /api/tenants/{id}/users/{member}",
        Caller::Viewer,
        403,
    ),
    ("DELETE /api/tenants/{id}/users/{member}", Caller::User, 403),
    (
        "DELETE /api/tenants/{id}/users/{member}",
        Caller::Admin,
        200,
    ),
    ("DELETE /api/tenants/{id}", Caller::Outsider, 404),
    ("DELETE /api/tenants/{id}", Caller::Viewer, 403),
    ("DELETE /api/tenants/{id}", Caller::User, 403),
    ("DELETE /api/tenants/{id}", Caller::Admin, 200),
];

#[tokio::test]
async fn cross_tenant_matrix() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let mut tokens = std::collections::HashMap::new();
    let mut ids = std::collections::HashMap::new();
    for (caller, email) in [
        (Caller::Outsider, "outsider@example.com"),
        (Caller::Viewer, "viewer@example.com"),
        (Caller::User, "user@example.com"),
        (Caller::Admin, "admin@example.com"),
    ] {
        let token = auth.session(email).await.0;
        let (_, me) = auth.get("/api/users/me", Some(&token)).await;
        ids.insert(caller, me["data"]["id"].as_str().expect("id").to_owned());
        tokens.insert(caller, token);
    }
    let newcomer = auth.register("newcomer@example.com").await["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let member = auth.register("member@example.com").await["user"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let admin = &tokens[&Caller::Admin];
    // The outsider has a tenant of its own: being someone's admin grants nothing elsewhere.
    create(&auth, &tenant, &tokens[&Caller::Outsider], "Elsewhere").await;
    let id = create(&auth, &tenant, admin, "Matrix").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (caller, role) in [(Caller::Viewer, "viewer"), (Caller::User, "user")] {
        let (status, _) = call(
            &auth,
            Method::POST,
            &format!("{tenant}/api/tenants/{id}/users"),
            Some(json!({"user_id": ids[&caller], "role": role})),
            admin,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = call(
        &auth,
        Method::POST,
        &format!("{tenant}/api/tenants/{id}/users"),
        Some(json!({"user_id": member, "role": "viewer"})),
        admin,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    for (route, caller, expected) in MATRIX {
        let (method, path) = route.split_once(' ').expect("method and path");
        let path = path.replace("{id}", &id).replace("{member}", &member);
        let body = match *route {
            "PUT /api/tenants/{id}" => Some(json!({"name": "Matrix renamed"})),
            "POST /api/tenants/{id}/users" => Some(json!({"user_id": newcomer, "role": "user"})),
            "PUT /api/tenants/{id}/users/{member}" => Some(json!({"role": "user"})),
            _ => None,
        };
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, reply) = call(
            &auth,
            method,
            &format!("{tenant}{path}"),
            body,
            &tokens[caller],
        )
        .await;
        assert_eq!(status.as_u16(), *expected, "{route} as {caller:?}: {reply}");
        if *expected >= 400 {
            assert_eq!(reply["success"], false, "{route} as {caller:?}: {reply}");
        }
    }
}

#[tokio::test]
async fn the_internal_api_sets_memberships_for_sso() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let admin = auth.session("admin@example.com").await.0;
    let (_, me) = auth.get("/api/users/me", Some(&admin)).await;
    let admin_id: domain::UserId = me["data"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let joiner: domain::UserId = auth.register("joiner@example.com").await["user"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let id: domain::TenantId = create(&auth, &tenant, &admin, "Sso").await["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");

    let url = format!(
        "{}/internal/v1/tenants/{id}/members/{joiner}",
        testkit::internal_url(&tenant)
    );
    let (status, reply) = call(
        &auth,
        Method::PUT,
        &url,
        Some(json!({"role": "user"})),
        "not-the-token",
    )
    .await;
    assert_error(status, &reply, 401, "unauthorized");

    let client = clients::TenantClient::new(
        testkit::internal_url(&tenant),
        http_kit::Secret::new(testkit::INTERNAL_TOKEN.to_owned()),
        Duration::from_secs(2),
    )
    .expect("client");
    let set = client
        .set_membership(id, joiner, domain::Role::User)
        .await
        .expect("call")
        .expect("set");
    assert_eq!(set.role, domain::Role::User);
    let set = client
        .set_membership(id, joiner, domain::Role::Viewer)
        .await
        .expect("call")
        .expect("set");
    assert_eq!(set.role, domain::Role::Viewer);
    assert_eq!(
        client
            .membership(id, joiner)
            .await
            .expect("call")
            .map(|m| m.role),
        Some(domain::Role::Viewer)
    );
    let err = client
        .set_membership(id, admin_id, domain::Role::Viewer)
        .await
        .expect_err("last admin");
    assert!(
        matches!(err, clients::ClientError::Status { status: 400, .. }),
        "{err:?}"
    );
    assert!(client
        .set_membership(id, domain::UserId::new(), domain::Role::User)
        .await
        .expect("call")
        .is_none());
    assert!(client
        .set_membership(domain::TenantId::new(), joiner, domain::Role::User)
        .await
        .expect("call")
        .is_none());

    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    let changes: i64 = outbox::table
        .filter(outbox::topic.eq("membership.changed"))
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(changes, 2);
}

fn tenant_settings(ctx: &TestContext, auth: &Auth) -> tenant::Settings {
    let mut env = ctx.service_env();
    env.insert("AUTH_SERVICE_URL".into(), testkit::internal_url(&auth.base));
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = tenant::Settings::read(&mut reader);
    reader.finish(settings).expect("settings")
}

#[tokio::test]
async fn init_creates_the_admin_and_a_test_tenant_once() {
    let ctx = TestContext::new().await;
    // The address init calls from has used up its public registrations: init goes
    // through the internal API, which they do not limit.
    let (auth, tenant) = start_with(&ctx, &[("REGISTER_RATE_LIMIT_PER_IP", "1/1h")], &[]);
    for (email, expected) in [("early@example.com", 201), ("late@example.com", 429)] {
        let (status, body) = auth
            .post(
                "/api/auth/register",
                json!({"email": email, "password": "a fine password 1", "first_name": "A", "last_name": "B"}),
                None,
            )
            .await;
        assert_eq!(status.as_u16(), expected, "{body}");
    }
    let settings = tenant_settings(&ctx, &auth);
    let init = tenant::commands::InitSettings {
        admin_email: "root@example.com".into(),
        admin_password: None,
        test_tenant_name: "Test Tenant".into(),
    };
    let args = tenant::commands::InitArgs {
        create_admin: true,
        create_test_tenant: true,
    };
    let mut first = Vec::new();
    tenant::commands::init(&settings, &init, &args, |l| first.push(l.to_owned()))
        .await
        .expect("init");
    assert!(first[0].contains("created"), "{first:?}");
    let password = first
        .iter()
        .find_map(|l| l.strip_prefix("admin password (shown once, store it now): "))
        .expect("the generated password is printed")
        .to_owned();
    assert!(
        first
            .iter()
            .any(|l| l.starts_with("test tenant") && l.contains("created")),
        "{first:?}"
    );

    let mut second = Vec::new();
    tenant::commands::init(&settings, &init, &args, |l| second.push(l.to_owned()))
        .await
        .expect("init again");
    assert!(second.iter().all(|l| l.contains("unchanged")), "{second:?}");
    assert!(
        !second.iter().any(|l| l.contains(&password)),
        "the password is shown once"
    );
    // A password the rules refuse is named, not a bare status.
    let weak = tenant::commands::InitSettings {
        admin_email: "weak@example.com".into(),
        admin_password: Some(http_kit::config::Secret::new("short".to_owned())),
        test_tenant_name: "Test Tenant".into(),
    };
    let err = tenant::commands::init(&settings, &weak, &args, |_| {})
        .await
        .expect_err("a weak password");
    assert!(err.to_string().contains("password"), "{err}");

    let (status, body) = auth
        .post(
            "/api/auth/login",
            json!({"email": "root@example.com", "password": password}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenants"][0]["name"], "Test Tenant");
    assert_eq!(body["tenants"][0]["role"], "admin");
    let token = body["access_token"].as_str().expect("token");
    let (_, list) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants"),
        None,
        token,
    )
    .await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_deactivated_tenant_is_reactivated_by_the_cli_but_not_a_purged_one() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let settings = tenant_settings(&ctx, &auth);
    let admin = auth.session("admin@example.com").await.0;
    let kept = create(&auth, &tenant, &admin, "Back").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let gone = create(&auth, &tenant, &admin, "Gone").await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    call(
        &auth,
        Method::DELETE,
        &format!("{tenant}/api/tenants/{kept}"),
        None,
        &admin,
    )
    .await;
    call(
        &auth,
        Method::DELETE,
        &format!("{tenant}/api/tenants/{gone}?purge=true"),
        None,
        &admin,
    )
    .await;

    let mut lines = Vec::new();
    tenant::commands::reactivate(&settings, kept.parse().expect("id"), |l| {
        lines.push(l.to_owned())
    })
    .await
    .expect("reactivate");
    assert!(lines[0].contains("reactivated"), "{lines:?}");
    let (status, body) = call(
        &auth,
        Method::GET,
        &format!("{tenant}/api/tenants/{kept}"),
        None,
        &admin,
    )
    .await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("active"))
    );
    let err = tenant::commands::reactivate(&settings, gone.parse().expect("id"), |_| {})
        .await
        .expect_err("purged");
    assert!(err.to_string().contains("purged"), "{err}");
    let err = tenant::commands::reactivate(&settings, kept.parse().expect("id"), |_| {})
        .await
        .expect_err("active");
    assert!(err.to_string().contains("not deactivated"), "{err}");
}

#[tokio::test]
async fn the_creation_limit_holds_under_concurrent_requests() {
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(
        &ctx,
        &[],
        &[("TENANT_LIMIT_PER_USER", "2"), ("DATABASE_POOL_SIZE", "8")],
    );
    let admin = auth.session("admin@example.com").await.0;
    let url = format!("{tenant}/api/tenants");
    let attempts = (0..6).map(|i| {
        call(
            &auth,
            Method::POST,
            &url,
            Some(json!({"name": format!("Rush {i}")})),
            &admin,
        )
    });
    let results = futures_util::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::FORBIDDEN && b["error"] == "forbidden")
        .count();
    assert_eq!((created, refused), (2, 4), "{results:?}");
}

#[tokio::test]
async fn no_database_server_open_for_tenants_answers_503_and_stores_nothing() {
    use diesel_async::SimpleAsyncConnection;
    let ctx = TestContext::new().await;
    let (auth, tenant) = start_with(&ctx, &[], &[]);
    let admin = auth.session("admin@example.com").await.0;
    let mut conn = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    conn.batch_execute("UPDATE database_servers SET state = 'draining'")
        .await
        .expect("drain the only server");
    let (status, body) = call(
        &auth,
        Method::POST,
        &format!("{tenant}/api/tenants"),
        Some(json!({"name": "Nowhere"})),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "service_unavailable", "{body}");
    assert_eq!(
        body["message"],
        "No database server can take a new tenant now; try again later"
    );
    let count: i64 = main_db::schema::tenants::table
        .count()
        .get_result(&mut conn)
        .await
        .expect("count");
    assert_eq!(count, 0, "nothing stored");
    conn.batch_execute("UPDATE database_servers SET state = 'active'")
        .await
        .expect("reopen");
    let created = create(&auth, &tenant, &admin, "Somewhere").await;
    assert_eq!(created["name"], "Somewhere");
}
