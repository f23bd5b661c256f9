//! A member's role inside one tenant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Roles are exact lowercase words; anything else is refused (no trimming, no case folding),
/// so a stored or requested role is never silently reinterpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
    Viewer,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("role must be one of admin, user, viewer")]
pub struct RoleParseError;

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::User, Role::Viewer];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "viewer" => Ok(Role::Viewer),
            _ => Err(RoleParseError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_exactly() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        for bad in [
            "Admin",
            " admin",
            "admin ",
            "ADMIN",
            "owner",
            "",
            "superuser",
        ] {
            assert_eq!(bad.parse::<Role>(), Err(RoleParseError), "{bad:?}");
        }
        assert!(serde_json::from_str::<Role>("\"Admin\"").is_err());
        assert_eq!(
            serde_json::from_str::<Role>("\"viewer\"").ok(),
            Some(Role::Viewer)
        );
    }
}
