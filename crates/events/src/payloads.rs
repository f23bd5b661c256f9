//! One type per event: the `data` of each topic, written by its producer and read by
//! its consumers through [`EventEnvelope::of`] and [`EventEnvelope::decode`], so the two
//! sides cannot drift apart. Each type's JSON is checked against its JSON Schema in
//! `schemas/` by this module's tests: a field added, renamed or dropped on one side
//! fails them until the schema says the same.
//!
//! `user.account` and `tenant.invitation` carry tagged unions of their own
//! ([`crate::AccountEvent`], [`crate::InvitationEvent`]).

use domain::{DocumentId, FileId, Role, TenantId, UserId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EventEnvelope, Topic};

/// The `data` of the events of one topic.
pub trait Event: Serialize + DeserializeOwned {
    const TOPIC: Topic;
}

/// An envelope whose `data` is not the event its type names.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("a {found:?} event is not a {expected}")]
    WrongTopic {
        expected: &'static str,
        found: String,
    },
    #[error("the data of a {topic} event does not match its type: {source}")]
    Data {
        topic: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl EventEnvelope {
    /// A new envelope of `event`'s topic.
    pub fn of<E: Event>(
        event: &E,
        tenant_id: Option<TenantId>,
        actor_id: Option<UserId>,
    ) -> Result<Self, serde_json::Error> {
        Self::new(E::TOPIC, tenant_id, actor_id, event)
    }

    /// The event this envelope carries, typed.
    pub fn decode<E: Event>(&self) -> Result<E, DecodeError> {
        if self.event_type != E::TOPIC.as_str() {
            return Err(DecodeError::WrongTopic {
                expected: E::TOPIC.as_str(),
                found: self.event_type.clone(),
            });
        }
        E::deserialize(&self.data).map_err(|source| DecodeError::Data {
            topic: E::TOPIC.as_str(),
            source,
        })
    }
}

/// `tenant.created`: a tenant was provisioned (its database exists and is migrated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCreated {
    pub tenant_id: TenantId,
    pub name: String,
    pub database_name: String,
    /// The user who created it; none for `tenant init`'s test tenant.
    pub created_by: Option<UserId>,
}

impl Event for TenantCreated {
    const TOPIC: Topic = Topic::TenantCreated;
}

/// `tenant.deleted`: a tenant was deactivated, or purged (`hard_delete`: its database
/// is dropped and its objects are to be deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantDeleted {
    pub tenant_id: TenantId,
    pub hard_delete: bool,
}

impl Event for TenantDeleted {
    const TOPIC: Topic = Topic::TenantDeleted;
}

/// How a user came to be registered, when not by the registration form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationSource {
    /// Provisioned by a tenant's SSO login.
    Sso,
}

/// `user.registered`: an account was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    pub user_id: UserId,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<RegistrationSource>,
}

impl Event for UserRegistered {
    const TOPIC: Topic = Topic::UserRegistered;
}

/// What happened to a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MembershipAction {
    Added,
    RoleChanged,
    Removed,
    /// Set by the SSO service (a login's group → role mapping).
    Set,
}

/// How an added member came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddedBy {
    /// An admin named the user id (`POST /api/tenants/{id}/users`).
    UserId,
    /// The user accepted an invitation (`invitation_id`).
    Invitation,
}

/// `membership.changed`: a user was added to a tenant, changed role, or removed (no
/// role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipChanged {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub action: MembershipAction,
    pub role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_by: Option<AddedBy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_id: Option<Uuid>,
}

impl Event for MembershipChanged {
    const TOPIC: Topic = Topic::MembershipChanged;
}

/// `document.uploaded`: a document was created; `deduplicated` when its bytes were
/// already stored as `file_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentUploaded {
    pub document_id: DocumentId,
    pub file_id: FileId,
    pub filename: String,
    pub deduplicated: bool,
}

impl Event for DocumentUploaded {
    const TOPIC: Topic = Topic::DocumentUploaded;
}

/// `document.deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentDeleted {
    pub document_id: DocumentId,
    pub file_id: FileId,
}

impl Event for DocumentDeleted {
    const TOPIC: Topic = Topic::DocumentDeleted;
}

/// `file.process`: a newly stored file, to be re-read, its hashes checked and its type
/// sniffed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileProcess {
    pub file_id: FileId,
    /// The object's key.
    pub s3_path: String,
    pub md5_hash: String,
    pub sha256_hash: String,
}

impl Event for FileProcess {
    const TOPIC: Topic = Topic::FileProcess;
}

/// `audit.events`: an action recorded only in the audit log; `details` are the
/// action's own fields, beside `action` in the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub action: String,
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl AuditRecord {
    /// `action` with the fields of `details` (an object; anything else adds nothing).
    pub fn new(action: impl Into<String>, details: serde_json::Value) -> Self {
        Self {
            action: action.into(),
            details: match details {
                serde_json::Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
        }
    }
}

impl Event for AuditRecord {
    const TOPIC: Topic = Topic::AuditEvents;
}

impl Event for crate::AccountEvent {
    const TOPIC: Topic = Topic::UserAccount;
}

impl Event for crate::InvitationEvent {
    const TOPIC: Topic = Topic::TenantInvitation;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `event` in an envelope, validated against its topic's schema; and read back.
    fn conforms<E: Event + std::fmt::Debug + PartialEq>(event: E, tenant: Option<TenantId>) {
        let envelope =
            EventEnvelope::of(&event, tenant, Some(UserId::new())).expect("serialisable");
        let validator = crate::schema::tests::validator(E::TOPIC);
        let instance = serde_json::to_value(&envelope).expect("envelope JSON");
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not match its schema: {errors:?}\n{instance}",
            E::TOPIC.as_str()
        );
        assert_eq!(envelope.decode::<E>().expect("decodes"), event);
    }

    #[test]
    fn every_event_type_matches_its_schema_with_all_its_fields() {
        let tenant = TenantId::new();
        conforms(
            TenantCreated {
                tenant_id: tenant,
                name: "Ada Corp".into(),
                database_name: "tenant_ada_corp_1a2b3c4d".into(),
                created_by: Some(UserId::new()),
            },
            Some(tenant),
        );
        conforms(
            TenantCreated {
                tenant_id: tenant,
                name: "Test Tenant".into(),
                database_name: "tenant_test".into(),
                created_by: None,
            },
            Some(tenant),
        );
        conforms(
            TenantDeleted {
                tenant_id: tenant,
                hard_delete: true,
            },
            Some(tenant),
        );
        conforms(
            UserRegistered {
                user_id: UserId::new(),
                email: "ada@example.com".into(),
                source: Some(RegistrationSource::Sso),
            },
            None,
        );
        conforms(
            UserRegistered {
                user_id: UserId::new(),
                email: "bob@example.com".into(),
                source: None,
            },
            None,
        );
        conforms(
            MembershipChanged {
                tenant_id: tenant,
                user_id: UserId::new(),
                action: MembershipAction::Added,
                role: Some(Role::Viewer),
                added_by: Some(AddedBy::Invitation),
                invitation_id: Some(Uuid::new_v4()),
            },
            Some(tenant),
        );
        conforms(
            MembershipChanged {
                tenant_id: tenant,
                user_id: UserId::new(),
                action: MembershipAction::Removed,
                role: None,
                added_by: None,
                invitation_id: None,
            },
            Some(tenant),
        );
        conforms(
            DocumentUploaded {
                document_id: DocumentId::new(),
                file_id: FileId::new(),
                filename: "report.pdf".into(),
                deduplicated: false,
            },
            Some(tenant),
        );
        conforms(
            DocumentDeleted {
                document_id: DocumentId::new(),
                file_id: FileId::new(),
            },
            Some(tenant),
        );
        conforms(
            FileProcess {
                file_id: FileId::new(),
                s3_path: "tenants/tenant_x/files/ab/abcd".into(),
                md5_hash: "0".repeat(32),
                sha256_hash: "0".repeat(64),
            },
            Some(tenant),
        );
        conforms(
            AuditRecord::new("sso.config.deleted", json!({"deleted_identities": 2})),
            Some(tenant),
        );
    }

    #[test]
    fn a_field_the_schema_does_not_know_is_refused() {
        // What a producer adding a field without the schema would send.
        let validator = crate::schema::tests::validator(Topic::DocumentDeleted);
        let mut envelope = EventEnvelope::of(
            &DocumentDeleted {
                document_id: DocumentId::new(),
                file_id: FileId::new(),
            },
            Some(TenantId::new()),
            None,
        )
        .expect("serialisable");
        envelope.data["bytes"] = json!(12);
        let instance = serde_json::to_value(&envelope).expect("JSON");
        assert!(!validator.is_valid(&instance));
        assert!(envelope.decode::<DocumentDeleted>().is_err(), "nor decoded");
    }

    #[test]
    fn an_envelope_of_another_topic_is_not_decoded() {
        let envelope = EventEnvelope::of(
            &TenantDeleted {
                tenant_id: TenantId::new(),
                hard_delete: false,
            },
            None,
            None,
        )
        .expect("serialisable");
        assert!(matches!(
            envelope.decode::<TenantCreated>(),
            Err(DecodeError::WrongTopic { .. })
        ));
    }
}
