//! CORS in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` over the WebDriver protocol) loads a page from an allowed origin that
//! signs in and reads `/api/users/me` through the gateway, and the same page from an
//! origin that is not allowed, whose calls the browser blocks.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use reqwest::Client;
use serde_json::{json, Value};
use testkit::TestContext;

use crate::auth::PASSWORD;

/// The page: `window.signIn(gateway, email, password)` logs in and reads the profile
/// with the token, as a single-page app on that origin would.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>app</title></head>
<body><p id="status">idle</p>
<script>
window.signIn = async (gateway, email, password) => {
  const login = await fetch(gateway + "/api/auth/login", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Request-Id": "browser-check"},
    body: JSON.stringify({email, password}),
  });
  const tokens = await login.json();
  const me = await fetch(gateway + "/api/users/me", {
    headers: {"Authorization": "Bearer " + tokens.access_token},
  });
  const profile = await me.json();
  document.getElementById("status").textContent = "signed in";
  return {
    login: login.status,
    me: me.status,
    email: profile.data.email,
    request_id: login.headers.get("X-Request-Id"),
  };
};
</script></body></html>"#;

/// Serves [`PAGE`] on a free port of 127.0.0.1; its port.
fn serve_page() -> u16 {
    let (listener, _) = testkit::free_listener();
    let port = listener.local_addr().expect("address").port();
    let server = HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("text/html; charset=utf-8")
                    .body(PAGE)
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    port
}

/// ChromeDriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    base: String,
    http: Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let (listener, _) = testkit::free_listener();
        let port = listener.local_addr().expect("address").port();
        drop(listener);
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
        let driver = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        };
        let status = format!("{}/status", driver.base);
        testkit::wait_until(Duration::from_secs(20), || async {
            reqwest::get(&status).await.is_ok_and(|r| r.status() == 200)
        })
        .await
        .expect("chromedriver answers");
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("webdriver call");
        let status = response.status();
        let body: Value = response.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "webdriver {path}: {status} {body}");
        body["value"].clone()
    }

    /// A new headless Chromium session; its id.
    async fn session(&self) -> String {
        let value = self
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--no-first-run"]
                    }
                }}}),
            )
            .await;
        value["sessionId"].as_str().expect("session id").to_owned()
    }

    /// Opens `page` and runs `signIn` in it: the outcome, or the error the page saw.
    async fn sign_in_from(&self, session: &str, page: &str, gateway: &str, email: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/url"),
            json!({ "url": page }),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/session/{session}/execute/async"),
            json!({
                "script": "const done = arguments[arguments.length - 1];
                           window.signIn(arguments[0], arguments[1], arguments[2])
                             .then(r => done({ok: true, result: r}))
                             .catch(e => done({ok: false, error: String(e)}));",
                "args": [gateway, email, PASSWORD],
            }),
        )
        .await
    }
}

#[tokio::test]
async fn a_browser_app_on_an_allowed_origin_signs_in_and_another_origin_is_blocked() {
    let allowed_port = serve_page();
    let other_port = serve_page();
    // The browser names the page's origin by the host it loaded it from.
    let allowed = format!("http://localhost:{allowed_port}");
    let other = format!("http://127.0.0.1:{other_port}");
    let ctx = TestContext::new().await;
    let origins = format!("https://admin.example.com {allowed}");
    let e = crate::edge::edge(&ctx, &[], &[("CORS_ALLOWED_ORIGINS", origins.as_str())]).await;
    e.docs.auth.register("browser@example.com").await;
    let gateway = e.gateway.base.clone();

    let driver = Driver::start().await;
    let session = driver.session().await;
    let outcome = driver
        .sign_in_from(
            &session,
            &format!("{allowed}/"),
            &gateway,
            "browser@example.com",
        )
        .await;
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(outcome["result"]["login"], 200, "{outcome}");
    assert_eq!(outcome["result"]["me"], 200, "{outcome}");
    assert_eq!(outcome["result"]["email"], "browser@example.com");
    assert_eq!(
        outcome["result"]["request_id"], "browser-check",
        "exposed to the page"
    );

    let blocked = driver
        .sign_in_from(
            &session,
            &format!("{other}/"),
            &gateway,
            "browser@example.com",
        )
        .await;
    assert_eq!(blocked["ok"], false, "{blocked}");
    assert!(
        blocked["error"]
            .as_str()
            .unwrap_or("")
            .contains("Failed to fetch"),
        "{blocked}"
    );
    // The gateway saw the blocked page's preflight (the browser, not the page, gave up).
    testkit::wait_until(Duration::from_secs(5), || async {
        e.gateway.access_log().contains("\"OPTIONS /api/auth/login")
    })
    .await
    .unwrap_or_else(|_| panic!("no preflight in {}", e.gateway.access_log()));

    let _ = driver
        .http
        .delete(format!("{}/session/{session}", driver.base))
        .send()
        .await;
}
