//! The audit log: every event of every topic becomes one `audit_logs` row (who, what,
//! which tenant, when, which request), written with the processed event ids in one
//! transaction, so a redelivered event is recorded once. `audit.events`,
//! `user.account` and `tenant.invitation` name their action in `data`; a sealed `link`
//! (a single-use token on its way to the mailer) is never copied into the log.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use events::{EventEnvelope, Handler, HandlerError, Topic};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use main_db::schema::audit_logs;
use main_db::DbPool;
use serde_json::Value;
use uuid::Uuid;

/// The consumer's name: its group suffix and its `processed_events.consumer`.
pub const CONSUMER: &str = "audit-log";

/// Consumes every topic into the audit log.
pub struct AuditLog {
    db: DbPool,
}

impl AuditLog {
    pub fn new(db: DbPool) -> Self {
        Self { db }
    }

    pub fn topics() -> Vec<Topic> {
        Topic::ALL.to_vec()
    }
}

#[derive(Insertable)]
#[diesel(table_name = audit_logs)]
struct NewEntry<'a> {
    id: Uuid,
    event_id: Uuid,
    tenant_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    action: &'a str,
    resource_type: Option<&'static str>,
    resource_id: Option<String>,
    request_id: Option<&'a str>,
    details: Value,
    occurred_at: DateTime<Utc>,
}

/// What an event did, and to what: `audit.events` (and the topics of several actions)
/// carry their action in `data`; the resource is the most specific id the payload names.
fn entry(event: &EventEnvelope) -> NewEntry<'_> {
    let action = if event.event_type == Topic::AuditEvents.as_str()
        || event.event_type == Topic::UserAccount.as_str()
        || event.event_type == Topic::TenantInvitation.as_str()
    {
        event.data["action"].as_str().unwrap_or(&event.event_type)
    } else {
        &event.event_type
    };
    let mut details = event.data.clone();
    if let Some(fields) = details.as_object_mut() {
        fields.remove("link");
    }
    let resource = ["document", "file", "invitation", "user", "tenant"]
        .into_iter()
        .find_map(|kind| {
            event.data[format!("{kind}_id")]
                .as_str()
                .map(|id| (kind, id.to_owned()))
        });
    NewEntry {
        id: Uuid::new_v4(),
        event_id: event.id,
        tenant_id: event.tenant_id.map(domain::TenantId::into_uuid),
        actor_id: event.actor_id.map(domain::UserId::into_uuid),
        action,
        resource_type: resource.as_ref().map(|(kind, _)| *kind),
        resource_id: resource.map(|(_, id)| id),
        request_id: event.request_id.as_deref(),
        details,
        occurred_at: event.occurred_at,
    }
}

/// A main-database connection for a handler; none available is worth waiting for.
pub async fn connection(db: &DbPool) -> Result<main_db::DbConnection, HandlerError> {
    db.get()
        .await
        .map_err(|e| HandlerError::Unavailable(format!("main database: {e}")))
}

/// Database failures: unreachable is worth waiting for; a refused row never changes.
pub fn classify(error: diesel::result::Error) -> HandlerError {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match error {
        // A tenant database read-only while it moves: tried again later.
        Error::DatabaseError(Kind::ClosedConnection | Kind::ReadOnlyTransaction, info) => {
            HandlerError::Unavailable(info.message().to_owned())
        }
        Error::DatabaseError(
            Kind::CheckViolation | Kind::NotNullViolation | Kind::ForeignKeyViolation,
            info,
        ) => HandlerError::Invalid(info.message().to_owned()),
        Error::SerializationError(e) | Error::DeserializationError(e) => {
            HandlerError::Invalid(e.to_string())
        }
        other => HandlerError::Failed(other.to_string()),
    }
}

impl Handler for AuditLog {
    fn name(&self) -> &str {
        CONSUMER
    }

    fn handle<'a>(
        &'a self,
        events: &'a [EventEnvelope],
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        async move {
            let mut conn = crate::audit::connection(&self.db).await?;
            conn.transaction::<_, diesel::result::Error, _>(async |tx| {
                let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
                let fresh = events::claim(tx, CONSUMER, &ids).await?;
                let entries: Vec<NewEntry<'_>> = events
                    .iter()
                    .filter(|e| fresh.contains(&e.id))
                    .map(entry)
                    .collect();
                if !entries.is_empty() {
                    diesel::insert_into(audit_logs::table)
                        .values(&entries)
                        .on_conflict(audit_logs::event_id)
                        .do_nothing()
                        .execute(tx)
                        .await?;
                }
                Ok(())
            })
            .await
            .map_err(classify)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{TenantId, UserId};
    use serde_json::json;

    #[test]
    fn entries_name_the_action_and_the_most_specific_resource() {
        let tenant = TenantId::new();
        let uploaded = EventEnvelope::new(
            Topic::DocumentUploaded,
            Some(tenant),
            Some(UserId::new()),
            json!({"document_id": "d-1", "file_id": "f-1"}),
        )
        .expect("event");
        let e = entry(&uploaded);
        assert_eq!(e.action, "document.uploaded");
        assert_eq!(
            (e.resource_type, e.resource_id.as_deref()),
            (Some("document"), Some("d-1"))
        );
        assert_eq!(e.tenant_id, Some(tenant.into_uuid()));

        let issued = EventEnvelope::new(
            Topic::AuditEvents,
            Some(tenant),
            None,
            json!({"action": "document.download_url_issued", "document_id": "d-2"}),
        )
        .expect("event");
        assert_eq!(entry(&issued).action, "document.download_url_issued");

        let requested = EventEnvelope::new(
            Topic::UserAccount,
            None,
            None,
            json!({"action": "user.verification_requested", "user_id": "u-2", "email": "a@example.com",
                   "link": {"ref": "r", "key_id": "k", "ciphertext": "secret"}}),
        )
        .expect("event");
        let e = entry(&requested);
        assert_eq!(e.action, "user.verification_requested");
        assert_eq!(
            (e.resource_type, e.resource_id.as_deref()),
            (Some("user"), Some("u-2"))
        );
        assert!(e.details.get("link").is_none(), "{}", e.details);
        assert_eq!(e.details["email"], "a@example.com");

        let invited = EventEnvelope::new(
            Topic::TenantInvitation,
            Some(tenant),
            None,
            json!({"action": "invitation.created", "invitation_id": "i-1", "tenant_id": tenant,
                   "email": "guest@example.com", "link": {"ref": "i-1", "key_id": "k", "ciphertext": "secret"}}),
        )
        .expect("event");
        let e = entry(&invited);
        assert_eq!(e.action, "invitation.created");
        assert_eq!(
            (e.resource_type, e.resource_id.as_deref()),
            (Some("invitation"), Some("i-1"))
        );
        assert!(e.details.get("link").is_none(), "{}", e.details);

        let member = EventEnvelope::new(
            Topic::MembershipChanged,
            Some(tenant),
            None,
            json!({"tenant_id": tenant, "user_id": "u-1"}),
        )
        .expect("event");
        assert_eq!(entry(&member).resource_type, Some("user"));
    }
}
