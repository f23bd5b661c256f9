//! The `data` of `user.account` events: what happened to a user's account (no tenant).
//! The auth service writes them (the sso service writes `user.sso_identity_linked`); the event-worker records each in the audit log and
//! mails the user where an email belongs to the action. The JSON Schema is
//! `schemas/user.account.json`.
//!
//! The two requests carry a link with a single-use token, sealed by the keyring that
//! auth and the event-worker share (associated data [`SealedLink::aad`]): the token is
//! never in clear in the outbox, in Kafka or in the audit log (which leaves `link` out).

use chrono::{DateTime, Utc};
use domain::UserId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A link with a secret token, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedLink {
    /// The token's id (`user_email_tokens.id`), which the associated data names.
    #[serde(rename = "ref")]
    pub reference: Uuid,
    pub key_id: String,
    pub ciphertext: String,
}

impl SealedLink {
    /// The associated data that binds a sealed link to its token.
    pub fn aad(reference: Uuid) -> Vec<u8> {
        format!("user_email_tokens.link:{reference}").into_bytes()
    }
}

/// Who ended sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedBy {
    /// The user, from the session list.
    User,
    /// A platform administrator.
    Admin,
    /// The user's directory refused its SSO identity (disabled or removed).
    SsoIdentityDisabled,
}

/// Why a password was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordRemoved {
    /// A directory identity was linked to the account by its email, and the password
    /// had been chosen before anyone proved control of that mailbox.
    SsoLink,
}

/// The `data` of a `user.account` event, tagged by `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action")]
pub enum AccountEvent {
    #[serde(rename = "user.verification_requested")]
    VerificationRequested {
        user_id: UserId,
        email: String,
        first_name: String,
        link: SealedLink,
        expires_at: DateTime<Utc>,
    },
    #[serde(rename = "user.email_verified")]
    EmailVerified { user_id: UserId, email: String },
    #[serde(rename = "user.password_reset_requested")]
    PasswordResetRequested {
        user_id: UserId,
        email: String,
        first_name: String,
        link: SealedLink,
        expires_at: DateTime<Utc>,
    },
    #[serde(rename = "user.password_reset")]
    PasswordReset {
        user_id: UserId,
        email: String,
        first_name: String,
        sessions_revoked: usize,
    },
    #[serde(rename = "user.password_changed")]
    PasswordChanged {
        user_id: UserId,
        email: String,
        first_name: String,
        sessions_revoked: usize,
    },
    #[serde(rename = "user.password_removed")]
    PasswordRemoved {
        user_id: UserId,
        email: String,
        first_name: String,
        reason: PasswordRemoved,
        sessions_revoked: usize,
    },
    #[serde(rename = "user.sessions_revoked")]
    SessionsRevoked {
        user_id: UserId,
        email: String,
        first_name: String,
        by: RevokedBy,
        sessions_revoked: usize,
        /// The one session revoked, when only one was.
        session_id: Option<Uuid>,
    },
    #[serde(rename = "user.deactivated")]
    Deactivated {
        user_id: UserId,
        email: String,
        first_name: String,
        sessions_revoked: usize,
    },
    #[serde(rename = "user.reactivated")]
    Reactivated {
        user_id: UserId,
        email: String,
        first_name: String,
    },
    /// A directory identity was linked to the existing account (by its verified email,
    /// or from the profile): written by the sso service.
    #[serde(rename = "user.sso_identity_linked")]
    SsoIdentityLinked {
        user_id: UserId,
        email: String,
        first_name: String,
        tenant_id: domain::TenantId,
        tenant_name: String,
        /// The directory account's name (UPN, else email, else object id).
        directory_account: String,
    },
}

impl AccountEvent {
    /// Whose account it is.
    pub fn user_id(&self) -> UserId {
        match self {
            Self::VerificationRequested { user_id, .. }
            | Self::EmailVerified { user_id, .. }
            | Self::PasswordResetRequested { user_id, .. }
            | Self::PasswordReset { user_id, .. }
            | Self::PasswordChanged { user_id, .. }
            | Self::PasswordRemoved { user_id, .. }
            | Self::SessionsRevoked { user_id, .. }
            | Self::Deactivated { user_id, .. }
            | Self::Reactivated { user_id, .. }
            | Self::SsoIdentityLinked { user_id, .. } => *user_id,
        }
    }

    /// The action, as the audit log names it.
    pub fn action(&self) -> &'static str {
        match self {
            Self::VerificationRequested { .. } => "user.verification_requested",
            Self::EmailVerified { .. } => "user.email_verified",
            Self::PasswordResetRequested { .. } => "user.password_reset_requested",
            Self::PasswordReset { .. } => "user.password_reset",
            Self::PasswordChanged { .. } => "user.password_changed",
            Self::PasswordRemoved { .. } => "user.password_removed",
            Self::SessionsRevoked { .. } => "user.sessions_revoked",
            Self::Deactivated { .. } => "user.deactivated",
            Self::Reactivated { .. } => "user.reactivated",
            Self::SsoIdentityLinked { .. } => "user.sso_identity_linked",
        }
    }

    /// An envelope of `user.account` (no tenant) by `actor`.
    pub fn envelope(
        &self,
        actor: Option<UserId>,
    ) -> Result<crate::EventEnvelope, serde_json::Error> {
        crate::EventEnvelope::new(crate::Topic::UserAccount, None, actor, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn account_events_are_tagged_by_action() {
        let user = UserId::new();
        let event = AccountEvent::EmailVerified {
            user_id: user,
            email: "a@example.com".into(),
        };
        assert_eq!(
            serde_json::to_value(&event).expect("json"),
            json!({"action": "user.email_verified", "user_id": user, "email": "a@example.com"})
        );
        let back: AccountEvent = serde_json::from_value(
            json!({"action": "user.sessions_revoked", "user_id": user, "email": "a@example.com",
                   "first_name": "Ada", "by": "admin", "sessions_revoked": 2, "session_id": null}),
        )
        .expect("parses");
        assert_eq!(back.action(), "user.sessions_revoked");
    }
}
