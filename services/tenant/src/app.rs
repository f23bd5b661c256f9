//! What the tenant service's routes share: the main database, provisioning, the auth
//! client for member details, and role lookup straight from the memberships it owns.

use std::sync::Arc;

use domain::{Role, TenantId, UserId};
use http_kit::identity::{RoleFuture, RoleLookup};
use http_kit::ApiError;
use main_db::DbPool;

use crate::provisioning::Provisioner;

#[derive(Clone)]
pub struct TenantApp {
    pub db: DbPool,
    pub provisioner: Provisioner,
    pub tenants: Arc<tenant_db::TenantDatabaseManager>,
    pub auth: clients::AuthClient,
    pub limit_per_user: u32,
    /// Publishes the main database's outbox after a commit.
    pub relay: events::RelayHandle,
}

impl TenantApp {
    pub async fn conn(&self) -> Result<main_db::DbConnection, ApiError> {
        self.db.get().await.map_err(unavailable)
    }
}

pub fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::dependency("Database", e)
}

/// Roles from the memberships table this service owns: a member of a tenant that is
/// not deactivated (active, provisioning or failed: admins must reach `retry`).
pub struct DbRoles(pub DbPool);

impl RoleLookup for DbRoles {
    fn role(&self, tenant: TenantId, user: UserId) -> RoleFuture<'_> {
        Box::pin(async move {
            let mut conn = self.0.get().await.map_err(|e| e.to_string())?;
            let Some(row) = main_db::tenants::find(&mut conn, tenant)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            if !row.is_active {
                return Ok(None);
            }
            let membership = main_db::memberships::find(&mut conn, tenant, user)
                .await
                .map_err(|e| e.to_string())?;
            Ok(membership.and_then(|m| m.role.parse::<Role>().ok()))
        })
    }
}

/// The error of a handler's transaction: an `ApiError`, or a database error (a 500).
pub struct TxError(pub ApiError);

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        Self(ApiError::internal(e))
    }
}

impl From<ApiError> for TxError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl From<TxError> for ApiError {
    fn from(e: TxError) -> Self {
        e.0
    }
}
