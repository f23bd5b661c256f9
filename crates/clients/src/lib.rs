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
