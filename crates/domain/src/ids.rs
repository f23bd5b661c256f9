//! Typed ids: a `TenantId` cannot be passed where a `UserId` is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A path or body value that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id (expected a UUID)")]
pub struct IdParseError;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A new random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            pub const fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdParseError)
            }
        }
    };
}

typed_id!(
    /// A tenant (an organisation with its own database).
    TenantId
);
typed_id!(
    /// A platform user.
    UserId
);
typed_id!(
    /// A document: a named reference to a stored file.
    DocumentId
);
typed_id!(
    /// A stored file (deduplicated content) inside a tenant.
    FileId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = TenantId::new();
        let text = id.to_string();
        assert_eq!(text.parse::<TenantId>(), Ok(id));
        assert_eq!(serde_json::to_string(&id).ok(), Some(format!("\"{text}\"")));
        let back: TenantId = serde_json::from_str(&format!("\"{text}\"")).expect("valid json");
        assert_eq!(back, id);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "1",
            "not-a-uuid",
            "' OR 1=1 --",
            "00000000-0000-0000-0000-00000000000g",
        ] {
            assert_eq!(bad.parse::<UserId>(), Err(IdParseError), "{bad:?}");
        }
    }
}
