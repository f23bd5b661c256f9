//! The JSON Schema (draft 2020-12) of each event type, envelope and `data`: the contract
//! consumers outside this repository can rely on (`crates/events/schemas/`). Tests
//! validate the events the services really publish against them.

use crate::Topic;

/// The JSON Schema of `topic`'s events.
pub fn schema(topic: Topic) -> &'static str {
    match topic {
        Topic::TenantCreated => include_str!("../schemas/tenant.created.json"),
        Topic::TenantDeleted => include_str!("../schemas/tenant.deleted.json"),
        Topic::UserRegistered => include_str!("../schemas/user.registered.json"),
        Topic::MembershipChanged => include_str!("../schemas/membership.changed.json"),
        Topic::DocumentUploaded => include_str!("../schemas/document.uploaded.json"),
        Topic::DocumentDeleted => include_str!("../schemas/document.deleted.json"),
        Topic::FileProcess => include_str!("../schemas/file.process.json"),
        Topic::AuditEvents => include_str!("../schemas/audit.events.json"),
        Topic::UserAccount => include_str!("../schemas/user.account.json"),
        Topic::TenantInvitation => include_str!("../schemas/tenant.invitation.json"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::EventEnvelope;
    use domain::{TenantId, UserId};
    use serde_json::{json, Value};
    use uuid::Uuid;

    pub(crate) fn validator(topic: Topic) -> jsonschema::Validator {
        let schema: Value = serde_json::from_str(schema(topic)).expect("schema is JSON");
        assert_eq!(schema["title"], topic.as_str());
        jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("a valid JSON Schema")
    }

    /// A well-formed `data` of each type, as the services build it.
    fn sample(topic: Topic) -> Value {
        let id = Uuid::new_v4();
        match topic {
            Topic::UserRegistered => json!({"user_id": id, "email": "a@example.com"}),
            Topic::TenantCreated => {
                json!({"tenant_id": id, "name": "Acme", "database_name": "tenant_acme_0badcafe", "created_by": id})
            }
            Topic::TenantDeleted => json!({"tenant_id": id, "hard_delete": true}),
            Topic::MembershipChanged => {
                json!({"tenant_id": id, "user_id": id, "action": "removed", "role": null})
            }
            Topic::DocumentUploaded => {
                json!({"document_id": id, "file_id": id, "filename": "a.txt", "deduplicated": false})
            }
            Topic::DocumentDeleted => json!({"document_id": id, "file_id": id}),
            Topic::FileProcess => {
                json!({"file_id": id, "s3_path": "tenants/t/files/ab/cd/x", "md5_hash": "0".repeat(32), "sha256_hash": "f".repeat(64)})
            }
            Topic::AuditEvents => {
                json!({"action": "document.download_url_issued", "document_id": id})
            }
            Topic::UserAccount => {
                json!({"action": "user.email_verified", "user_id": id, "email": "a@example.com"})
            }
            Topic::TenantInvitation => {
                json!({"action": "invitation.revoked", "invitation_id": id, "tenant_id": id,
                       "email": "a@example.com", "role": "user"})
            }
        }
    }

    fn envelope(topic: Topic, data: Value) -> Value {
        let tenant = (!topic.is_untenanted()).then(TenantId::new);
        let event = EventEnvelope::new(topic, tenant, Some(UserId::new()), data)
            .expect("event")
            .with_request_id(Some("req-1".into()));
        serde_json::to_value(event).expect("json")
    }

    #[test]
    fn every_event_type_has_a_schema_that_accepts_its_events() {
        for topic in Topic::ALL {
            let validator = validator(topic);
            let event = envelope(topic, sample(topic));
            let errors: Vec<String> = validator
                .iter_errors(&event)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{topic}: {errors:?}");
        }
    }

    #[test]
    fn schemas_refuse_what_consumers_could_not_read() {
        for topic in Topic::ALL {
            let validator = validator(topic);
            let good = envelope(topic, sample(topic));
            let mut missing = good.clone();
            missing.as_object_mut().expect("object").remove("data");
            assert!(!validator.is_valid(&missing), "{topic}: data is required");
            let mut retyped = good.clone();
            retyped["type"] = json!("something.else");
            assert!(!validator.is_valid(&retyped), "{topic}: type is fixed");
            let mut bad_id = good.clone();
            bad_id["id"] = json!("not-a-uuid");
            assert!(!validator.is_valid(&bad_id), "{topic}: id is a uuid");
            let mut empty = good.clone();
            empty["data"] = json!({});
            assert!(
                !validator.is_valid(&empty),
                "{topic}: data has required fields"
            );
            if topic != Topic::AuditEvents {
                let mut extra = good.clone();
                extra["data"]["surprise"] = json!(1);
                assert!(
                    !validator.is_valid(&extra),
                    "{topic}: data fields are listed"
                );
            }
        }
        // Tenant events carry their tenant; user.registered has none.
        let mut untenanted = envelope(Topic::DocumentDeleted, sample(Topic::DocumentDeleted));
        untenanted["tenant_id"] = Value::Null;
        assert!(!validator(Topic::DocumentDeleted).is_valid(&untenanted));
    }

    #[test]
    fn every_account_event_matches_the_user_account_schema() {
        use crate::account::{AccountEvent, PasswordRemoved, RevokedBy, SealedLink};
        let user = UserId::new();
        let email = "ada@example.com".to_owned();
        let first_name = "Ada".to_owned();
        let link = SealedLink {
            reference: Uuid::new_v4(),
            key_id: "k1".into(),
            ciphertext: "c2VhbGVk".into(),
        };
        let expires_at = chrono::Utc::now();
        let all = [
            AccountEvent::VerificationRequested {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                link: link.clone(),
                expires_at,
            },
            AccountEvent::EmailVerified {
                user_id: user,
                email: email.clone(),
            },
            AccountEvent::PasswordResetRequested {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                link,
                expires_at,
            },
            AccountEvent::PasswordReset {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                sessions_revoked: 2,
            },
            AccountEvent::PasswordChanged {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                sessions_revoked: 0,
            },
            AccountEvent::PasswordRemoved {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                reason: PasswordRemoved::SsoLink,
                sessions_revoked: 1,
            },
            AccountEvent::SessionsRevoked {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                by: RevokedBy::Admin,
                sessions_revoked: 3,
                session_id: None,
            },
            AccountEvent::SessionsRevoked {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                by: RevokedBy::User,
                sessions_revoked: 1,
                session_id: Some(Uuid::new_v4()),
            },
            AccountEvent::Deactivated {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
                sessions_revoked: 1,
            },
            AccountEvent::Reactivated {
                user_id: user,
                email: email.clone(),
                first_name: first_name.clone(),
            },
            AccountEvent::SsoIdentityLinked {
                user_id: user,
                email,
                first_name,
                tenant_id: domain::TenantId::new(),
                tenant_name: "Acme".into(),
                directory_account: "ada@acme.example".into(),
            },
        ];
        let validator = validator(Topic::UserAccount);
        for event in all {
            let envelope =
                serde_json::to_value(event.envelope(Some(user)).expect("event")).expect("json");
            let errors: Vec<String> = validator
                .iter_errors(&envelope)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", event.action());
            let mut tenanted = envelope.clone();
            tenanted["tenant_id"] = json!(Uuid::new_v4());
            assert!(
                !validator.is_valid(&tenanted),
                "{}: no tenant",
                event.action()
            );
        }
    }

    #[test]
    fn every_invitation_event_matches_the_tenant_invitation_schema() {
        use crate::account::SealedLink;
        use crate::invitation::InvitationEvent;
        use domain::Role;
        let (tenant, user, id) = (TenantId::new(), UserId::new(), Uuid::new_v4());
        let email = "ada@example.com".to_owned();
        let all = [
            InvitationEvent::Created {
                invitation_id: id,
                tenant_id: tenant,
                tenant_name: "Acme".into(),
                email: email.clone(),
                role: Role::User,
                invited_by: user,
                invited_by_name: "Grace Hopper".into(),
                link: SealedLink {
                    reference: id,
                    key_id: "k1".into(),
                    ciphertext: "c2VhbGVk".into(),
                },
                expires_at: chrono::Utc::now(),
                refreshed: false,
            },
            InvitationEvent::Revoked {
                invitation_id: id,
                tenant_id: tenant,
                email: email.clone(),
                role: Role::Admin,
            },
            InvitationEvent::Accepted {
                invitation_id: id,
                tenant_id: tenant,
                email,
                role: Role::Viewer,
                user_id: UserId::new(),
            },
        ];
        let validator = validator(Topic::TenantInvitation);
        for event in all {
            let envelope =
                serde_json::to_value(event.envelope(Some(user)).expect("event")).expect("json");
            let errors: Vec<String> = validator
                .iter_errors(&envelope)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", event.action());
            let mut untenanted = envelope.clone();
            untenanted["tenant_id"] = Value::Null;
            assert!(
                !validator.is_valid(&untenanted),
                "{}: a tenant",
                event.action()
            );
        }
    }

    #[test]
    fn membership_changes_say_how_a_member_was_added() {
        let validator = validator(Topic::MembershipChanged);
        let id = Uuid::new_v4();
        for data in [
            json!({"tenant_id": id, "user_id": id, "action": "added", "role": "user", "added_by": "user_id"}),
            json!({"tenant_id": id, "user_id": id, "action": "added", "role": "user",
                   "added_by": "invitation", "invitation_id": id}),
        ] {
            assert!(
                validator.is_valid(&envelope(Topic::MembershipChanged, data.clone())),
                "{data}"
            );
        }
        let unknown = json!({"tenant_id": id, "user_id": id, "action": "added", "role": "user", "added_by": "magic"});
        assert!(!validator.is_valid(&envelope(Topic::MembershipChanged, unknown)));
    }
}
