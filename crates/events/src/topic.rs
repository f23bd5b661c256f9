//! The topic catalog. Each topic has a `.dlq` dead-letter companion.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    TenantCreated,
    TenantDeleted,
    UserRegistered,
    MembershipChanged,
    DocumentUploaded,
    DocumentDeleted,
    FileProcess,
    AuditEvents,
    UserAccount,
    TenantInvitation,
}

impl Topic {
    pub const ALL: [Topic; 10] = [
        Topic::TenantCreated,
        Topic::TenantDeleted,
        Topic::UserRegistered,
        Topic::MembershipChanged,
        Topic::DocumentUploaded,
        Topic::DocumentDeleted,
        Topic::FileProcess,
        Topic::AuditEvents,
        Topic::UserAccount,
        Topic::TenantInvitation,
    ];

    /// Whether events of this topic belong to no tenant (a user's account).
    pub const fn is_untenanted(self) -> bool {
        matches!(self, Topic::UserRegistered | Topic::UserAccount)
    }

    /// The Kafka topic name, which is also the event `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Topic::TenantCreated => "tenant.created",
            Topic::TenantDeleted => "tenant.deleted",
            Topic::UserRegistered => "user.registered",
            Topic::MembershipChanged => "membership.changed",
            Topic::DocumentUploaded => "document.uploaded",
            Topic::DocumentDeleted => "document.deleted",
            Topic::FileProcess => "file.process",
            Topic::AuditEvents => "audit.events",
            Topic::UserAccount => "user.account",
            Topic::TenantInvitation => "tenant.invitation",
        }
    }

    /// The dead-letter topic of this topic.
    pub fn dlq(self) -> String {
        format!("{}.dlq", self.as_str())
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_round_trip_and_have_dead_letter_topics() {
        for topic in Topic::ALL {
            assert_eq!(Topic::from_name(topic.as_str()), Some(topic));
            assert_eq!(topic.dlq(), format!("{topic}.dlq"));
        }
        assert_eq!(Topic::from_name("tenant.created.dlq"), None);
    }
}
