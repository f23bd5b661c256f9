//! The OpenID Connect provider in tests, standing in for Microsoft Entra ID: npm
//! `oidc-provider` 9 run by `crates/testkit/oidc-provider/server.mjs` (its README says
//! what it does). Each tenant is its own provider with the issuer
//! `{authority}/{tid}/v2.0`, as Entra ID's are; sign-in has no pages (the
//! authorization request's `login_hint` user is signed in at once).
//!
//! Needs Node.js 20.19 or later; the npm packages are installed from the committed
//! lock (`npm ci`) the first time a test needs them, by one test process at a time.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

/// How long the provider may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a test process waits for another one's `npm ci`.
const NPM_LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// Written into `node_modules` after a successful `npm ci`: the hash of the manifests.
const STAMP_FILE: &str = ".testkit-npm-ci";
const NODE_HELP: &str = "the OpenID Connect provider in tests needs Node.js 20.19 or later \
     with npm on PATH (Debian: apt-get install -y nodejs from NodeSource's node_20.x or \
     newer repository; Debian's own nodejs is too old)";

/// One Entra ID tenant of the provider.
#[derive(Debug, Clone, Serialize)]
pub struct OidcTenant {
    /// The Azure tenant id; the issuer is `{authority}/{tid}/v2.0`.
    pub tid: String,
    pub clients: Vec<OidcClient>,
    pub users: Vec<OidcUser>,
    /// The discovery document's `issuer` and the ID tokens' `iss` are the literal
    /// `{authority}/{tenantid}/v2.0` (Entra's multi-tenant quirk).
    pub literal_tenantid_issuer: bool,
    /// The JWKS publishes another RSA key (another `kid`) instead of the signing key.
    pub hide_signing_key: bool,
    /// Seconds; echoed as `expires_in` in token responses.
    pub access_token_ttl: u64,
    /// Seconds.
    pub id_token_ttl: u64,
    /// Seconds (90 days by default, as Entra's).
    pub refresh_token_ttl: u64,
}

impl Default for OidcTenant {
    fn default() -> Self {
        Self::new(uuid::Uuid::new_v4().to_string())
    }
}

impl OidcTenant {
    pub fn new(tid: impl Into<String>) -> Self {
        Self {
            tid: tid.into(),
            clients: Vec::new(),
            users: Vec::new(),
            literal_tenantid_issuer: false,
            hide_signing_key: false,
            access_token_ttl: 3600,
            id_token_ttl: 3600,
            refresh_token_ttl: 90 * 24 * 3600,
        }
    }

    pub fn with_client(mut self, client: OidcClient) -> Self {
        self.clients.push(client);
        self
    }

    pub fn with_user(mut self, user: OidcUser) -> Self {
        self.users.push(user);
        self
    }

    pub fn with_literal_tenantid_issuer(mut self) -> Self {
        self.literal_tenantid_issuer = true;
        self
    }

    pub fn with_hidden_signing_key(mut self) -> Self {
        self.hide_signing_key = true;
        self
    }

    pub fn with_access_token_ttl(mut self, seconds: u64) -> Self {
        self.access_token_ttl = seconds;
        self
    }

    pub fn with_id_token_ttl(mut self, seconds: u64) -> Self {
        self.id_token_ttl = seconds;
        self
    }

    pub fn with_refresh_token_ttl(mut self, seconds: u64) -> Self {
        self.refresh_token_ttl = seconds;
        self
    }
}

/// An app registration: public (PKCE only) without a secret, confidential with one
/// (`client_secret_post` or `client_secret_basic`). PKCE S256 is required for both.
#[derive(Debug, Clone, Serialize)]
pub struct OidcClient {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub redirect_uris: Vec<String>,
}

impl OidcClient {
    pub fn public(client_id: impl Into<String>, redirect_uri: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: None,
            redirect_uris: vec![redirect_uri.into()],
        }
    }

    pub fn confidential(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        Self {
            client_secret: Some(client_secret.into()),
            ..Self::public(client_id, redirect_uri)
        }
    }

    pub fn with_redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uris.push(redirect_uri.into());
        self
    }
}

/// A user who signs in when the authorization request's `login_hint` names them.
#[derive(Debug, Clone, Serialize)]
pub struct OidcUser {
    pub login_hint: String,
    /// `oid`, also the `sub`.
    pub oid: String,
    /// `email` and `preferred_username`.
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    /// No `groups` claim but Entra's overage indication (`_claim_names`/`_claim_sources`
    /// pointing at Microsoft Graph).
    pub groups_overage: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xms_edov: Option<bool>,
    /// Another `tid` in this user's ID tokens (a token from another tenant).
    pub tid: Option<String>,
    /// The provider swaps the request's nonce for another before handling it.
    pub tamper_nonce: bool,
}

impl OidcUser {
    /// A user whose email and name are `login_hint`, without groups.
    pub fn new(login_hint: impl Into<String>, oid: impl Into<String>) -> Self {
        let login_hint = login_hint.into();
        Self {
            email: login_hint.clone(),
            name: login_hint.clone(),
            login_hint,
            oid: oid.into(),
            groups: Vec::new(),
            groups_overage: false,
            xms_edov: None,
            tid: None,
            tamper_nonce: false,
        }
    }

    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = email.into();
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_groups_overage(mut self) -> Self {
        self.groups_overage = true;
        self
    }

    pub fn with_xms_edov(mut self, value: bool) -> Self {
        self.xms_edov = Some(value);
        self
    }

    pub fn with_tid(mut self, tid: impl Into<String>) -> Self {
        self.tid = Some(tid.into());
        self
    }

    pub fn with_tampered_nonce(mut self) -> Self {
        self.tamper_nonce = true;
        self
    }
}

#[derive(Serialize)]
struct Config<'a> {
    port: u16,
    tenants: &'a [OidcTenant],
}

/// A running provider (`node server.mjs`); killed by its PID when dropped. It also exits
/// by itself when this process dies (its stdin, held here, closes).
pub struct TestOidc {
    authority: String,
    port: u16,
    child: Child,
    /// Held open: the provider exits when it closes.
    stdin: Option<ChildStdin>,
}

impl TestOidc {
    /// Starts a provider serving `tenants` on a free port; panics if it cannot.
    pub async fn start(tenants: Vec<OidcTenant>) -> Self {
        Self::try_start(tenants)
            .await
            .unwrap_or_else(|e| panic!("starting the OpenID Connect provider: {e:#}"))
    }

    pub async fn try_start(tenants: Vec<OidcTenant>) -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(move || Self::start_blocking(&tenants))
            .await
            .context("the provider's start task")?
    }

    fn start_blocking(tenants: &[OidcTenant]) -> anyhow::Result<Self> {
        check_node()?;
        ensure_node_modules()?;
        let config = std::env::temp_dir().join(format!(
            "testkit-oidc-{}.json",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&config, serde_json::to_vec(&Config { port: 0, tenants })?)
            .with_context(|| format!("writing {}", config.display()))?;
        let started = Self::spawn(&config);
        let _ = std::fs::remove_file(&config);
        started
    }

    fn spawn(config: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new("node")
            .arg(provider_dir().join("server.mjs"))
            .arg(config)
            .current_dir(provider_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("running node ({NODE_HELP})"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the provider's stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next());
            // Nothing else is printed on stdout; read on so the provider never blocks.
            for _ in lines {}
        });
        let line = match receiver.recv_timeout(READY_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => {
                let status = child.wait().ok();
                bail!("the provider exited before it was ready ({status:?}); its stderr is above");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the provider was not ready within {READY_TIMEOUT:?}");
            }
        };
        let mut server = Self {
            authority: String::new(),
            port: 0,
            child,
            stdin,
        };
        let ready: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("the provider's ready line {line:?}"))?;
        server.port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .with_context(|| format!("no port in the ready line {line:?}"))?;
        server.authority = ready["authority"]
            .as_str()
            .with_context(|| format!("no authority in the ready line {line:?}"))?
            .to_owned();
        Ok(server)
    }

    /// `http://127.0.0.1:<port>`: the authority base URL (Entra's
    /// `https://login.microsoftonline.com`).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the provider.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `{authority}/{tid}/v2.0` (what the provider really uses, unless the tenant has
    /// `literal_tenantid_issuer`).
    pub fn issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.authority)
    }

    /// `{issuer}/.well-known/openid-configuration`.
    pub fn discovery_url(&self, tid: &str) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer(tid))
    }

    /// Plays the browser: requests `authorization_url` (this provider's authorization
    /// endpoint with its query) and follows the redirects with a cookie jar while they
    /// stay on this provider; returns the first location off it, the relying party's
    /// redirect URI with `code` and `state` (or `error`).
    pub async fn sign_in(&self, authorization_url: &str) -> anyhow::Result<url::Url> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let own = format!("{}/", self.authority);
        let mut cookies: BTreeMap<String, String> = BTreeMap::new();
        let mut url = url::Url::parse(authorization_url).context("the authorization URL")?;
        for _ in 0..10 {
            let mut request = client.get(url.clone());
            if !cookies.is_empty() {
                let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                request = request.header(reqwest::header::COOKIE, header.join("; "));
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("GET {}", url.path()))?;
            for set in response.headers().get_all(reqwest::header::SET_COOKIE) {
                let Some((name, value)) = set
                    .to_str()
                    .ok()
                    .and_then(|s| s.split(';').next())
                    .and_then(|pair| pair.split_once('='))
                else {
                    continue;
                };
                let expired = set
                    .to_str()
                    .is_ok_and(|s| s.contains("expires=Thu, 01 Jan 1970"));
                if value.is_empty() || expired {
                    cookies.remove(name.trim());
                } else {
                    cookies.insert(name.trim().to_owned(), value.to_owned());
                }
            }
            let status = response.status();
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let body = response.text().await.unwrap_or_default();
                bail!("{} answered {status}, not a redirect: {body}", url.path());
            };
            let next = url.join(&location).context("a redirect's location")?;
            if !next.as_str().starts_with(&own) {
                return Ok(next);
            }
            url = next;
        }
        bail!("more than 10 redirects within the provider")
    }
}

impl Drop for TestOidc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

fn check_node() -> anyhow::Result<()> {
    let output = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("node is missing: {NODE_HELP}"))?;
    let version = String::from_utf8_lossy(&output.stdout);
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if !output.status.success() || (major, minor) < (20, 19) {
        bail!("node {} is too old or broken: {NODE_HELP}", version.trim());
    }
    Ok(())
}

/// A hash of package.json and package-lock.json: `npm ci` again when they change.
fn manifests_hash(dir: &Path) -> anyhow::Result<String> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for name in ["package.json", "package-lock.json"] {
        let path = dir.join(name);
        std::fs::read(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

fn installed(dir: &Path, hash: &str) -> bool {
    std::fs::read_to_string(dir.join("node_modules").join(STAMP_FILE))
        .is_ok_and(|stamp| stamp.trim() == hash)
}

/// Runs `npm ci` in the provider's folder unless the installed packages match the lock.
/// Test processes (nextest runs them in parallel) and threads take turns through an
/// exclusive lock on a file (released by the kernel if the holder dies).
fn ensure_node_modules() -> anyhow::Result<()> {
    let dir = provider_dir();
    let hash = manifests_hash(&dir)?;
    if installed(&dir, &hash) {
        return Ok(());
    }
    let lock_path = {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        dir.hash(&mut hasher);
        std::env::temp_dir().join(format!("testkit-oidc-npm-{:016x}.lock", hasher.finish()))
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    let deadline = Instant::now() + NPM_LOCK_TIMEOUT;
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another test process held {} (npm ci) for over {NPM_LOCK_TIMEOUT:?}",
                lock_path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()))
            }
        }
    }
    // Whoever held the lock before may have installed them.
    if installed(&dir, &hash) {
        return Ok(());
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running npm ({NODE_HELP})"))?;
    if !output.status.success() {
        bail!(
            "npm ci in {} failed ({}): {}{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::write(dir.join("node_modules").join(STAMP_FILE), &hash)
        .context("writing the npm ci stamp")?;
    // The lock is released when `lock` is dropped (closed).
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::Value;

    const TID: &str = "11111111-1111-1111-1111-111111111111";
    const OTHER_TID: &str = "22222222-2222-2222-2222-222222222222";
    const REDIRECT_URI: &str = "http://127.0.0.1:5004/api/auth/sso/azure/callback";
    /// A PKCE pair: the challenge is BASE64URL(SHA-256(verifier)).
    const VERIFIER: &str = "testkit-oidc-code-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
    const CHALLENGE: &str = "2cN8i5TyuxLjSL_nA59j0vU9KIdoFZMyclQypcD86uw";

    fn claims(jwt: &str) -> (Value, Value) {
        let part = |i: usize| -> Value {
            let segment = jwt.split('.').nth(i).expect("three JWT segments");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(segment)
                .expect("base64url");
            serde_json::from_slice(&bytes).expect("JSON")
        };
        (part(0), part(1))
    }

    async fn discovery(oidc: &TestOidc, tid: &str) -> Value {
        let response = reqwest::get(oidc.discovery_url(tid))
            .await
            .expect("discovery");
        assert_eq!(response.status(), 200);
        response.json().await.expect("discovery JSON")
    }

    fn authorization_url(endpoint: &str, client_id: &str, login_hint: Option<&str>) -> String {
        let mut url = url::Url::parse(endpoint).expect("endpoint URL");
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("scope", "openid profile email offline_access User.Read")
            .append_pair("state", "state-1")
            .append_pair("nonce", "nonce-1")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256");
        if let Some(hint) = login_hint {
            url.query_pairs_mut().append_pair("login_hint", hint);
        }
        url.into()
    }

    fn query(url: &url::Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The whole code flow for `login_hint`; returns the token response.
    async fn code_flow(
        oidc: &TestOidc,
        tid: &str,
        client_id: &str,
        secret: Option<&str>,
        login_hint: &str,
    ) -> Value {
        let metadata = discovery(oidc, tid).await;
        let endpoint = metadata["authorization_endpoint"]
            .as_str()
            .expect("endpoint");
        let back = oidc
            .sign_in(&authorization_url(endpoint, client_id, Some(login_hint)))
            .await
            .expect("sign-in");
        assert!(back.as_str().starts_with(REDIRECT_URI), "{back}");
        assert_eq!(query(&back, "state").as_deref(), Some("state-1"));
        let code = query(&back, "code").expect("a code");
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ];
        let client = reqwest::Client::new();
        let token_endpoint = metadata["token_endpoint"].as_str().expect("token endpoint");
        let request = match secret {
            // Confidential client: HTTP Basic (client_secret_basic).
            Some(secret) => client
                .post(token_endpoint)
                .basic_auth(client_id, Some(secret)),
            None => {
                form.push(("client_id", client_id));
                client.post(token_endpoint)
            }
        };
        let response = request.form(&form).send().await.expect("token request");
        assert_eq!(response.status(), 200);
        response.json().await.expect("token JSON")
    }

    #[tokio::test]
    async fn oidc_code_flow_with_pkce_gives_azure_like_id_tokens() {
        let tenant = OidcTenant::new(TID)
            .with_client(OidcClient::public("app-1", REDIRECT_URI))
            .with_client(OidcClient::confidential("app-2", "s3cret", REDIRECT_URI))
            .with_user(
                OidcUser::new("alice@corp.com", "aaaaaaaa-0000-0000-0000-000000000001")
                    .with_name("Alice Example")
                    .with_groups(["g1", "g2"])
                    .with_xms_edov(true),
            )
            .with_user(
                OidcUser::new("bob@corp.com", "bbbbbbbb-0000-0000-0000-000000000002")
                    .with_groups_overage(),
            )
            .with_access_token_ttl(1234);
        let oidc = TestOidc::start(vec![tenant]).await;

        let metadata = discovery(&oidc, TID).await;
        let issuer = format!("{}/{TID}/v2.0", oidc.authority());
        assert_eq!(metadata["issuer"], issuer.as_str());
        assert_eq!(oidc.issuer(TID), issuer);
        for endpoint in [
            "authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
            "userinfo_endpoint",
        ] {
            let url = metadata[endpoint].as_str().expect(endpoint);
            assert!(url.starts_with(&format!("{issuer}/")), "{endpoint}: {url}");
        }
        let jwks: Value = reqwest::get(metadata["jwks_uri"].as_str().expect("jwks_uri"))
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks JSON");

        // Public client, PKCE.
        let tokens = code_flow(&oidc, TID, "app-1", None, "alice@corp.com").await;
        assert_eq!(tokens["expires_in"], 1234);
        assert!(tokens["refresh_token"].is_string(), "offline_access");
        let (header, id) = claims(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(header["alg"], "RS256");
        assert!(
            jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .any(|k| k["kid"] == header["kid"]),
            "the JWKS has the signing key"
        );
        assert_eq!(id["iss"], issuer.as_str());
        assert_eq!(id["aud"], "app-1");
        assert_eq!(id["tid"], TID);
        assert_eq!(id["oid"], "aaaaaaaa-0000-0000-0000-000000000001");
        assert_eq!(id["sub"], id["oid"]);
        assert_eq!(id["email"], "alice@corp.com");
        assert_eq!(id["preferred_username"], "alice@corp.com");
        assert_eq!(id["name"], "Alice Example");
        assert_eq!(id["groups"], serde_json::json!(["g1", "g2"]));
        assert_eq!(id["xms_edov"], true);
        assert_eq!(id["nonce"], "nonce-1");
        let userinfo: Value = reqwest::Client::new()
            .get(metadata["userinfo_endpoint"].as_str().expect("userinfo"))
            .bearer_auth(tokens["access_token"].as_str().expect("access_token"))
            .send()
            .await
            .expect("userinfo")
            .json()
            .await
            .expect("userinfo JSON");
        assert_eq!(userinfo["sub"], id["oid"]);

        // The refresh token works once: it rotates.
        let token_endpoint = metadata["token_endpoint"].as_str().expect("token endpoint");
        let refresh = |token: String| {
            let endpoint = token_endpoint.to_owned();
            async move {
                reqwest::Client::new()
                    .post(endpoint)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", "app-1"),
                        ("refresh_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("refresh request")
            }
        };
        let first = tokens["refresh_token"].as_str().expect("rt").to_owned();
        let refreshed = refresh(first.clone()).await;
        assert_eq!(refreshed.status(), 200);
        let refreshed: Value = refreshed.json().await.expect("JSON");
        assert!(refreshed["access_token"].is_string());
        assert!(refreshed["refresh_token"].is_string());
        assert_eq!(refreshed["expires_in"], 1234);
        let reused = refresh(first).await;
        assert_eq!(reused.status(), 400);
        let reused: Value = reused.json().await.expect("JSON");
        assert_eq!(reused["error"], "invalid_grant");

        // Confidential client (HTTP Basic), a user with too many groups.
        let tokens = code_flow(&oidc, TID, "app-2", Some("s3cret"), "bob@corp.com").await;
        let (_, id) = claims(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(id["aud"], "app-2");
        assert!(id.get("groups").is_none(), "{id}");
        assert_eq!(id["_claim_names"]["groups"], "src1");
        assert_eq!(
            id["_claim_sources"]["src1"]["endpoint"],
            "https://graph.microsoft.com/v1.0/users/bbbbbbbb-0000-0000-0000-000000000002/getMemberObjects"
        );

        // Unknown and missing login_hint: back to the app with access_denied.
        let endpoint = metadata["authorization_endpoint"]
            .as_str()
            .expect("endpoint");
        for hint in [Some("mallory@corp.com"), None] {
            let back = oidc
                .sign_in(&authorization_url(endpoint, "app-1", hint))
                .await
                .expect("sign-in");
            assert!(back.as_str().starts_with(REDIRECT_URI), "{back}");
            assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
            assert_eq!(query(&back, "state").as_deref(), Some("state-1"));
            assert_eq!(query(&back, "code"), None);
        }
    }

    #[tokio::test]
    async fn oidc_test_switches_and_two_providers_at_once() {
        let tenant = |tid: &str| {
            OidcTenant::new(tid)
                .with_client(OidcClient::public("app-1", REDIRECT_URI))
                .with_user(OidcUser::new("alice@corp.com", "oid-alice").with_groups(["g1"]))
                .with_user(OidcUser::new("eve@corp.com", "oid-eve").with_tampered_nonce())
                .with_user(OidcUser::new("trudy@other.com", "oid-trudy").with_tid(OTHER_TID))
        };
        let (plain, quirky) = tokio::join!(
            TestOidc::start(vec![tenant(TID)]),
            TestOidc::start(vec![tenant(OTHER_TID)
                .with_hidden_signing_key()
                .with_literal_tenantid_issuer()]),
        );
        assert_ne!(plain.port(), quirky.port());
        assert_ne!(plain.pid(), quirky.pid());

        // The plain one: another tenant's tid in a token, a tampered nonce.
        let tokens = code_flow(&plain, TID, "app-1", None, "trudy@other.com").await;
        let (_, id) = claims(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(id["tid"], OTHER_TID);
        assert_eq!(id["iss"], plain.issuer(TID).as_str());
        let tokens = code_flow(&plain, TID, "app-1", None, "eve@corp.com").await;
        let (_, id) = claims(tokens["id_token"].as_str().expect("id_token"));
        assert!(id["nonce"].is_string());
        assert_ne!(id["nonce"], "nonce-1");

        // The quirky one: literal {tenantid} issuer, a JWKS without the signing key.
        let literal = format!("{}/{{tenantid}}/v2.0", quirky.authority());
        let metadata = discovery(&quirky, OTHER_TID).await;
        assert_eq!(metadata["issuer"], literal.as_str());
        let tokens = code_flow(&quirky, OTHER_TID, "app-1", None, "alice@corp.com").await;
        let (header, id) = claims(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(id["iss"], literal.as_str());
        assert_eq!(id["tid"], OTHER_TID);
        assert_eq!(id["nonce"], "nonce-1");
        let jwks: Value = reqwest::get(metadata["jwks_uri"].as_str().expect("jwks_uri"))
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks JSON");
        let keys = jwks["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 1);
        assert!(header["kid"].is_string());
        assert!(keys.iter().all(|k| k["kid"] != header["kid"]), "{jwks}");
        assert_eq!(keys[0]["kty"], "RSA");

        // Dropping one stops it; the other goes on.
        let pid = quirky.pid();
        drop(quirky);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        assert_eq!(
            discovery(&plain, TID).await["issuer"],
            plain.issuer(TID).as_str()
        );
    }
}
