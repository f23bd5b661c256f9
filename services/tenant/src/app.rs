//! What the tenant service's routes share: the main database, provisioning, the auth
//! client for member details, and role lookup straight from the memberships it owns.

use std::sync::Arc;

use domain::{Role, TenantId, UserId};
use http_kit::identity::{AuditFuture, MemberAccess, RoleFuture, RoleLookup};
use http_kit::ApiError;
use main_db::DbPool;
pub use main_db::TxError;

use crate::provisioning::Provisioner;

#[derive(Clone)]
pub struct App {
    pub db: DbPool,
    pub provisioner: Provisioner,
    /// The database servers and their tenant databases.
    pub servers: Arc<crate::fleet::Fleet>,
    pub auth: clients::AuthClient,
    pub limit_per_user: u32,
    /// Publishes the main database's outbox after a commit.
    pub relay: events::RelayHandle,
    /// Role-change broadcasts to every service's role cache.
    pub role_changes: cache::Broadcast,
}

impl App {
    pub async fn conn(&self) -> Result<main_db::DbConnection, ApiError> {
        Ok(self.db.get().await?)
    }

    /// After a committed change of `user`'s membership of `tenant` (of every member's
    /// access, without a user: deactivation, sign-in rule), every service's cached
    /// role is dropped at once.
    pub async fn roles_changed(&self, tenant: TenantId, user: Option<UserId>) {
        http_kit::identity::announce_role_change(&self.role_changes, tenant, user).await;
    }
}

/// The SSO rule of a tenant row: the directory whose SSO tokens alone it admits, when
/// its `auth_method` is `sso` (an empty directory, never mirrored, admits none).
pub fn sso_only_directory(row: &crate::store::tenants::TenantRow) -> Option<String> {
    (row.auth_method == "sso").then(|| row.sso_directory_id.clone().unwrap_or_default())
}

/// Writes `tenant.sso_bypassed` to the audit log (through the outbox): a platform
/// administrator entered an SSO-only tenant with a token of another sign-in.
pub async fn record_sso_bypass(
    db: &DbPool,
    relay: &events::RelayHandle,
    tenant: TenantId,
    user: UserId,
    session: Option<uuid::Uuid>,
) -> Result<(), ApiError> {
    let record = events::AuditRecord::new(
        "tenant.sso_bypassed",
        serde_json::json!({
            "user_id": user,
            "session_id": session,
            "reason": "platform administrator without the tenant's SSO login",
        }),
    );
    let event = events::EventEnvelope::of(&record, Some(tenant), Some(user))
        .map_err(ApiError::internal)?
        .with_request_id(http_kit::request_id::current());
    let mut conn = db.get().await?;
    diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
        main_db::enqueue(tx, &event).await
    })
    .await?;
    relay.nudge(events::OutboxDb::Main);
    Ok(())
}

/// Roles from the memberships table this service owns: a member of a tenant that is
/// not deactivated (active, provisioning or failed: admins must reach `retry`).
pub struct DbRoles {
    pub db: DbPool,
    pub relay: events::RelayHandle,
}

impl RoleLookup for DbRoles {
    fn access(&self, tenant: TenantId, user: UserId) -> RoleFuture<'_> {
        Box::pin(async move {
            let mut conn = self.db.get().await.map_err(|e| e.to_string())?;
            let Some(row) = crate::store::tenants::find(&mut conn, tenant)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            if !row.is_active {
                return Ok(None);
            }
            let membership = crate::store::memberships::find(&mut conn, tenant, user)
                .await
                .map_err(|e| e.to_string())?;
            Ok(membership
                .and_then(|m| m.role.parse::<Role>().ok())
                .map(|role| MemberAccess {
                    role,
                    sso_only_directory: sso_only_directory(&row),
                }))
        })
    }

    fn record_sso_bypass(
        &self,
        tenant: TenantId,
        user: UserId,
        session: Option<uuid::Uuid>,
    ) -> AuditFuture<'_> {
        Box::pin(async move {
            record_sso_bypass(&self.db, &self.relay, tenant, user, session)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
