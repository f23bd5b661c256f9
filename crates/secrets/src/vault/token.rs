//! The Vault token held by a client and when it must be renewed: two thirds into its
//! lease. The token itself lives in a sensitive `HeaderValue`, never in a `String` that
//! could end up in a message.

use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;
use serde_json::Value;

use crate::SecretsError;

/// How long a failed renewal waits before the next attempt, at most.
const RETRY_AFTER_FAILURE_MAX: Duration = Duration::from_secs(5);

pub(super) struct Token {
    pub(super) header: HeaderValue,
    pub(super) renewable: bool,
    /// Taken before the request that produced the token left, so the lease is never
    /// assumed to run longer than it does at Vault.
    obtained_at: Instant,
    /// Zero: the token never expires.
    lease: Duration,
    /// The lease granted at login; a renewal granting much less means `max_ttl` is near.
    login_lease: Duration,
    next_attempt: Instant,
}

impl Token {
    /// Reads the `auth` block of a login or renew-self answer.
    pub(super) fn from_auth(
        body: &Value,
        obtained_at: Instant,
        login_lease: Option<Duration>,
    ) -> Result<Self, SecretsError> {
        let auth = body
            .get("auth")
            .filter(|auth| auth.is_object())
            .ok_or_else(|| SecretsError::BadResponse("the answer has no `auth` object".into()))?;
        let token = auth
            .get("client_token")
            .and_then(Value::as_str)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| SecretsError::BadResponse("`auth.client_token` is missing".into()))?;
        let mut header = HeaderValue::from_str(token).map_err(|_| {
            SecretsError::BadResponse("`auth.client_token` is not a valid header value".into())
        })?;
        header.set_sensitive(true);
        let lease = auth
            .get("lease_duration")
            .and_then(Value::as_u64)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                SecretsError::BadResponse("`auth.lease_duration` is not a number".into())
            })?;
        let renewable = auth
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut token = Self {
            header,
            renewable,
            obtained_at,
            lease,
            login_lease: login_lease.unwrap_or(lease),
            next_attempt: obtained_at,
        };
        token.next_attempt = token.renew_at().unwrap_or(obtained_at);
        Ok(token)
    }

    pub(super) fn lease(&self) -> Duration {
        self.lease
    }

    pub(super) fn login_lease(&self) -> Duration {
        self.login_lease
    }

    fn never_expires(&self) -> bool {
        self.lease.is_zero()
    }

    fn renew_at(&self) -> Option<Instant> {
        (!self.never_expires()).then(|| self.obtained_at + self.lease * 2 / 3)
    }

    pub(super) fn is_expired(&self, now: Instant) -> bool {
        !self.never_expires() && now >= self.obtained_at + self.lease
    }

    /// Time to renew (or to retry a failed renewal).
    pub(super) fn is_due(&self, now: Instant) -> bool {
        !self.never_expires() && now >= self.next_attempt
    }

    /// How long until [`Token::is_due`]; `None` for a token that never expires.
    pub(super) fn due_in(&self, now: Instant) -> Option<Duration> {
        (!self.never_expires()).then(|| self.next_attempt.saturating_duration_since(now))
    }

    /// After a failed renewal and login: keep the token, try again a little later.
    pub(super) fn postpone_after_failure(&mut self, now: Instant) {
        let remaining = (self.obtained_at + self.lease).saturating_duration_since(now);
        self.next_attempt = now + (remaining / 3).min(RETRY_AFTER_FAILURE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(lease: u64, renewable: bool) -> (Token, Instant) {
        let now = Instant::now();
        let body = json!({"auth": {"client_token": "s.abc", "lease_duration": lease, "renewable": renewable}});
        (Token::from_auth(&body, now, None).expect("token"), now)
    }

    #[test]
    fn renewal_is_due_two_thirds_into_the_lease() {
        let (token, at) = token(30, true);
        assert!(!token.is_due(at + Duration::from_secs(19)));
        assert!(token.is_due(at + Duration::from_secs(20)));
        assert!(!token.is_expired(at + Duration::from_secs(29)));
        assert!(token.is_expired(at + Duration::from_secs(30)));
        assert_eq!(token.due_in(at), Some(Duration::from_secs(20)));
    }

    #[test]
    fn a_token_without_lease_is_never_renewed() {
        let (token, at) = token(0, false);
        assert!(!token.is_due(at + Duration::from_secs(1_000_000)));
        assert!(!token.is_expired(at + Duration::from_secs(1_000_000)));
        assert_eq!(token.due_in(at), None);
    }

    #[test]
    fn a_failed_renewal_is_retried_before_expiry() {
        let (mut token, at) = token(30, true);
        let now = at + Duration::from_secs(21);
        token.postpone_after_failure(now);
        assert!(!token.is_due(now));
        assert!(token.is_due(now + Duration::from_secs(3)));
    }

    #[test]
    fn a_malformed_auth_block_is_a_bad_response_without_the_token() {
        let body = json!({"auth": {"client_token": "s.secret", "lease_duration": "soon"}});
        let error = Token::from_auth(&body, Instant::now(), None)
            .err()
            .expect("refused");
        assert!(matches!(error, SecretsError::BadResponse(_)));
        assert!(!error.to_string().contains("s.secret"));
    }
}
