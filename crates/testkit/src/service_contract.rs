//! What every service must do, checked the same way for each: the operations
//! endpoints, and a binary that refuses bad settings by name.

use std::process::Command;

use serde_json::Value;

/// `/health`, `/ready`, `/metrics` and `/api-docs/openapi.json` of a running service.
pub async fn assert_common_endpoints(base: &str, service: &str) {
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(health.status(), 200);
    let body: Value = health.json().await.expect("health JSON");
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["service"], service);
    assert!(
        body["version"]
            .as_str()
            .is_some_and(|v| v.split('.').count() == 3),
        "semver: {body}"
    );

    let ready = client
        .get(format!("{base}/ready"))
        .send()
        .await
        .expect("GET /ready");
    let status = ready.status();
    let body: Value = ready.json().await.expect("ready JSON");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");

    // Metrics are served on the internal listener only.
    let public_metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(
        public_metrics.status(),
        404,
        "no /metrics on the public listener"
    );
    let metrics = client
        .get(format!("{}/metrics", crate::internal_url(base)))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("metrics text");
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(&format!("service=\"{service}\"")), "{text}");

    let doc = client
        .get(format!("{base}/api-docs/openapi.json"))
        .send()
        .await
        .expect("GET openapi");
    assert_eq!(doc.status(), 200);
    let doc: Value = doc.json().await.expect("OpenAPI JSON");
    assert_eq!(doc["info"]["title"], service);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{doc}"
    );
    for path in ["/health", "/ready", "/metrics"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }

    let missing = client
        .get(format!("{base}/no-such-route"))
        .send()
        .await
        .expect("GET unknown");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("envelope");
    assert_eq!(body["error"], "not_found");
}

/// The binary's `check-config` exits 2 naming each missing setting, and 0 when the
/// settings are valid (`required` adds the service's own required settings); secrets
/// are not printed.
pub fn assert_check_config(binary: &str, required: &[(&str, &str)]) {
    let output = Command::new(binary)
        .arg("check-config")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("REDIS_URL"),
        "{stderr}"
    );

    let output = Command::new(binary)
        .arg("check-config")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", "postgres://user:s3cr3t-pw@127.0.0.1:1/db")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("PORT", "99999")
        .envs(required.iter().copied())
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("PORT"), "{stderr}");

    let output = Command::new(binary)
        .arg("check-config")
        .env_clear()
        .current_dir(std::env::temp_dir())
        .env("DATABASE_URL", "postgres://user:s3cr3t-pw@127.0.0.1:1/db")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .envs(required.iter().copied())
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("configuration is valid"), "{stdout}");
    assert!(
        !stdout.contains("s3cr3t-pw"),
        "secrets are redacted: {stdout}"
    );
}

/// A request whose handler reads a JSON body: sent in two halves, the second after
/// SIGTERM, it must still be answered with `status`.
pub struct InFlight {
    /// To the internal listener rather than the public one. The internal token is
    /// sent as the bearer token either way.
    pub internal: bool,
    pub method: &'static str,
    pub path: String,
    pub body: String,
    pub status: u16,
}

/// The binary serving for real, stopped by SIGTERM: it must finish the request in
/// flight when the signal came (`in_flight`, whose body is completed after the signal),
/// accept no new connection, stop every background task it had started in time
/// (`tasks`: the names its start-up log lists; none aborted), and exit 0 within
/// `SHUTDOWN_TIMEOUT_SECS` (here 10 s). (actix drains requests, not idle connections:
/// a connection that has sent no complete request head is closed.)
///
/// `env` is the service's settings (`TestContext::service_env` and its own).
pub async fn assert_stops_on_sigterm(
    binary: &str,
    env: &std::collections::HashMap<String, String>,
    tasks: &[&str],
    in_flight: Option<InFlight>,
) {
    use std::io::{Read as _, Write as _};
    use std::time::Duration;

    let (public, base) = crate::free_listener();
    let (internal, _) = crate::free_listener();
    let port = public.local_addr().expect("address").port();
    let internal_port = internal.local_addr().expect("address").port();
    drop((public, internal));
    let log =
        LogFile(std::env::temp_dir().join(format!("sigterm-{}-{port}.log", std::process::id())));
    let file = std::fs::File::create(log.path()).expect("log file");
    let mut child = Command::new(binary)
        .arg("serve")
        .envs(env)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("INTERNAL_PORT", internal_port.to_string())
        .env("SHUTDOWN_TIMEOUT_SECS", "10")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("start the binary");
    let mut killer = KillOnDrop(Some(child.id()));
    let client = reqwest::Client::new();
    crate::wait_until(Duration::from_secs(30), || async {
        client
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await
    .unwrap_or_else(|_| panic!("the service did not start: {}", read(log.path())));
    let started = read(log.path());
    for task in tasks {
        assert!(
            started.contains(&format!("\\\"{task}\\\"")),
            "{task} not among the started background tasks: {started}"
        );
    }

    // A request in flight: its head and half its body are in.
    let mut pending = in_flight.map(|request| {
        let port = if request.internal {
            internal_port
        } else {
            port
        };
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let (first, rest) = request.body.split_at(request.body.len() / 2);
        write!(
            stream,
            "{} {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
             authorization: Bearer {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{first}",
            request.method,
            request.path,
            crate::INTERNAL_TOKEN,
            request.body.len()
        )
        .expect("send the start of a request");
        (stream, rest.to_owned(), request.status)
    });
    if pending.is_some() {
        // The handler is waiting for the body by the time a request on a new
        // connection made after it is answered (connections are served in order).
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let after = fresh
            .get(format!("{base}/health"))
            .send()
            .await
            .expect("a request on a new connection");
        assert_eq!(after.status(), 200);
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    crate::wait_until(Duration::from_secs(5), || {
        let log = log.path().to_owned();
        async move { read(&log).contains("draining requests in flight") }
    })
    .await
    .unwrap_or_else(|_| panic!("no sign of stopping: {}", read(log.path())));
    // No new connection is accepted while it drains.
    crate::wait_until(Duration::from_secs(5), || {
        std::future::ready(std::net::TcpStream::connect(("127.0.0.1", port)).is_err())
    })
    .await
    .expect("the listener closed after SIGTERM");
    if let Some((mut stream, rest, status)) = pending.take() {
        stream
            .write_all(rest.as_bytes())
            .expect("the rest of the body");
        let mut answer = String::new();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "the request in flight was not answered {status}: {answer:?}; {}",
            read(log.path())
        );
    }

    let mut exit = None;
    crate::wait_until(Duration::from_secs(15), || {
        exit = child.try_wait().expect("wait");
        std::future::ready(exit.is_some())
    })
    .await
    .unwrap_or_else(|_| panic!("still running after SIGTERM: {}", read(log.path())));
    killer.0 = None;
    let output = read(log.path());
    assert_eq!(exit.and_then(|e| e.code()), Some(0), "{output}");
    let stopped = output
        .lines()
        .find(|l| l.contains("background tasks stopped"))
        .unwrap_or_else(|| panic!("no background tasks stopped line: {output}"));
    for task in tasks {
        assert!(
            stopped.contains(&format!("\\\"{task}\\\"")),
            "{task} did not stop: {stopped}"
        );
    }
    assert!(!output.contains("aborted"), "{output}");
    assert!(output.contains("\"stopped\""), "{output}");
}

/// The service's output, removed when the test ends.
struct LogFile(std::path::PathBuf);

impl LogFile {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// SIGKILLs a process left running when a test fails.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// `ctx`'s service settings with `KAFKA_BROKERS` on a mock cluster holding `topics` (one
/// partition each; `events::topics::catalog()` for the whole catalog), which lives as
/// long as the returned cluster.
pub fn env_with_mock_kafka(
    ctx: &crate::TestContext,
    topics: &[String],
) -> (std::collections::HashMap<String, String>, crate::TestKafka) {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let kafka = crate::TestKafka::start(&names, 1).expect("mock Kafka");
    let mut env = ctx.service_env();
    env.insert("KAFKA_BROKERS".to_owned(), kafka.brokers().to_owned());
    (env, kafka)
}
