//! Token care: the AppRole login, `renew-self` two thirds into the lease, a new login
//! when renewal cannot help, and the optional background task doing it ahead of time.

use std::sync::Weak;
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::answer::{expect_success, failure, vault_messages};
use super::token::Token;
use super::{Inner, VaultClient};
use crate::SecretsError;

/// How often the renewal task looks again at a token that never expires.
const IDLE_RECHECK: Duration = Duration::from_secs(300);

impl VaultClient {
    /// The token to use now, after logging in or renewing if it is due.
    pub(super) async fn current_token(&self) -> Result<HeaderValue, SecretsError> {
        let mut slot = self.inner.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if !token.is_due(Instant::now()) {
                return Ok(token.header.clone());
            }
        }
        match self.refresh(slot.as_ref()).await {
            Ok(token) => {
                let header = token.header.clone();
                *slot = Some(token);
                Ok(header)
            }
            Err(error) => {
                let now = Instant::now();
                match slot.as_mut() {
                    Some(token) if !token.is_expired(now) => {
                        tracing::warn!(
                            error = %error,
                            "Vault token renewal and login failed; using the current token until it expires"
                        );
                        token.postpone_after_failure(now);
                        Ok(token.header.clone())
                    }
                    _ => {
                        *slot = None;
                        Err(error)
                    }
                }
            }
        }
    }

    /// Renews `current` if it can be renewed usefully, else logs in.
    async fn refresh(&self, current: Option<&Token>) -> Result<Token, SecretsError> {
        if let Some(token) = current {
            if token.renewable && !token.is_expired(Instant::now()) {
                match self.renew(token).await {
                    Ok(renewed) if renewed.lease() >= token.login_lease() / 2 => {
                        tracing::debug!(
                            lease_secs = renewed.lease().as_secs(),
                            "Vault token renewed"
                        );
                        return Ok(renewed);
                    }
                    Ok(_) => {
                        tracing::info!(
                            "Vault token is near its maximum lifetime; logging in again"
                        );
                    }
                    Err(error) => {
                        tracing::info!(error = %error, "Vault token renewal failed; logging in again");
                    }
                }
            }
        }
        self.login().await
    }

    async fn login(&self) -> Result<Token, SecretsError> {
        let settings = &self.inner.settings;
        let url = self.url(&["auth", &settings.approle_mount, "login"])?;
        let body = json!({ "role_id": settings.role_id, "secret_id": settings.secret_id });
        let started = Instant::now();
        let answer = self
            .send("AppRole login", Method::POST, url, None, Some(&body))
            .await?;
        match answer.status {
            status if status.is_success() => {
                let token = Token::from_auth(&answer.body, started, None)
                    .map_err(|err| SecretsError::BadResponse(format!("AppRole login: {err}")))?;
                tracing::info!(
                    lease_secs = token.lease().as_secs(),
                    renewable = token.renewable,
                    "logged in to Vault"
                );
                Ok(token)
            }
            // A wrong role_id or secret_id is a 400 "invalid role or secret ID".
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(SecretsError::Denied(format!(
                    "AppRole login refused ({}): {}",
                    answer.status.as_u16(),
                    vault_messages(&answer.body)
                )))
            }
            _ => Err(failure("AppRole login", &answer)),
        }
    }

    async fn renew(&self, token: &Token) -> Result<Token, SecretsError> {
        let url = self.url(&["auth", "token", "renew-self"])?;
        let started = Instant::now();
        let answer = self
            .send(
                "token renewal",
                Method::POST,
                url,
                Some(&token.header),
                Some(&json!({})),
            )
            .await?;
        let body = expect_success("token renewal", answer)?;
        Token::from_auth(&body, started, Some(token.login_lease()))
            .map_err(|err| SecretsError::BadResponse(format!("token renewal: {err}")))
    }

    /// Forgets `stale` unless another caller already replaced it.
    pub(super) async fn discard_token(&self, stale: &HeaderValue) {
        let mut slot = self.inner.token.lock().await;
        if slot.as_ref().is_some_and(|token| token.header == *stale) {
            *slot = None;
        }
    }

    /// How long the renewal task may sleep.
    async fn renewal_due_in(&self) -> Duration {
        let slot = self.inner.token.lock().await;
        match slot.as_ref() {
            None => Duration::ZERO,
            Some(token) => token.due_in(Instant::now()).unwrap_or(IDLE_RECHECK),
        }
    }
}

pub(super) async fn renewal_loop(inner: Weak<Inner>) {
    let mut failures: u32 = 0;
    loop {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let client = VaultClient { inner };
        let wait = match client.current_token().await {
            Ok(_) => {
                failures = 0;
                client.renewal_due_in().await
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %error, failures, "Vault token renewal failed");
                Duration::from_secs(1 << failures.min(5))
            }
        };
        drop(client);
        // Never spin, even on a token whose lease is already over.
        tokio::time::sleep(wait.max(Duration::from_millis(20))).await;
    }
}
