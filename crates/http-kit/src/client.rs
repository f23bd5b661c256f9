//! Who is calling: the client's address (for rate limits and the session list) and its
//! user agent. The address is the peer's, or, with `TRUST_PROXY_HEADERS` (behind the
//! gateway only), the last `X-Forwarded-For` entry: the one the gateway appended.
//! Entries left of it are the client's own words and prove nothing.

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};

/// App data: whether `X-Forwarded-For` is trusted (the server installs it from
/// `CommonSettings::trust_proxy_headers`).
#[derive(Debug, Clone, Copy)]
pub struct TrustProxyHeaders(pub bool);

/// The client's address, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub Option<String>);

/// Longest user agent kept.
const MAX_USER_AGENT: usize = 512;

impl ClientIp {
    pub fn of(req: &HttpRequest) -> Self {
        let trust = req
            .app_data::<web::Data<TrustProxyHeaders>>()
            .is_some_and(|t| t.0);
        let peer = req.peer_addr().map(|a| a.ip().to_string());
        let ip = if trust {
            req.headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                .map(|ip| ip.to_string())
                .or(peer)
        } else {
            peer
        };
        Self(ip)
    }
}

impl FromRequest for ClientIp {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self::of(req)))
    }
}

/// The request's `User-Agent`, cut to 512 characters, without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent(pub Option<String>);

impl UserAgent {
    pub fn of(req: &HttpRequest) -> Self {
        Self(
            req.headers()
                .get(actix_web::http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_USER_AGENT)
                        .collect::<String>()
                })
                .filter(|v| !v.trim().is_empty()),
        )
    }
}

impl FromRequest for UserAgent {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Ok(Self::of(req)))
    }
}
