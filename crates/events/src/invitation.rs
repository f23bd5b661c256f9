//! The `data` of `tenant.invitation` events: an invitation to join a tenant was sent
//! (or sent again), revoked or accepted. The tenant service writes them; the
//! event-worker records each in the tenant's audit log and mails the invited address
//! for `invitation.created`. The JSON Schema is `schemas/tenant.invitation.json`.
//!
//! `invitation.created` carries the link with the invitation's single-use token, sealed
//! by the keyring the tenant service and the event-worker share (associated data
//! [`link_aad`]): the token is never in clear in the outbox, in Kafka, in the audit log
//! (which leaves `link` out) or in a webhook delivery (which does too).

use chrono::{DateTime, Utc};
use domain::{Role, TenantId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::account::SealedLink;

/// The associated data that binds a sealed invitation link to its invitation (the
/// link's `ref` is the invitation's id).
pub fn link_aad(invitation: Uuid) -> Vec<u8> {
    format!("tenant_invitations.link:{invitation}").into_bytes()
}

/// The `data` of a `tenant.invitation` event, tagged by `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action")]
pub enum InvitationEvent {
    /// An invitation is to be mailed: a new one, or a pending one sent again
    /// (`refreshed`: a new token, the earlier link no longer works).
    #[serde(rename = "invitation.created")]
    Created {
        invitation_id: Uuid,
        tenant_id: TenantId,
        tenant_name: String,
        email: String,
        role: Role,
        invited_by: UserId,
        /// The inviter's name as the email shows it.
        invited_by_name: String,
        link: SealedLink,
        expires_at: DateTime<Utc>,
        refreshed: bool,
    },
    #[serde(rename = "invitation.revoked")]
    Revoked {
        invitation_id: Uuid,
        tenant_id: TenantId,
        email: String,
        role: Role,
    },
    /// The invited address's (verified) account accepted: it is now a member.
    #[serde(rename = "invitation.accepted")]
    Accepted {
        invitation_id: Uuid,
        tenant_id: TenantId,
        email: String,
        role: Role,
        user_id: UserId,
    },
}

impl InvitationEvent {
    /// The action, as the audit log names it.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Created { .. } => "invitation.created",
            Self::Revoked { .. } => "invitation.revoked",
            Self::Accepted { .. } => "invitation.accepted",
        }
    }

    pub fn tenant_id(&self) -> TenantId {
        match self {
            Self::Created { tenant_id, .. }
            | Self::Revoked { tenant_id, .. }
            | Self::Accepted { tenant_id, .. } => *tenant_id,
        }
    }

    /// An envelope of `tenant.invitation` for the event's tenant, by `actor`.
    pub fn envelope(
        &self,
        actor: Option<UserId>,
    ) -> Result<crate::EventEnvelope, serde_json::Error> {
        crate::EventEnvelope::new(
            crate::Topic::TenantInvitation,
            Some(self.tenant_id()),
            actor,
            self,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invitation_events_are_tagged_by_action_and_keyed_by_tenant() {
        let (tenant, user, id) = (TenantId::new(), UserId::new(), Uuid::new_v4());
        let event = InvitationEvent::Accepted {
            invitation_id: id,
            tenant_id: tenant,
            email: "a@example.com".into(),
            role: Role::Viewer,
            user_id: user,
        };
        assert_eq!(
            serde_json::to_value(&event).expect("json"),
            json!({"action": "invitation.accepted", "invitation_id": id, "tenant_id": tenant,
                   "email": "a@example.com", "role": "viewer", "user_id": user})
        );
        let envelope = event.envelope(Some(user)).expect("envelope");
        assert_eq!(envelope.event_type, "tenant.invitation");
        assert_eq!(envelope.tenant_id, Some(tenant));
        assert_ne!(link_aad(id), crate::account::SealedLink::aad(id));
    }
}
