//! A stand-in for HashiCorp Vault (which cannot run here), at the HTTP level: AppRole
//! login and KV v2 reads, as Vault documents them, over plain HTTP/1.1 with one
//! request per connection.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts `role_id`/`secret_id` and answers KV v2 reads of `secrets` (path under the
/// mount, without `data/`: `saas-project/test/NAME` → its `value`) for the token it
/// issued. Stops with the test's runtime.
pub struct TestVault {
    /// `http://127.0.0.1:<port>`
    pub addr: String,
}

pub const VAULT_ROLE_ID: &str = "testkit-role";
pub const VAULT_SECRET_ID: &str = "testkit-secret";
const TOKEN: &str = "testkit-token";

impl TestVault {
    pub async fn start(secrets: &[(&str, &str)]) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = format!("http://{}", listener.local_addr()?);
        let secrets: Arc<HashMap<String, String>> = Arc::new(
            secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let secrets = secrets.clone();
                tokio::spawn(async move {
                    let Some((request_line, headers, body)) = read_request(&mut socket).await
                    else {
                        return;
                    };
                    let (status, answer) = answer(&request_line, &headers, &body, &secrets);
                    let text = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Ok(Self { addr })
    }
}

fn answer(
    request_line: &str,
    headers: &str,
    body: &[u8],
    secrets: &HashMap<String, String>,
) -> (&'static str, serde_json::Value) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "POST" && path == "/v1/auth/approle/login" {
        let login: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        return if login["role_id"] == VAULT_ROLE_ID && login["secret_id"] == VAULT_SECRET_ID {
            (
                "200 OK",
                serde_json::json!({"auth": {"client_token": TOKEN, "lease_duration": 3600, "renewable": true}}),
            )
        } else {
            (
                "400 Bad Request",
                serde_json::json!({"errors": ["invalid role or secret ID"]}),
            )
        };
    }
    let authorised = headers
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("x-vault-token:") && l.ends_with(TOKEN));
    match path.strip_prefix("/v1/secret/data/") {
        Some(_) if !authorised => (
            "403 Forbidden",
            serde_json::json!({"errors": ["permission denied"]}),
        ),
        Some(name) => match secrets.get(name) {
            Some(value) => (
                "200 OK",
                serde_json::json!({"data": {"data": {"value": value}, "metadata": {"version": 1}}}),
            ),
            None => ("404 Not Found", serde_json::json!({"errors": []})),
        },
        None => ("404 Not Found", serde_json::json!({"errors": []})),
    }
}

/// The request line, the header block and the body (by `content-length`).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let (request_line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let length: usize = headers
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((request_line.to_owned(), headers.to_owned(), body))
}
