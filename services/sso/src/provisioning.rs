//! Who may come in through a tenant's SSO, and with which role: the admission rules
//! for an identity that is not a member yet (auto-provisioning, exact allowed email
//! domains, a directory that asserts it verified the domain), the group → role
//! mapping, and the membership a login creates or updates.

use domain::{Role, TenantId, UserId};
use http_kit::ApiError;

use crate::app::{service, App};
use crate::store::ConfigRow;

/// The highest role the user's groups map to, if any maps.
pub fn mapped_role(config: &ConfigRow, groups: &[String]) -> Option<Role> {
    let mapping = config.group_role_mapping.as_object()?;
    groups
        .iter()
        .filter_map(|g| {
            mapping
                .get(g)
                .and_then(|r| r.as_str())
                .and_then(|r| r.parse::<Role>().ok())
        })
        .max_by_key(|r| match r {
            Role::Admin => 3,
            Role::User => 2,
            Role::Viewer => 1,
        })
}

/// The email's domain when it is exactly one of the allowed ones.
fn domain_allowed(config: &ConfigRow, email: &str) -> bool {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let domain = domain.trim().to_ascii_lowercase();
    config.domains().contains(&domain)
}

/// Whether someone who is not (or no longer) a member may be admitted: provisioning on,
/// an email of an exact allowed domain, and a directory that asserts it verified that
/// domain (`xms_edov: true`; absent counts as not verified). Checked before anything
/// else is asked of Entra, Graph or the platform. The email, when admitted.
pub fn admission(
    config: &ConfigRow,
    email: Option<String>,
    domain_verified: bool,
) -> Result<String, ApiError> {
    if !config.auto_provisioning {
        return Err(ApiError::bad_request_code(
            "provisioning_disabled",
            "This tenant does not create accounts on first sign-in; ask its administrator",
        ));
    }
    let email = email.ok_or_else(|| {
        ApiError::bad_request_code("invalid_id_token", "The ID token has no email")
    })?;
    if !domain_allowed(config, &email) {
        return Err(ApiError::bad_request_code(
            "domain_not_allowed",
            "The email's domain is not allowed to sign in to this tenant",
        ));
    }
    if !domain_verified {
        return Err(ApiError::bad_request_code(
            "domain_not_verified",
            "The directory does not assert that it verified the email's domain (the xms_edov claim)",
        ));
    }
    Ok(email)
}

/// The membership of a login: created when missing (by the admission rules, with the
/// role the groups map to, else the tenant's default), its role changed only when the
/// tenant syncs roles from groups and a group maps one; never demoted otherwise.
pub async fn ensure_membership(
    app: &App,
    config: &ConfigRow,
    tenant: TenantId,
    user_id: UserId,
    from_groups: Option<Role>,
    admit: impl FnOnce() -> Result<String, ApiError>,
) -> Result<(), ApiError> {
    let default_role: Role = config.default_role.parse().unwrap_or(Role::Viewer);
    match app
        .tenants
        .membership(tenant, user_id)
        .await
        .map_err(service)?
    {
        Some(m) => {
            if let Some(role) =
                from_groups.filter(|r| config.sync_attributes_on_login && *r != m.role)
            {
                if let Err(e) = app.tenants.set_membership(tenant, user_id, role).await {
                    tracing::warn!(tenant.id = %tenant, user.id = %user_id, error = %e, "role from groups not applied");
                }
            }
        }
        None => {
            admit()?;
            let role = from_groups.unwrap_or(default_role);
            app.tenants
                .set_membership(tenant, user_id, role)
                .await
                .map_err(service)?
                .ok_or(ApiError::NotFound("Tenant"))?;
            tracing::info!(tenant.id = %tenant, user.id = %user_id, role = %role, "SSO member added");
        }
    }
    Ok(())
}
