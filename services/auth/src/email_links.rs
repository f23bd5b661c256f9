//! Emailed links and passwords: verification links (at registration, and on request),
//! password-reset links, verifying an email, resetting and changing a password.
//!
//! A link carries a random single-use token (32 bytes, base64url) in its fragment,
//! `{PUBLIC_APP_URL}/verify-email#token=…` or `/reset-password#token=…`, so that it
//! never reaches a server's access log. Only the token's SHA-256 is stored; the link
//! travels to the mailer (outbox → Kafka → event-worker) sealed by the keyring.
//! Asking for a link answers the same whether the address has an account or not: the
//! work happens after the answer, in the background.

use crate::store::email_tokens::{self, EmailTokenRow, NewEmailToken, Purpose};
use chrono::Utc;
use domain::{Email, UserId};
use events::account::SealedLink;
use events::{AccountEvent, EventEnvelope};
use http_kit::{ApiError, FieldErrors};
use main_db::users::{self, UserRow};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::accounts::validate_password;
use crate::app::{App, TxError};

/// Longest token accepted (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 128;

fn invalid_link() -> ApiError {
    ApiError::bad_request_code(
        "invalid_token",
        "This link is not valid or was already used; ask for a new one",
    )
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token() -> Result<String, ApiError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The hash of a presented token, or `invalid_token` for what cannot be one.
fn presented(token: Option<&str>) -> Result<[u8; 32], ApiError> {
    let token = token.map(str::trim).unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::validation("token", "is required"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(invalid_link());
    }
    Ok(token_hash(token))
}

/// A token that may be used now: unused, unexpired, for the user's current address.
fn usable(row: Option<EmailTokenRow>) -> Result<EmailTokenRow, ApiError> {
    let row = row.ok_or_else(invalid_link)?;
    if row.used_at.is_some() {
        return Err(invalid_link());
    }
    if row.expires_at <= Utc::now() {
        return Err(ApiError::LinkExpired);
    }
    Ok(row)
}

impl App {
    /// Stores a new single-use token for `purpose` and returns the event that mails its
    /// link to the user, in the caller's transaction.
    pub async fn new_link(
        &self,
        tx: &mut diesel_async::AsyncPgConnection,
        user: &UserRow,
        purpose: Purpose,
    ) -> Result<EventEnvelope, TxError> {
        let links = &self.links;
        let (path, ttl) = match purpose {
            Purpose::VerifyEmail => ("verify-email", links.verification_ttl),
            Purpose::ResetPassword => ("reset-password", links.reset_ttl),
        };
        let token = random_token()?;
        let id = Uuid::new_v4();
        let expires_at = Utc::now()
            + chrono::Duration::from_std(ttl)
                .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
        let url = format!("{}/{path}#token={token}", links.public_app_url);
        let sealed = links
            .keyring
            .encrypt(url.as_bytes(), &SealedLink::aad(id))
            .map_err(ApiError::internal)?;
        let user_id = UserId::from_uuid(user.id);
        email_tokens::insert(
            tx,
            &NewEmailToken {
                id,
                user_id,
                purpose,
                token_hash: &token_hash(&token),
                email: &user.email,
                expires_at,
            },
        )
        .await?;
        let link = SealedLink {
            reference: id,
            key_id: sealed.key_id,
            ciphertext: sealed.ciphertext,
        };
        let (email, first_name) = (user.email.clone(), user.first_name.clone());
        let event = match purpose {
            Purpose::VerifyEmail => AccountEvent::VerificationRequested {
                user_id,
                email,
                first_name,
                link,
                expires_at,
            },
            Purpose::ResetPassword => AccountEvent::PasswordResetRequested {
                user_id,
                email,
                first_name,
                link,
                expires_at,
            },
        };
        Ok(self.account_event(&event, Some(user_id))?)
    }

    /// Verifies the address a verification token was sent to.
    pub async fn verify_email(
        &self,
        token: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<UserRow, ApiError> {
        if let Some(ip) = client_ip {
            self.throttle(&[(
                format!("verify-email:ip:{ip}"),
                self.throttles.verify_email_per_ip,
            )])
            .await?;
        }
        let hash = presented(token)?;
        let user = self
            .transaction(async |tx| {
                let row =
                    usable(email_tokens::lock_by_hash(tx, Purpose::VerifyEmail, &hash).await?)?;
                let user_id = UserId::from_uuid(row.user_id);
                let before = users::lock(tx, user_id)
                    .await?
                    .filter(|u| u.is_active)
                    .ok_or_else(invalid_link)?;
                let user = users::mark_email_verified(tx, user_id, &row.email)
                    .await?
                    // The account's address changed since the link was sent.
                    .ok_or_else(invalid_link)?;
                email_tokens::use_all(tx, user_id, Purpose::VerifyEmail).await?;
                let mut events = Vec::new();
                if before.email_verified_at.is_none() {
                    events.push(self.account_event(
                        &AccountEvent::EmailVerified {
                            user_id,
                            email: user.email.clone(),
                        },
                        Some(user_id),
                    )?);
                }
                Ok((user, events))
            })
            .await?;
        tracing::info!(user.id = %user.id, "email verified");
        Ok(user)
    }

    /// Asks for a new verification link. Always answers the same (the caller learns
    /// nothing of the address); the link is made in the background for an active,
    /// unverified account.
    pub async fn resend_verification(
        &self,
        email: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<(), ApiError> {
        let email = self
            .throttled_address(
                email,
                client_ip,
                "resend-verification",
                self.throttles.resend_verification_per_ip,
                self.throttles.resend_verification_per_email,
            )
            .await?;
        self.in_background("verification link", email, Purpose::VerifyEmail, |u| {
            u.is_active && u.email_verified_at.is_none()
        });
        Ok(())
    }

    /// Asks for a password-reset link. Always answers the same; the link is made in the
    /// background for an active account.
    pub async fn forgot_password(
        &self,
        email: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<(), ApiError> {
        let email = self
            .throttled_address(
                email,
                client_ip,
                "password-forgot",
                self.throttles.password_forgot_per_ip,
                self.throttles.password_forgot_per_email,
            )
            .await?;
        self.in_background("password reset link", email, Purpose::ResetPassword, |u| {
            u.is_active
        });
        Ok(())
    }

    /// Throttles by client address and by address, then parses the address (`None`: not
    /// an address, nothing to send; the caller answers as for any other).
    async fn throttled_address(
        &self,
        email: Option<&str>,
        client_ip: Option<&str>,
        kind: &str,
        per_ip: cache::RateLimit,
        per_email: cache::RateLimit,
    ) -> Result<Option<Email>, ApiError> {
        let raw = email.map(str::trim).unwrap_or_default();
        if raw.is_empty() {
            return Err(ApiError::validation("email", "is required"));
        }
        if raw.len() > 255 {
            return Err(ApiError::validation(
                "email",
                "must be at most 255 characters",
            ));
        }
        let normalised = raw.to_ascii_lowercase();
        let mut buckets = Vec::new();
        if let Some(ip) = client_ip {
            buckets.push((format!("{kind}:ip:{ip}"), per_ip));
        }
        buckets.push((format!("{kind}:email:{normalised}"), per_email));
        self.throttle(&buckets).await?;
        Ok(Email::parse(&normalised).ok())
    }

    /// Mails a `purpose` link to the account of `email` if `wanted` holds for it, after
    /// the answer has gone; failures are logged.
    fn in_background(
        &self,
        what: &'static str,
        email: Option<Email>,
        purpose: Purpose,
        wanted: fn(&UserRow) -> bool,
    ) {
        let Some(email) = email else {
            return;
        };
        let accounts = self.clone();
        let request_id = http_kit::request_id::current();
        tokio::spawn(http_kit::request_id::scope(request_id, async move {
            let sent = accounts
                .transaction(async |tx| {
                    let Some(user) = users::find_by_email(tx, &email).await? else {
                        return Ok((None, Vec::new()));
                    };
                    if !wanted(&user) {
                        return Ok((None, Vec::new()));
                    }
                    let event = accounts.new_link(tx, &user, purpose).await?;
                    Ok((Some(user.id), vec![event]))
                })
                .await;
            match sent {
                Ok(Some(user)) => tracing::info!(user.id = %user, "{what} sent"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "{what} not sent"),
            }
        }));
    }

    /// Sets a new password with a reset token: the email counts as verified, and every
    /// session of the user ends.
    pub async fn reset_password(
        &self,
        token: Option<&str>,
        new_password: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<UserRow, ApiError> {
        if let Some(ip) = client_ip {
            self.throttle(&[(
                format!("password-reset:ip:{ip}"),
                self.throttles.password_reset_per_ip,
            )])
            .await?;
        }
        let hash = presented(token)?;
        let mut errors = FieldErrors::new();
        let password = validate_password(&mut errors, "new_password", new_password);
        errors.into_result()?;
        let password =
            password.ok_or_else(|| ApiError::validation("new_password", "is required"))?;
        // A token that cannot be used is refused before any hashing.
        let mut conn = self.conn().await?;
        let row = usable(
            email_tokens::lock_by_hash(&mut conn, Purpose::ResetPassword, &hash)
                .await
                .map_err(ApiError::internal)?,
        )?;
        drop(conn);
        let password_hash = self.passwords.hash(password).await?;
        let user_id = UserId::from_uuid(row.user_id);
        let (user, cutoff, revoked) = self
            .transaction(async |tx| {
                let row =
                    usable(email_tokens::lock_by_hash(tx, Purpose::ResetPassword, &hash).await?)?;
                let before = users::lock(tx, user_id).await?.ok_or_else(invalid_link)?;
                if before.email != row.email || !before.is_active {
                    return Err(invalid_link().into());
                }
                users::set_password(tx, user_id, Some(&password_hash), true).await?;
                let user = users::mark_email_verified(tx, user_id, &row.email)
                    .await?
                    .ok_or_else(invalid_link)?;
                email_tokens::use_all(tx, user_id, Purpose::ResetPassword).await?;
                let (cutoff, revoked) = self.end_all_in(tx, user_id, "password reset").await?;
                let mut events = vec![self.account_event(
                    &AccountEvent::PasswordReset {
                        user_id,
                        email: user.email.clone(),
                        first_name: user.first_name.clone(),
                        sessions_revoked: revoked.len(),
                    },
                    Some(user_id),
                )?];
                if before.email_verified_at.is_none() {
                    events.push(self.account_event(
                        &AccountEvent::EmailVerified {
                            user_id,
                            email: user.email.clone(),
                        },
                        Some(user_id),
                    )?);
                }
                Ok(((user, cutoff, revoked), events))
            })
            .await?;
        self.forget_all_sessions(user_id, cutoff, &revoked).await?;
        tracing::info!(user.id = %user_id, sessions = revoked.len(), "password reset");
        Ok(user)
    }

    /// Changes the password of a signed-in user who knows the current one; every other
    /// session ends.
    pub async fn change_password(
        &self,
        user_id: UserId,
        current_session: Option<Uuid>,
        current_password: Option<&str>,
        new_password: Option<&str>,
    ) -> Result<UserRow, ApiError> {
        self.throttle(&[(
            format!("password-change:user:{user_id}"),
            self.throttles.password_change_per_user,
        )])
        .await?;
        let mut errors = FieldErrors::new();
        if current_password.is_none_or(str::is_empty) {
            errors.add("current_password", "is required");
        }
        let password = validate_password(&mut errors, "new_password", new_password);
        errors.into_result()?;
        let (Some(current), Some(password)) = (current_password, password) else {
            return Err(ApiError::validation("new_password", "is required"));
        };
        let user = self.profile(user_id).await?;
        let Some(stored) = user.password_hash.clone() else {
            return Err(ApiError::validation(
                "current_password",
                "this account has no password: set one with a password reset link",
            ));
        };
        // bcrypt reads 72 bytes: a longer "current password" is never the one set.
        let too_long = current.len() > crate::passwords::MAX_PASSWORD_BYTES;
        if !self
            .passwords
            .verify(current.to_owned(), Some(stored.clone()))
            .await?
            || too_long
        {
            return Err(ApiError::validation("current_password", "is not correct"));
        }
        let password_hash = self.passwords.hash(password).await?;
        let (user, revoked) = self
            .transaction(async |tx| {
                let before = users::lock(tx, user_id)
                    .await?
                    .ok_or(ApiError::NotFound("User"))?;
                // Changed by someone else since it was checked: check again.
                if before.password_hash.as_deref() != Some(stored.as_str()) {
                    return Err(ApiError::validation("current_password", "is not correct").into());
                }
                let user =
                    users::set_password(tx, user_id, Some(&password_hash), before.password_proven)
                        .await?
                        .ok_or(ApiError::NotFound("User"))?;
                let revoked = crate::store::sessions::revoke_all(
                    tx,
                    user_id,
                    current_session,
                    "password changed",
                )
                .await?;
                // A reset link asked for before would set the password again.
                email_tokens::use_all(tx, user_id, Purpose::ResetPassword).await?;
                let event = self.account_event(
                    &AccountEvent::PasswordChanged {
                        user_id,
                        email: user.email.clone(),
                        first_name: user.first_name.clone(),
                        sessions_revoked: revoked.len(),
                    },
                    Some(user_id),
                )?;
                Ok(((user, revoked), vec![event]))
            })
            .await?;
        self.forget_sessions(&revoked).await?;
        tracing::info!(user.id = %user_id, sessions = revoked.len(), "password changed");
        Ok(user)
    }
}
