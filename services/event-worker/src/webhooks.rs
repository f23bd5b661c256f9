//! Webhooks: tenant admins register endpoints; every event of their tenant whose type an
//! endpoint subscribes to becomes one delivery (created with the processed event ids in
//! one transaction), which the dispatcher POSTs signed as Standard Webhooks:
//! `webhook-id` (the delivery's id, the same on every retry, so receivers can drop
//! repeats), `webhook-timestamp`, `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
//! `id.timestamp.body` with the endpoint's `whsec_` secret). A 2xx delivers; a 410
//! disables the endpoint; anything else is retried with exponential backoff and
//! jitter until `retry_for` has passed since the event. Every attempt is recorded.
//! A sealed `link` in an event's `data` (an invitation's single-use token on its way
//! to the mailer) is left out of the payload.
//!
//! Targets must be public addresses over HTTPS unless private targets are allowed
//! (development and tests): the URL's host is checked at registration and every name
//! is resolved through a resolver that drops private, loopback and link-local
//! addresses, and redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use events::{EventEnvelope, Handler, HandlerError, Shutdown};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use hmac::{Hmac, KeyInit, Mac};
use main_db::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use main_db::DbPool;
use sha2::Sha256;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::audit::classify;

/// The consumer's name: its group suffix and its `processed_events.consumer`.
pub const CONSUMER: &str = "webhooks";

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Timeout of one delivery attempt (connect and answer).
    pub timeout: Duration,
    /// Retries stop this long after the event.
    pub retry_for: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Allow `http://` and private, loopback and link-local targets.
    pub allow_private_targets: bool,
    /// At most this many deliveries in flight.
    pub concurrency: usize,
}

/// `v1,<base64 HMAC-SHA256>` of `msg_id.timestamp.body` under the `whsec_` secret.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Result<String, String> {
    let key = STANDARD
        .decode(
            secret
                .strip_prefix("whsec_")
                .ok_or("the secret must start with whsec_")?,
        )
        .map_err(|e| format!("the secret is not base64: {e}"))?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key).map_err(|e| format!("unusable secret: {e}"))?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A new `whsec_` secret: 32 random bytes.
pub fn new_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!("whsec_{}", STANDARD.encode(bytes)))
}

/// Whether `ip` is an address on the public internet (not loopback, private,
/// link-local such as cloud metadata services, carrier-grade NAT, multicast…).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            // Addresses that carry an IPv4 address reach it: judged by that address.
            // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96), 6to4 (2002::/16).
            if s[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public(embedded(s[6], s[7]));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(embedded(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(embedded(s[1], s[2]));
            }
            let first = s[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // site-local (deprecated, still routed inside some networks)
                || (first & 0xffc0) == 0xfec0
                // local-use NAT64 (64:ff9b:1::/48), discard-only (100::/64)
                || (first == 0x64 && s[1] == 0xff9b)
                || (first == 0x100 && s[1..4] == [0, 0, 0])
                // Teredo (2001::/32) hides an IPv4 address; documentation (2001:db8::/32)
                || (first == 0x2001 && (s[1] == 0 || s[1] == 0xdb8)))
        }
    }
}

/// Why a URL cannot be a webhook target, if it cannot.
pub fn check_target(url: &str, allow_private: bool) -> Result<url::Url, &'static str> {
    if url.len() > 2048 {
        return Err("must be at most 2048 characters");
    }
    let parsed = url::Url::parse(url).map_err(|_| "must be an absolute URL")?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err("must be an https:// URL"),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not contain credentials");
    }
    match parsed.host() {
        None => return Err("must have a host"),
        Some(url::Host::Ipv4(ip)) if !allow_private && !is_public(IpAddr::V4(ip)) => {
            return Err("must not point to a private address")
        }
        Some(url::Host::Ipv6(ip)) if !allow_private && !is_public(IpAddr::V6(ip)) => {
            return Err("must not point to a private address")
        }
        // `localhost.` is the same name, fully qualified (delivery refuses it at connect
        // time anyway, but it must not be registered and retried).
        Some(url::Host::Domain(name))
            if !allow_private && {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == "localhost" || name.ends_with(".localhost")
            } =>
        {
            return Err("must not point to a private address")
        }
        _ => {}
    }
    Ok(parsed)
}

/// Resolves names to their public addresses only (the check holds at connect time, so
/// a name that changes its answer cannot reach an internal host).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addresses.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Turns events into deliveries.
pub struct Webhooks {
    db: DbPool,
    wake: Arc<Notify>,
}

impl Webhooks {
    pub fn new(db: DbPool, wake: Arc<Notify>) -> Self {
        Self { db, wake }
    }
}

#[derive(Queryable)]
struct Subscription {
    id: Uuid,
    tenant_id: Uuid,
    event_types: Vec<Option<String>>,
}

/// The body of an event's deliveries: the envelope, without a sealed `link`.
fn payload_of(event: &EventEnvelope) -> Result<serde_json::Value, serde_json::Error> {
    let mut payload = serde_json::to_value(event)?;
    if let Some(data) = payload["data"].as_object_mut() {
        data.remove("link");
    }
    Ok(payload)
}

impl Handler for Webhooks {
    fn name(&self) -> &str {
        CONSUMER
    }

    fn handle<'a>(
        &'a self,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let mut conn = crate::audit::connection(&self.db).await?;
            let created = conn
                .transaction::<_, diesel::result::Error, _>(async |tx| {
                    let mut tenants: Vec<Uuid> = events
                        .iter()
                        .filter_map(|e| e.tenant_id.map(domain::TenantId::into_uuid))
                        .collect();
                    tenants.sort_unstable();
                    tenants.dedup();
                    if tenants.is_empty() {
                        return Ok(0);
                    }
                    let subscriptions: Vec<Subscription> = webhook_endpoints::table
                        .filter(webhook_endpoints::tenant_id.eq_any(&tenants))
                        .filter(webhook_endpoints::enabled.eq(true))
                        .select((
                            webhook_endpoints::id,
                            webhook_endpoints::tenant_id,
                            webhook_endpoints::event_types,
                        ))
                        .load(tx)
                        .await?;
                    // Each event with the endpoints that want it; only those events have
                    // an effect, so only their ids are remembered.
                    let matched: Vec<(&EventEnvelope, Vec<Uuid>)> = events
                        .iter()
                        .filter_map(|event| {
                            let tenant = event.tenant_id.map(domain::TenantId::into_uuid)?;
                            let endpoints: Vec<Uuid> = subscriptions
                                .iter()
                                .filter(|s| {
                                    s.tenant_id == tenant
                                        && s.event_types
                                            .iter()
                                            .flatten()
                                            .any(|t| *t == event.event_type)
                                })
                                .map(|s| s.id)
                                .collect();
                            (!endpoints.is_empty()).then_some((event, endpoints))
                        })
                        .collect();
                    if matched.is_empty() {
                        return Ok(0);
                    }
                    let ids: Vec<Uuid> = matched.iter().map(|(e, _)| e.id).collect();
                    let fresh = events::claim(tx, CONSUMER, &ids).await?;
                    let mut rows = Vec::new();
                    for (event, endpoints) in matched.iter().filter(|(e, _)| fresh.contains(&e.id))
                    {
                        let payload = payload_of(event)
                            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
                        for endpoint in endpoints {
                            rows.push((
                                webhook_deliveries::id.eq(Uuid::new_v4()),
                                webhook_deliveries::endpoint_id.eq(*endpoint),
                                webhook_deliveries::event_id.eq(event.id),
                                webhook_deliveries::event_type.eq(event.event_type.clone()),
                                webhook_deliveries::payload.eq(payload.clone()),
                            ));
                        }
                    }
                    if rows.is_empty() {
                        return Ok(0);
                    }
                    diesel::insert_into(webhook_deliveries::table)
                        .values(&rows)
                        .on_conflict((
                            webhook_deliveries::endpoint_id,
                            webhook_deliveries::event_id,
                        ))
                        .do_nothing()
                        .execute(tx)
                        .await
                })
                .await
                .map_err(classify)?;
            if created > 0 {
                self.wake.notify_one();
            }
            Ok(())
        }
        .boxed()
    }
}

#[derive(Queryable, Clone)]
struct Due {
    id: Uuid,
    payload: serde_json::Value,
    attempts: i32,
    created_at: DateTime<Utc>,
    endpoint_id: Uuid,
    url: String,
    secret: String,
    secret_key_id: Option<String>,
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Gone,
    Retry { status: Option<u16>, error: String },
}

/// Sends due deliveries until `shutdown`; returns after finishing those in flight.
pub async fn dispatch(
    db: DbPool,
    settings: WebhookSettings,
    keyring: Arc<secrets::Keyring>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    let mut builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment would resolve the target itself, past the
        // public-address check.
        .no_proxy()
        .user_agent(concat!(
            "saas-platform-webhooks/",
            env!("CARGO_PKG_VERSION")
        ));
    if settings.allow_private_targets {
        tracing::warn!("WEBHOOK_ALLOW_PRIVATE_TARGETS is on: any tenant admin can make this service send requests to loopback, private and metadata addresses (local runs only)");
    } else {
        builder = builder.dns_resolver(Arc::new(PublicOnly));
    }
    let http = match builder.build() {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "webhook client could not be built; no webhooks are sent");
            return;
        }
    };
    let mut stop = shutdown.subscribe();
    // How long a taken delivery stays invisible to other dispatchers: past it, a
    // dispatcher that died mid-send is presumed gone and the delivery is retried.
    let lease = settings.timeout * 3 + Duration::from_secs(5);
    loop {
        if *stop.borrow() {
            return;
        }
        let taken = match take_due(&db, settings.concurrency, lease).await {
            Ok(taken) => taken,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher cannot read deliveries");
                Vec::new()
            }
        };
        if taken.is_empty() {
            let pause = next_due_in(&db).await.unwrap_or(Duration::from_secs(5));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                () = wake.notified() => {}
                () = tokio::time::sleep(pause) => {}
            }
            continue;
        }
        let sends = taken.into_iter().map(|due| {
            let http = &http;
            let db = &db;
            let settings = &settings;
            let keyring = &keyring;
            async move {
                let started = Instant::now();
                let outcome = send(http, keyring, &due, settings.allow_private_targets).await;
                if let Err(e) = record(db, settings, &due, &outcome, started.elapsed()).await {
                    // The lease runs out and the delivery is tried again, same id.
                    tracing::warn!(delivery = %due.id, error = %e, "webhook attempt not recorded");
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }
}

async fn take_due(db: &DbPool, limit: usize, lease: Duration) -> anyhow::Result<Vec<Due>> {
    let mut conn = db.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let limit = i64::try_from(limit).unwrap_or(16);
    let taken: Vec<Uuid> = conn
        .transaction::<_, diesel::result::Error, _>(async |tx| {
            let ids: Vec<Uuid> = webhook_deliveries::table
                .filter(webhook_deliveries::status.eq("pending"))
                .filter(webhook_deliveries::next_attempt_at.le(diesel::dsl::now))
                .order(webhook_deliveries::next_attempt_at.asc())
                .select(webhook_deliveries::id)
                .limit(limit)
                .for_update()
                .skip_locked()
                .load(tx)
                .await?;
            let until = Utc::now()
                + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(60));
            diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
                .set(webhook_deliveries::next_attempt_at.eq(until))
                .execute(tx)
                .await?;
            Ok(ids)
        })
        .await?;
    if taken.is_empty() {
        return Ok(Vec::new());
    }
    Ok(webhook_deliveries::table
        .inner_join(webhook_endpoints::table)
        .filter(webhook_deliveries::id.eq_any(&taken))
        .select((
            webhook_deliveries::id,
            webhook_deliveries::payload,
            webhook_deliveries::attempts,
            webhook_deliveries::created_at,
            webhook_endpoints::id,
            webhook_endpoints::url,
            webhook_endpoints::secret,
            webhook_endpoints::secret_key_id,
        ))
        .load(&mut conn)
        .await?)
}

async fn next_due_in(db: &DbPool) -> Option<Duration> {
    let mut conn = db.get().await.ok()?;
    let next: Option<DateTime<Utc>> = webhook_deliveries::table
        .filter(webhook_deliveries::status.eq("pending"))
        .select(diesel::dsl::min(webhook_deliveries::next_attempt_at))
        .get_result(&mut conn)
        .await
        .ok()?;
    let wait = (next? - Utc::now()).to_std().unwrap_or(Duration::ZERO);
    Some(wait.min(Duration::from_secs(5)))
}

/// Associated data of an endpoint's sealed secret: its column and row.
pub fn secret_aad(endpoint: Uuid) -> Vec<u8> {
    format!("webhook_endpoints.secret:{endpoint}").into_bytes()
}

/// The endpoint's `whsec_` secret: opened with the keyring when it is sealed (rows from
/// before sealing hold it in clear).
fn open_secret(keyring: &secrets::Keyring, due: &Due) -> Result<String, String> {
    match &due.secret_key_id {
        None => Ok(due.secret.clone()),
        Some(key_id) => keyring
            .decrypt(key_id, &due.secret, &secret_aad(due.endpoint_id))
            .map_err(|e| {
                format!(
                    "the endpoint's secret cannot be opened ({e}); is its key in SECRETS_KEYRING?"
                )
            })
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| "the endpoint's secret is not UTF-8".to_owned())
            }),
    }
}

async fn send(
    http: &reqwest::Client,
    keyring: &secrets::Keyring,
    due: &Due,
    allow_private: bool,
) -> Outcome {
    if let Err(reason) = check_target(&due.url, allow_private) {
        return Outcome::Retry {
            status: None,
            error: format!("target refused: {reason}"),
        };
    }
    let body = due.payload.to_string();
    let timestamp = Utc::now().timestamp();
    let msg_id = format!("msg_{}", due.id.simple());
    let signature = match open_secret(keyring, due)
        .and_then(|secret| sign(&secret, &msg_id, timestamp, body.as_bytes()))
    {
        Ok(signature) => signature,
        Err(error) => {
            return Outcome::Retry {
                status: None,
                error,
            }
        }
    };
    let response = http
        .post(&due.url)
        .header("content-type", "application/json")
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            match status {
                200..=299 => Outcome::Delivered(status),
                410 => Outcome::Gone,
                _ => Outcome::Retry {
                    status: Some(status),
                    error: format!("answered {status}"),
                },
            }
        }
        Err(e) => Outcome::Retry {
            status: None,
            // Without the URL: it may carry a token of the receiver's.
            error: e.without_url().to_string(),
        },
    }
}

/// `base` · 2^attempt, capped, ± 25 %.
fn backoff(settings: &WebhookSettings, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
    let delay = settings
        .min_backoff
        .saturating_mul(2u32.saturating_pow(exp))
        .min(settings.max_backoff);
    let spread = f64::from(Uuid::new_v4().as_fields().1 % 1000) / 2000.0;
    delay.mul_f64(0.75 + spread)
}

async fn record(
    db: &DbPool,
    settings: &WebhookSettings,
    due: &Due,
    outcome: &Outcome,
    took: Duration,
) -> anyhow::Result<()> {
    let mut conn = db.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let attempts = due.attempts + 1;
    let (status_code, error) = match outcome {
        Outcome::Delivered(code) => (Some(i32::from(*code)), None),
        Outcome::Gone => (Some(410), Some("410 Gone: endpoint disabled".to_owned())),
        Outcome::Retry { status, error } => (status.map(i32::from), Some(error.clone())),
    };
    let error = error.map(|e| e.chars().take(500).collect::<String>());
    let next = Utc::now()
        + chrono::Duration::from_std(backoff(settings, due.attempts))
            .unwrap_or(chrono::Duration::hours(1));
    let deadline = due.created_at
        + chrono::Duration::from_std(settings.retry_for).unwrap_or(chrono::Duration::days(1));
    let status = match outcome {
        Outcome::Delivered(_) => "delivered",
        Outcome::Gone => "abandoned",
        Outcome::Retry { .. } if next > deadline => "failed",
        Outcome::Retry { .. } => "pending",
    };
    conn.transaction::<_, diesel::result::Error, _>(async |tx| {
        diesel::insert_into(webhook_attempts::table)
            .values((
                webhook_attempts::delivery_id.eq(due.id),
                webhook_attempts::status_code.eq(status_code),
                webhook_attempts::error.eq(error.clone()),
                webhook_attempts::duration_ms
                    .eq(i32::try_from(took.as_millis()).unwrap_or(i32::MAX)),
            ))
            .execute(tx)
            .await?;
        diesel::update(webhook_deliveries::table.find(due.id))
            .set((
                webhook_deliveries::status.eq(status),
                webhook_deliveries::attempts.eq(attempts),
                webhook_deliveries::next_attempt_at.eq(next),
                webhook_deliveries::last_status_code.eq(status_code),
                webhook_deliveries::last_error.eq(error.clone()),
                webhook_deliveries::finished_at.eq((status != "pending").then(Utc::now)),
            ))
            .execute(tx)
            .await?;
        if matches!(outcome, Outcome::Gone) {
            diesel::update(webhook_endpoints::table.find(due.endpoint_id))
                .set((
                    webhook_endpoints::enabled.eq(false),
                    webhook_endpoints::disabled_reason.eq("the receiver answered 410 Gone"),
                    webhook_endpoints::updated_at.eq(diesel::dsl::now),
                ))
                .execute(tx)
                .await?;
            // Nothing more goes to a disabled endpoint.
            diesel::update(
                webhook_deliveries::table
                    .filter(webhook_deliveries::endpoint_id.eq(due.endpoint_id))
                    .filter(webhook_deliveries::status.eq("pending")),
            )
            .set((
                webhook_deliveries::status.eq("abandoned"),
                webhook_deliveries::finished_at.eq(Utc::now()),
            ))
            .execute(tx)
            .await?;
        }
        Ok(())
    })
    .await?;
    match (status, outcome) {
        ("delivered", _) => tracing::debug!(delivery = %due.id, attempts, "webhook delivered"),
        ("abandoned", _) => {
            tracing::warn!(endpoint = %due.endpoint_id, "webhook endpoint answered 410 Gone: disabled")
        }
        ("failed", _) => {
            tracing::warn!(delivery = %due.id, attempts, error = ?error, "webhook delivery given up")
        }
        _ => {
            tracing::info!(delivery = %due.id, attempts, error = ?error, "webhook attempt failed; retrying")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_reference() {
        // The example of the Standard Webhooks specification's reference libraries.
        let signature = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .expect("sign");
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("no-prefix", "m", 1, b"").is_err());
    }

    #[test]
    fn deliveries_leave_a_sealed_link_out() {
        let event = EventEnvelope::new(
            events::Topic::TenantInvitation,
            Some(domain::TenantId::new()),
            None,
            serde_json::json!({"action": "invitation.created", "email": "a@example.com",
                               "link": {"ref": "r", "key_id": "k", "ciphertext": "sealed"}}),
        )
        .expect("event");
        let payload = payload_of(&event).expect("payload");
        assert!(payload["data"].get("link").is_none(), "{payload}");
        assert_eq!(payload["data"]["email"], "a@example.com");
        assert_eq!(payload["id"], serde_json::json!(event.id));
    }

    #[test]
    fn secrets_are_fresh_whsec_keys_of_32_bytes() {
        let (a, b) = (new_secret().expect("secret"), new_secret().expect("secret"));
        assert_ne!(a, b);
        let key = STANDARD
            .decode(a.strip_prefix("whsec_").expect("prefix"))
            .expect("base64");
        assert_eq!(key.len(), 32);
    }

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        for url in [
            "http://example.com/hook",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://localhost/hook",
            "https://localhost./hook",
            "https://api.localhost./hook",
            "https://LOCALHOST/hook",
            "https://user:pass@example.com/hook",
            "ftp://example.com/hook",
            "not a url",
        ] {
            assert!(check_target(url, false).is_err(), "{url}");
        }
        assert!(check_target("https://hooks.example.com/in?token=1", false).is_ok());
        assert!(check_target("https://8.8.8.8/hook", false).is_ok());
        assert!(check_target("http://127.0.0.1:9000/hook", true).is_ok());
        assert!(!is_public("100.64.0.1".parse().expect("ip")));
        assert!(!is_public("::ffff:192.168.1.1".parse().expect("ip")));
        // IPv6 forms that reach an IPv4 address are judged by it.
        for private in [
            "::127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "64:ff9b:1::1",
            "fec0::1",
            "2001::1",
            "2001:db8::1",
            "100::1",
            "198.18.0.1",
            "198.19.255.255",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in [
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2606:4700::1111",
            "8.8.8.8",
        ] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }
}
