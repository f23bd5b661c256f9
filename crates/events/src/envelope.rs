//! The event envelope: `id`, `type`, `version`, `occurred_at`, `tenant_id`, `actor_id`,
//! `request_id`, `data`. The Kafka key is the tenant id (or the event id for events of
//! no tenant), so one tenant's events stay ordered.

use chrono::{DateTime, SubsecRound, Utc};
use domain::{TenantId, UserId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Topic;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventEnvelope {
    /// Unique per event; consumers are idempotent on it.
    pub id: Uuid,
    /// The topic name, e.g. `tenant.created`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Version of `data`'s shape for this type.
    pub version: u16,
    pub occurred_at: DateTime<Utc>,
    pub tenant_id: Option<TenantId>,
    pub actor_id: Option<UserId>,
    /// The request that caused the event, for the audit log.
    #[serde(default)]
    pub request_id: Option<String>,
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// A new event of `topic` with version 1 of its payload.
    pub fn new(
        topic: Topic,
        tenant_id: Option<TenantId>,
        actor_id: Option<UserId>,
        data: impl Serialize,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self {
            id: Uuid::new_v4(),
            event_type: topic.as_str().to_owned(),
            version: 1,
            // Microseconds: what PostgreSQL and the JSON timestamps keep.
            occurred_at: Utc::now().trunc_subsecs(6),
            tenant_id,
            actor_id,
            request_id: None,
            data: serde_json::to_value(data)?,
        })
    }

    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    /// The topic this event is published to.
    pub fn topic(&self) -> Option<Topic> {
        Topic::from_name(&self.event_type)
    }

    /// The Kafka message key.
    pub fn partition_key(&self) -> String {
        self.tenant_id
            .map_or_else(|| self.id.to_string(), |t| t.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_envelope_has_the_documented_shape() {
        let tenant = TenantId::new();
        let actor = UserId::new();
        let event = EventEnvelope::new(
            Topic::TenantCreated,
            Some(tenant),
            Some(actor),
            json!({"name": "Acme"}),
        )
        .expect("serialisable")
        .with_request_id(Some("req-1".into()));
        let value = serde_json::to_value(&event).expect("json");
        let mut keys: Vec<&str> = value
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "actor_id",
                "data",
                "id",
                "occurred_at",
                "request_id",
                "tenant_id",
                "type",
                "version"
            ]
        );
        assert_eq!(value["type"], "tenant.created");
        assert_eq!(value["tenant_id"], tenant.to_string());
        assert_eq!(event.partition_key(), tenant.to_string());
        let back: EventEnvelope = serde_json::from_value(value).expect("round trip");
        assert_eq!(back, event);
    }

    #[test]
    fn events_without_tenant_are_keyed_by_their_id() {
        let event =
            EventEnvelope::new(Topic::UserRegistered, None, None, json!({})).expect("serialisable");
        assert_eq!(event.partition_key(), event.id.to_string());
    }
}
