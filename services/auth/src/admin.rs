//! Platform administration and account safety: deactivating and reactivating users
//! (deactivation ends every session at once), making the `tenant init` admin, and
//! securing an account a directory identity is linked to by email.

use domain::UserId;
use events::account::PasswordRemoved;
use events::AccountEvent;
use http_kit::ApiError;
use main_db::users::{self, UserRow};

use crate::app::App;

impl App {
    /// The caller, if an active platform administrator; 403 otherwise.
    pub async fn platform_admin(&self, caller: UserId) -> Result<UserRow, ApiError> {
        let user = self.profile(caller).await?;
        if user.is_active && user.is_platform_admin {
            Ok(user)
        } else {
            Err(ApiError::Forbidden(
                "This needs a platform administrator".into(),
            ))
        }
    }

    /// Deactivates `target`: it can no longer sign in or refresh, and every session
    /// ends at once.
    pub async fn deactivate(&self, admin: UserId, target: UserId) -> Result<UserRow, ApiError> {
        if admin == target {
            return Err(ApiError::BadRequest(
                "Platform administrators cannot deactivate themselves".into(),
            ));
        }
        let (user, cutoff, revoked) = self
            .transaction(async |tx| {
                users::lock(tx, target)
                    .await?
                    .ok_or(ApiError::NotFound("User"))?;
                let user = users::set_active(tx, target, false)
                    .await?
                    .ok_or(ApiError::NotFound("User"))?;
                let (cutoff, revoked) = self.end_all_in(tx, target, "account deactivated").await?;
                let event = self.account_event(
                    &AccountEvent::Deactivated {
                        user_id: target,
                        email: user.email.clone(),
                        first_name: user.first_name.clone(),
                        sessions_revoked: revoked.len(),
                    },
                    Some(admin),
                )?;
                Ok(((user, cutoff, revoked), vec![event]))
            })
            .await?;
        self.forget_all_sessions(target, cutoff, &revoked).await?;
        tracing::info!(user.id = %target, admin = %admin, sessions = revoked.len(), "user deactivated");
        Ok(user)
    }

    /// Reactivates `target` (its ended sessions stay ended).
    pub async fn reactivate(&self, admin: UserId, target: UserId) -> Result<UserRow, ApiError> {
        let user = self
            .transaction(async |tx| {
                let before = users::lock(tx, target)
                    .await?
                    .ok_or(ApiError::NotFound("User"))?;
                let user = users::set_active(tx, target, true)
                    .await?
                    .ok_or(ApiError::NotFound("User"))?;
                let mut events = Vec::new();
                if !before.is_active {
                    events.push(self.account_event(
                        &AccountEvent::Reactivated {
                            user_id: target,
                            email: user.email.clone(),
                            first_name: user.first_name.clone(),
                        },
                        Some(admin),
                    )?);
                }
                Ok((user, events))
            })
            .await?;
        tracing::info!(user.id = %target, admin = %admin, "user reactivated");
        Ok(user)
    }

    /// Makes the user with `email` a platform administrator with a verified address
    /// (`tenant init --create-admin`).
    pub async fn make_platform_admin(&self, email: &str) -> Result<UserRow, ApiError> {
        let email = domain::Email::parse(email)
            .map_err(|e| ApiError::validation("email", e.to_string()))?;
        let mut conn = self.conn().await?;
        let user = users::find_by_email(&mut conn, &email)
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("User"))?;
        users::make_platform_admin(&mut conn, UserId::from_uuid(user.id))
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("User"))
    }

    /// Before a directory identity is linked to an existing account by its email: a
    /// password chosen before anyone proved control of the mailbox (at registration,
    /// possibly by someone who only typed the address) is removed, and every session
    /// ends, so that whoever registered the address loses the account to its owner.
    /// A password set through a reset link stays. Returns whether a password went.
    pub async fn secure_for_sso_link(&self, target: UserId) -> Result<bool, ApiError> {
        let outcome = self
            .transaction(async |tx| {
                let user = users::lock(tx, target)
                    .await?
                    .ok_or(ApiError::NotFound("User"))?;
                if user.password_hash.is_none() || user.password_proven {
                    return Ok((None, Vec::new()));
                }
                users::set_password(tx, target, None, false).await?;
                let (cutoff, revoked) = self
                    .end_all_in(tx, target, "directory identity linked")
                    .await?;
                let event = self.account_event(
                    &AccountEvent::PasswordRemoved {
                        user_id: target,
                        email: user.email.clone(),
                        first_name: user.first_name.clone(),
                        reason: PasswordRemoved::SsoLink,
                        sessions_revoked: revoked.len(),
                    },
                    None,
                )?;
                Ok((Some((cutoff, revoked)), vec![event]))
            })
            .await?;
        let Some((cutoff, revoked)) = outcome else {
            return Ok(false);
        };
        self.forget_all_sessions(target, cutoff, &revoked).await?;
        tracing::info!(user.id = %target, sessions = revoked.len(), "unproven password removed on SSO link");
        Ok(true)
    }
}
