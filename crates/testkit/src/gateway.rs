//! The gateway in tests: nginx from the machine (Debian's package) with
//! `deploy/gateway/nginx.conf.template` rendered into a temporary folder, in front of
//! services started in-process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

/// A running nginx; stopped (by its PID) when dropped.
pub struct TestGateway {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    dir: PathBuf,
    child: Child,
}

/// The upstream `host:port` of each service.
pub struct Upstreams<'a> {
    pub auth: &'a str,
    pub tenant: &'a str,
    pub document: &'a str,
    pub sso: &'a str,
    pub event_worker: &'a str,
}

fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://").trim_end_matches('/')
}

fn nginx_binary() -> anyhow::Result<PathBuf> {
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if std::path::Path::new(candidate).exists() {
            return Ok(candidate.into());
        }
    }
    anyhow::bail!("nginx is not installed (apt-get install -y --no-install-recommends nginx; scripts/test.sh does it)")
}

impl TestGateway {
    /// What nginx wrote to its access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Renders the template with `upstreams` (base URLs or host:port) and starts nginx
    /// on a free port, with `max_body` as the upload body limit (e.g. `2m`).
    pub async fn start(upstreams: Upstreams<'_>, max_body: &str) -> anyhow::Result<Self> {
        Self::start_with(upstreams, max_body, &[]).await
    }

    /// Like [`TestGateway::start`], with template values of the test's own (e.g.
    /// `CORS_ALLOWED_ORIGINS`, `GATEWAY_AUTH_RATE`). By default no proxy is trusted, no
    /// origin is allowed and the auth rate limit is far above what tests send.
    pub async fn start_with(
        upstreams: Upstreams<'_>,
        max_body: &str,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let nginx = nginx_binary()?;
        let template = std::fs::read_to_string(
            crate::workspace_root().join("deploy/gateway/nginx.conf.template"),
        )
        .context("reading the gateway template")?;
        let dir = std::env::temp_dir().join(format!("testkit-gateway-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)?;
        // nginx's workers drop root (to nobody or www-data) and keep request bodies in
        // temporary files here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        }
        let (listener, base) = crate::free_listener();
        let listen = host_port(&base).to_owned();
        drop(listener);
        let static_dir = crate::workspace_root().join("deploy/gateway/static");
        let values = [
            (
                "GATEWAY_STATIC_DIR",
                static_dir.to_str().context("utf-8 path")?,
            ),
            ("GATEWAY_LISTEN", listen.as_str()),
            ("GATEWAY_RUNTIME_DIR", dir.to_str().context("utf-8 path")?),
            ("GATEWAY_MAX_BODY_SIZE", max_body),
            ("AUTH_UPSTREAM", host_port(upstreams.auth)),
            ("TENANT_UPSTREAM", host_port(upstreams.tenant)),
            ("DOCUMENT_UPSTREAM", host_port(upstreams.document)),
            ("SSO_UPSTREAM", host_port(upstreams.sso)),
            ("EVENT_WORKER_UPSTREAM", host_port(upstreams.event_worker)),
            ("PLATFORM_VERSION", "test"),
            ("GATEWAY_TRUSTED_PROXY", "unix:"),
            ("GATEWAY_AUTH_RATE", "1000r/s"),
            ("GATEWAY_AUTH_BURST", "1000"),
            ("CORS_ALLOWED_ORIGINS", ""),
        ];
        let mut config = template;
        for (name, value) in overrides {
            config = config.replace(&format!("${{{name}}}"), value);
        }
        for (name, value) in values {
            config = config.replace(&format!("${{{name}}}"), value);
        }
        if let Some(at) = config.find("${") {
            anyhow::bail!(
                "unrendered placeholder in the gateway template near {:?}",
                &config[at..(at + 40).min(config.len())]
            );
        }
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config)?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx")?;
        let gateway = Self { base, dir, child };
        let health = format!("{}/health", gateway.base);
        crate::wait_until(Duration::from_secs(10), || async {
            reqwest::get(&health).await.is_ok_and(|r| r.status() == 200)
        })
        .await
        .with_context(|| {
            format!(
                "nginx did not answer: {}",
                std::fs::read_to_string(gateway.dir.join("error.log")).unwrap_or_default()
            )
        })?;
        Ok(gateway)
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        // SIGTERM: nginx's fast shutdown, which stops its workers before the master
        // exits. SIGKILL to the master alone left both workers running, orphaned, after
        // every test (hundreds after a few suite runs).
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
