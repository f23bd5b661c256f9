//! The auth service's state (`App`) and what every account module uses on it:
//! connections, transactions that write their events, throttles. The operations are
//! `impl App` blocks in the modules named after them: `accounts.rs` (registration,
//! profiles, users for the other services), `sessions.rs`, `email_links.rs`,
//! `admin.rs`.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use events::EventEnvelope;
use http_kit::identity::TokenVerifier;
use http_kit::ApiError;
use main_db::DbPool;
pub use main_db::{enqueue, TxError};

use crate::passwords::Passwords;
use crate::settings::Throttles;
use crate::tokens::TokenIssuer;

pub fn redis_unavailable(e: cache::CacheError) -> ApiError {
    ApiError::dependency("Redis", e)
}

/// What a transaction's work returns: its value and the events to write with it.
pub type TxResult<T> = Result<(T, Vec<EventEnvelope>), TxError>;

/// An async function whose future can be named (and required to be `Send`): what
/// `App::transaction` runs, as diesel-async's own transactions require.
pub trait TxWork<A, R>: AsyncFnOnce(A) -> R + FnOnce(A) -> <Self as TxWork<A, R>>::Fut {
    type Fut: std::future::Future<Output = R>;
}

impl<F, A, Fut, R> TxWork<A, R> for F
where
    F: AsyncFnOnce(A) -> R + FnOnce(A) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    type Fut = Fut;
}

/// How emailed links are made: the front end's URL, lifetimes, and the keyring that
/// seals them on their way to the mailer.
pub struct LinkSettings {
    pub public_app_url: String,
    pub verification_ttl: Duration,
    pub reset_ttl: Duration,
    pub keyring: secrets::Keyring,
}

#[derive(Debug, Clone)]
pub struct LoginLimits {
    pub per_ip: u32,
    pub per_account: u32,
    pub window: Duration,
}

#[derive(Clone)]
pub struct App {
    pub db: DbPool,
    pub passwords: Passwords,
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    pub revocations: cache::Revocations,
    pub limiter: cache::RateLimiter,
    pub limits: Arc<LoginLimits>,
    pub throttles: Throttles,
    pub links: Arc<LinkSettings>,
    /// Login of an unverified account answers 403 `email_not_verified`.
    pub require_verified_email: bool,
    pub tenants: clients::TenantClient,
    /// Publishes the outbox after a commit.
    pub relay: events::RelayHandle,
    /// The pair a rotation issued, sealed, kept `refresh_reuse_interval` under the
    /// rotated token's id (`sessions.rs`, `refresh`).
    pub successors: cache::OneTime,
    pub refresh_reuse_interval: std::time::Duration,
}

impl App {
    pub async fn conn(&self) -> Result<main_db::DbConnection, ApiError> {
        Ok(self.db.get().await?)
    }

    /// Runs `work` in a transaction and writes the events it returns in the same
    /// transaction; the relay publishes them after the commit.
    pub async fn transaction<'a, T, F>(&self, work: F) -> Result<T, ApiError>
    where
        for<'r> F: AsyncFnOnce(&'r mut AsyncPgConnection) -> TxResult<T>
            + TxWork<&'r mut AsyncPgConnection, TxResult<T>, Fut: Send>
            + Send
            + 'a,
        T: Send + 'a,
    {
        let mut conn = self.conn().await?;
        let (value, written) = conn
            .transaction::<_, TxError, _>(async move |tx| {
                let (value, events) = work(tx).await?;
                for event in &events {
                    enqueue(tx, event).await?;
                }
                Ok((value, !events.is_empty()))
            })
            .await?;
        if written {
            self.relay.nudge(events::OutboxDb::Main);
        }
        Ok(value)
    }

    /// Counts one hit on each `(bucket, limit)` in order; the first over its limit
    /// answers 429 with `Retry-After` (the later ones are not counted).
    pub async fn throttle(&self, buckets: &[(String, cache::RateLimit)]) -> Result<(), ApiError> {
        for (bucket, limit) in buckets {
            match self
                .limiter
                .check(bucket, *limit)
                .await
                .map_err(redis_unavailable)?
            {
                cache::RateDecision::Allowed => {}
                cache::RateDecision::Limited { retry_after } => {
                    tracing::info!(bucket = bucket.split(':').next().unwrap_or(""), "throttled");
                    return Err(ApiError::RateLimited {
                        retry_after_secs: retry_after.as_secs(),
                    });
                }
            }
        }
        Ok(())
    }
}
