//! Who is calling: the client's address (for rate limits and the session list) and its
//! user agent. The address is the peer's, unless the peer is one of the trusted proxies
//! (`TRUSTED_PROXIES`: the gateway's and ingress's networks): then it is the right-most
//! `X-Forwarded-For` entry that is not itself a trusted proxy. Entries left of that are
//! the client's own words and prove nothing.

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use ipnet::IpNet;

/// The networks whose `X-Forwarded-For` is believed (app data, installed by the server
/// from `CommonSettings::trusted_proxies`). Empty: none, the peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, from the peer's and the `X-Forwarded-For` values in order.
    pub fn client<'a>(&self, peer: IpAddr, forwarded: impl Iterator<Item = &'a str>) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
        for entry in entries.into_iter().rev() {
            let Ok(ip) = entry.trim().parse::<IpAddr>() else {
                // Not an address: nothing left of it can be believed.
                break;
            };
            client = ip.to_canonical();
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// Networks (`10.0.0.0/8`) or addresses, separated by commas or spaces.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("{item:?} is not a network (10.0.0.0/8) or an address"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// The client's address, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub Option<String>);

/// Longest user agent kept.
const MAX_USER_AGENT: usize = 512;

impl ClientIp {
    pub fn of(req: &HttpRequest) -> Self {
        let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
            return Self(None);
        };
        let client = match req.app_data::<web::Data<TrustedProxies>>() {
            Some(trusted) if !trusted.is_empty() => trusted.client(
                peer,
                req.headers()
                    .get_all("x-forwarded-for")
                    .filter_map(|v| v.to_str().ok()),
            ),
            _ => peer.to_canonical(),
        };
        Self(Some(client.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.168.1.7".parse().expect("list");
        // The peer is not a proxy: its word about others is ignored.
        assert_eq!(
            trusted.client(ip("203.0.113.9"), ["1.2.3.4"].into_iter()),
            ip("203.0.113.9")
        );
        // Gateway (10.1.1.1) appended the ingress (10.2.2.2), which appended the client.
        assert_eq!(
            trusted.client(
                ip("10.1.1.1"),
                ["6.6.6.6, 198.51.100.4, 10.2.2.2"].into_iter()
            ),
            ip("198.51.100.4")
        );
        // Several header lines read as one list.
        assert_eq!(
            trusted.client(ip("192.168.1.7"), ["6.6.6.6", "198.51.100.4"].into_iter()),
            ip("198.51.100.4")
        );
        // Garbage stops the walk at the last address believed.
        assert_eq!(
            trusted.client(ip("10.1.1.1"), ["198.51.100.4, junk, 10.3.3.3"].into_iter()),
            ip("10.3.3.3")
        );
        // No header: the proxy itself.
        assert_eq!(
            trusted.client(ip("10.1.1.1"), [].into_iter()),
            ip("10.1.1.1")
        );
        // IPv4-mapped peers are the IPv4 address.
        assert_eq!(
            trusted.client(ip("::ffff:10.1.1.1"), ["198.51.100.4"].into_iter()),
            ip("198.51.100.4")
        );
        assert_eq!(
            TrustedProxies::none().client(ip("10.1.1.1"), ["1.2.3.4"].into_iter()),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn lists_parse_and_refuse_garbage() {
        assert!("".parse::<TrustedProxies>().expect("empty").is_empty());
        let list: TrustedProxies = "127.0.0.1 fd00::/8,172.16.0.0/12".parse().expect("list");
        assert!(list.contains(ip("127.0.0.1")));
        assert!(list.contains(ip("fd12::1")));
        assert!(list.contains(ip("172.20.1.1")));
        assert!(!list.contains(ip("127.0.0.2")));
        for bad in ["10.0.0.0/33", "gateway", "10.0.0.0/8;"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }
}
