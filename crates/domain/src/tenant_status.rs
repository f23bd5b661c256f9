//! The life cycle of a tenant: provisioning → active | failed; active → deleted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    /// The row exists; the database is being created and migrated.
    Provisioning,
    /// The database exists and is migrated: the only usable state.
    Active,
    /// Provisioning failed (the reason is recorded); retryable.
    Failed,
    /// Deactivated by an admin; the database may still exist unless purged.
    Deleted,
}

impl TenantStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for TenantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tenant status {0:?}")]
pub struct TenantStatusError(pub String);

impl FromStr for TenantStatus {
    type Err = TenantStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "provisioning" => Ok(Self::Provisioning),
            "active" => Ok(Self::Active),
            "failed" => Ok(Self::Failed),
            "deleted" => Ok(Self::Deleted),
            other => Err(TenantStatusError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            TenantStatus::Provisioning,
            TenantStatus::Active,
            TenantStatus::Failed,
            TenantStatus::Deleted,
        ] {
            assert_eq!(s.as_str().parse::<TenantStatus>(), Ok(s));
        }
        assert!("Active".parse::<TenantStatus>().is_err());
    }
}
