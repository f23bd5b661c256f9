//! Typed clients of the platform's internal HTTP APIs, and the bodies they exchange.
//! Every call has a timeout, carries the internal service token and the current request
//! id.

pub mod auth;
pub mod tenant;

pub use auth::{AuthClient, IssuedTokens, SessionClient, UserSummary};
pub use tenant::{TenantClient, TenantSso, TenantSummary, UserTenant};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{service} unreachable: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
    #[error("{service} answered {status}")]
    Status { service: &'static str, status: u16 },
    #[error("{service} refused the request: {reason}")]
    Refused {
        service: &'static str,
        reason: String,
    },
}

/// What every client holds: the peer's base URL, the internal token, and an HTTP
/// client whose calls time out.
#[derive(Clone)]
pub(crate) struct Peer {
    base_url: String,
    token: http_kit::Secret<String>,
    http: reqwest::Client,
}

impl Peer {
    fn new(
        service: &'static str,
        base_url: impl Into<String>,
        token: http_kit::Secret<String>,
        timeout: std::time::Duration,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| ClientError::Unavailable {
                service,
                reason: e.to_string(),
            })?;
        Ok(Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }
}
