//! Azure token care: refreshing one identity's stored tokens (used by
//! `POST /api/auth/sso/azure/refresh` and by the job), and the scheduled job that
//! refreshes every token expiring within `SSO_REFRESH_WINDOW_SECS`, one runner at a
//! time across replicas (a Redis lock with an expiry), with a per-identity backoff when
//! Entra cannot be reached. `invalid_grant` (the user disabled or removed in the
//! directory, its grant revoked: AADSTS50057, AADSTS700082, …) ends the platform
//! sessions that identity produced, then marks it as needing a new login.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use domain::TenantId;
use http_kit::lifecycle::CancellationToken;
use http_kit::ApiError;
use uuid::Uuid;

use crate::app::{aad, App};
use crate::azure::AzureError;
use crate::store::{self, IdentityRow};

/// The job's lock name (`<prefix>lock:sso-token-refresh`).
pub const LOCK: &str = "sso-token-refresh";
/// At most this many identities per pass.
pub const BATCH: i64 = 200;
/// Longest wait before an identity whose refresh could not reach Entra is tried again.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// What a refresh of one identity came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Refreshed,
    /// Someone else refreshed (or logged out, or unlinked) meanwhile: nothing written.
    Superseded,
    /// Entra refused the refresh token: a new sign-in is needed.
    NeedsReauth,
}

/// Refreshes `identity`'s Azure tokens with its stored refresh token.
pub async fn refresh_identity(app: &App, identity: &IdentityRow) -> Result<Outcome, ApiError> {
    let (Some(refresh), Some(key_id)) = (
        &identity.refresh_token_encrypted,
        &identity.encryption_key_id,
    ) else {
        return Ok(Outcome::NeedsReauth);
    };
    let tenant = TenantId::from_uuid(identity.tenant_id);
    let config = app.config(tenant).await?;
    let registration = app.registration(&config).await?;
    let refresh_token = app
        .open(
            key_id,
            refresh,
            &aad("user_azure_identities.refresh_token", identity.id),
        )
        .await?;
    match app.azure.refresh(&registration, &refresh_token).await {
        Ok(mut tokens) => {
            // Entra may not rotate the refresh token: keep the one we have.
            if tokens.refresh_token.is_none() {
                tokens.refresh_token = Some(refresh_token);
            }
            let sealed = app.seal_tokens(identity.id, &tokens).await?;
            let mut conn = app.conn().await?;
            let written = store::record_refresh(&mut conn, identity.id, refresh, sealed)
                .await
                .map_err(ApiError::internal)?;
            Ok(if written == 1 {
                Outcome::Refreshed
            } else {
                Outcome::Superseded
            })
        }
        Err(AzureError::InvalidGrant) => {
            // The directory no longer vouches for this user: the sessions its sign-ins
            // opened end first (a failure here is retried: nothing is marked yet).
            let revoked = app
                .auth
                .revoke_sso_sessions(domain::UserId::from_uuid(identity.user_id), tenant)
                .await
                .map_err(crate::app::service)?;
            if revoked > 0 {
                tracing::info!(tenant.id = %tenant, user.id = %identity.user_id, sessions = revoked, "platform sessions of a refused identity ended");
            }
            let mut conn = app.conn().await?;
            let written = store::mark_needs_reauth(&mut conn, identity.id, refresh)
                .await
                .map_err(ApiError::internal)?;
            if written == 0 {
                // The token was replaced meanwhile (another refresh rotated it): the
                // identity is fine.
                return Ok(Outcome::Superseded);
            }
            tracing::info!(tenant.id = %tenant, user.id = %identity.user_id, "Azure refresh token refused: a new sign-in is needed");
            Ok(Outcome::NeedsReauth)
        }
        Err(e) => Err(crate::app::provider(e)),
    }
}

/// What one pass of the job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub refreshed: usize,
    pub superseded: usize,
    pub needs_reauth: usize,
    pub failed: usize,
    pub backing_off: usize,
}

/// Per-identity backoff after failures that were not Entra's refusal.
#[derive(Default)]
pub struct Backoff {
    entries: HashMap<Uuid, (u32, Instant)>,
}

impl Backoff {
    /// The identities still waiting.
    fn waiting(&self) -> Vec<Uuid> {
        let now = Instant::now();
        self.entries
            .iter()
            .filter(|(_, (_, at))| *at > now)
            .map(|(id, _)| *id)
            .collect()
    }

    fn failed(&mut self, id: Uuid) {
        let failures = self.entries.get(&id).map_or(0, |(f, _)| *f) + 1;
        let wait = Duration::from_secs(60)
            .saturating_mul(1 << failures.min(10).saturating_sub(1))
            .min(MAX_BACKOFF);
        self.entries.insert(id, (failures, Instant::now() + wait));
    }

    fn cleared(&mut self, id: Uuid) {
        self.entries.remove(&id);
    }
}

/// One pass, if this runner gets the lock: `None` when another runner holds it.
pub async fn run_once(app: &App, backoff: &mut Backoff) -> Result<Option<Pass>, ApiError> {
    run_once_until(app, backoff, &CancellationToken::new()).await
}

/// [`run_once`], ending after the identity it is on once `stop` is cancelled.
pub async fn run_once_until(
    app: &App,
    backoff: &mut Backoff,
    stop: &CancellationToken,
) -> Result<Option<Pass>, ApiError> {
    let hold = app.settings.refresh_interval.max(Duration::from_secs(30)) * 4;
    let Some(token) = app
        .one_time
        .try_lock(LOCK, hold)
        .await
        .map_err(|e| ApiError::dependency("Redis", e))?
    else {
        return Ok(None);
    };
    // Stop well before the lock expires, so that no other runner starts meanwhile.
    let pass = pass(app, backoff, Instant::now() + hold / 2, stop).await;
    if let Err(e) = app.one_time.unlock(LOCK, &token).await {
        tracing::warn!(error = %e, "token refresh lock not released; it expires by itself");
    }
    pass.map(Some)
}

async fn pass(
    app: &App,
    backoff: &mut Backoff,
    deadline: Instant,
    stop: &CancellationToken,
) -> Result<Pass, ApiError> {
    let window = chrono::Duration::from_std(app.settings.refresh_window)
        .unwrap_or_else(|_| chrono::Duration::minutes(30));
    let waiting = backoff.waiting();
    let mut conn = app.conn().await?;
    let due = store::expiring(&mut conn, Utc::now() + window, &waiting, BATCH)
        .await
        .map_err(ApiError::internal)?;
    drop(conn);
    let mut pass = Pass {
        backing_off: waiting.len(),
        ..Pass::default()
    };
    for identity in due {
        if stop.is_cancelled() {
            break;
        }
        // Each refresh is bounded by the pass's deadline, well inside the lock's life.
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        match tokio::time::timeout(left, refresh_identity(app, &identity)).await {
            Ok(Ok(Outcome::Refreshed)) => {
                backoff.cleared(identity.id);
                pass.refreshed += 1;
            }
            Ok(Ok(Outcome::Superseded)) => {
                backoff.cleared(identity.id);
                pass.superseded += 1;
            }
            Ok(Ok(Outcome::NeedsReauth)) => {
                backoff.cleared(identity.id);
                pass.needs_reauth += 1;
            }
            Ok(Err(e)) => {
                backoff.failed(identity.id);
                pass.failed += 1;
                tracing::warn!(tenant.id = %identity.tenant_id, user.id = %identity.user_id, error = %e, "Azure token refresh failed; backing off");
            }
            Err(_) => {
                backoff.failed(identity.id);
                pass.failed += 1;
                tracing::warn!(tenant.id = %identity.tenant_id, user.id = %identity.user_id, "Azure token refresh ran past the pass's deadline; backing off");
                break;
            }
        }
    }
    Ok(pass)
}

/// The job: a pass every `SSO_REFRESH_INTERVAL_SECS` until `stop` is cancelled (a pass
/// under way ends after the identity it is on, and releases the lock).
pub async fn run(app: actix_web::web::Data<App>, stop: CancellationToken) {
    let mut backoff = Backoff::default();
    let mut tick = tokio::time::interval(app.settings.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match run_once_until(&app, &mut backoff, &stop).await {
            Ok(Some(pass)) if pass != Pass::default() => {
                tracing::info!(
                    refreshed = pass.refreshed,
                    needs_reauth = pass.needs_reauth,
                    failed = pass.failed,
                    backing_off = pass.backing_off,
                    "Azure token refresh pass"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Azure token refresh pass failed"),
        }
    }
}
