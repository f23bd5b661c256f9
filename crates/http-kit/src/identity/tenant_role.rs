//! The caller's role in the tenant of the path, asked of the tenant service (through a
//! [`RoleLookup`]) and cached at most `ttl` (30 s by default). A non-member gets 404,
//! as if the tenant did not exist; a lookup that cannot be answered gets 503.
//!
//! A tenant whose `auth_method` is `sso` admits only access tokens of its own SSO
//! login (`amr: ["sso"]` and the directory's `tid`): other tokens get 403
//! `sso_required`, except a platform administrator's, whose entry is audited (once per
//! session and tenant every [`BYPASS_AUDIT_EVERY`] in each replica).
//!
//! A membership change reaches every replica's cache at once through Redis pub/sub
//! ([`announce_role_change`] by the tenant service, [`CachedRoles::follow`] in the
//! others); the TTL only bounds what a lost broadcast can leave behind.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use domain::{Permission, Role, TenantId, UserId};

use super::Authenticated;
use crate::ApiError;

/// What a member may do in a tenant, and how they must have signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAccess {
    pub role: Role,
    /// `Some(directory)` when the tenant admits only tokens of its SSO login through
    /// that directory (Entra `tid`): its `auth_method` is `sso`.
    pub sso_only_directory: Option<String>,
}

pub type RoleFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<MemberAccess>, String>> + Send + 'a>>;
pub type AuditFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Who answers "what is this user's role in this tenant" (the tenant service's
/// internal API, through `clients::TenantClient`).
pub trait RoleLookup: Send + Sync {
    /// The user's access to the tenant; `None` when not a member.
    fn access(&self, tenant: TenantId, user: UserId) -> RoleFuture<'_>;

    /// Records in the tenant's audit log that a platform administrator entered this
    /// SSO-only tenant with a token of another sign-in (`session`: its `fam`).
    fn record_sso_bypass(
        &self,
        tenant: TenantId,
        user: UserId,
        session: Option<uuid::Uuid>,
    ) -> AuditFuture<'_>;
}

/// How often one session's entry into one SSO-only tenant is audited again.
pub const BYPASS_AUDIT_EVERY: Duration = Duration::from_secs(30 * 60);

/// A cached answer: the access (`None`: not a member) and when it was learned.
type CachedRole = (Option<MemberAccess>, Instant);
type BypassKey = (TenantId, UserId, Option<uuid::Uuid>);

/// Caches answers (including "not a member") for at most `ttl`.
pub struct CachedRoles {
    inner: Arc<dyn RoleLookup>,
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<(TenantId, UserId), CachedRole>>,
    /// Platform administrators' entries into SSO-only tenants already audited.
    bypasses: Mutex<HashMap<BypassKey, Instant>>,
    /// Bumped by every invalidation: an answer looked up while one happened is not
    /// cached (it may predate the change).
    epoch: AtomicU64,
}

/// The Redis pub/sub channel of role changes (under the key prefix).
pub const ROLE_CHANNEL: &str = "roles";

/// The message announcing that `user`'s access to `tenant` (every member's, without a
/// user) may have changed: `<tenant>` or `<tenant>:<user>`.
pub fn role_change_message(tenant: TenantId, user: Option<UserId>) -> String {
    match user {
        Some(user) => format!("{tenant}:{user}"),
        None => tenant.to_string(),
    }
}

/// Tells every replica's role cache that access to `tenant` changed (after the change
/// committed). Best effort: a failure is logged, and the caches' TTL stands in.
pub async fn announce_role_change(
    broadcast: &cache::Broadcast,
    tenant: TenantId,
    user: Option<UserId>,
) {
    if let Err(e) = broadcast.publish(&role_change_message(tenant, user)).await {
        tracing::warn!(tenant.id = %tenant, error = %e, "role change not broadcast; caches catch up within their TTL");
    }
}

impl CachedRoles {
    pub fn new(inner: Arc<dyn RoleLookup>, ttl: Duration, max_entries: usize) -> Self {
        Self {
            inner,
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
            bypasses: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
        }
    }

    /// Follows role-change broadcasts for as long as the runtime runs: each message
    /// drops what it names, each (re)subscription drops everything (messages may have
    /// been missed while the subscription was down).
    pub fn follow(self: &Arc<Self>, broadcast: cache::Broadcast) -> tokio::task::JoinHandle<()> {
        let roles = Arc::downgrade(self);
        tokio::spawn(broadcast.listen(move |heard| {
            if let Some(roles) = roles.upgrade() {
                roles.hear(&heard);
            }
        }))
    }

    /// Applies one broadcast.
    pub fn hear(&self, heard: &cache::Heard) {
        match heard {
            cache::Heard::Subscribed => self.clear(),
            cache::Heard::Message(message) => {
                let (tenant, user) = match message.split_once(':') {
                    Some((tenant, user)) => (tenant, Some(user)),
                    None => (message.as_str(), None),
                };
                let Ok(tenant) = tenant.parse::<TenantId>() else {
                    tracing::warn!("unreadable role change broadcast");
                    return self.clear();
                };
                match user.map(str::parse::<UserId>) {
                    None => self.invalidate_tenant(tenant),
                    Some(Ok(user)) => self.invalidate(tenant, user),
                    Some(Err(_)) => self.invalidate_tenant(tenant),
                }
            }
        }
    }

    /// Forgets every cached answer.
    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub async fn access(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<Option<MemberAccess>, String> {
        let key = (tenant, user);
        if let Some((access, at)) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if at.elapsed() < self.ttl {
                return Ok(access.clone());
            }
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let role = self.inner.access(tenant, user).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return Ok(role);
        }
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (role.clone(), Instant::now()));
        Ok(role)
    }

    /// Audits a platform administrator's entry into an SSO-only tenant, unless this
    /// replica did for the same session less than [`BYPASS_AUDIT_EVERY`] ago.
    async fn audit_bypass(
        &self,
        tenant: TenantId,
        user: UserId,
        session: Option<uuid::Uuid>,
    ) -> Result<(), String> {
        let key = (tenant, user, session);
        let recent = self
            .bypasses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .is_some_and(|at| at.elapsed() < BYPASS_AUDIT_EVERY);
        if recent {
            return Ok(());
        }
        self.inner.record_sso_bypass(tenant, user, session).await?;
        let mut bypasses = self.bypasses.lock().unwrap_or_else(|p| p.into_inner());
        if bypasses.len() >= self.max_entries.max(1) {
            bypasses.retain(|_, at| at.elapsed() < BYPASS_AUDIT_EVERY);
            if bypasses.len() >= self.max_entries.max(1) {
                bypasses.clear();
            }
        }
        bypasses.insert(key, Instant::now());
        Ok(())
    }

    /// Forgets every cached answer about `tenant` (its sign-in rule changed).
    pub fn invalidate_tenant(&self, tenant: TenantId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(t, _), _| *t != tenant);
    }

    /// Forgets a cached answer (on `membership.changed`).
    pub fn invalidate(&self, tenant: TenantId, user: UserId) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(tenant, user));
    }
}

/// An authenticated member of the tenant named by the path's `tenant_id` (or `id`).
#[derive(Debug, Clone)]
pub struct TenantMember {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub role: Role,
    /// The claims of the caller's token.
    pub claims: super::Claims,
}

impl TenantMember {
    /// `Ok` when the role allows `permission`, else 403.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "Your role ({}) does not allow this",
                self.role
            )))
        }
    }
}

impl FromRequest for TenantMember {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Authenticated::from_request(req, payload);
        let roles = req.app_data::<web::Data<CachedRoles>>().cloned();
        let raw = req
            .match_info()
            .get("tenant_id")
            .or_else(|| req.match_info().get("id"))
            .map(str::to_owned);
        Box::pin(async move {
            let caller = caller.await?;
            let roles = roles.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("CachedRoles missing from app data"))
            })?;
            let tenant_id: TenantId = raw
                .ok_or_else(|| ApiError::internal(anyhow::anyhow!("route has no tenant id")))?
                .parse()
                .map_err(|_| ApiError::validation("tenant_id", "not a valid id"))?;
            tracing::Span::current().record("tenant.id", tracing::field::display(tenant_id));
            let access = roles
                .access(tenant_id, caller.user_id)
                .await
                .map_err(|e| ApiError::dependency("Membership lookup", e))?
                .ok_or(ApiError::NotFound("Tenant"))?;
            if let Some(directory) = &access.sso_only_directory {
                if !caller.claims.is_sso_from(directory) {
                    if !caller.claims.platform_admin {
                        return Err(ApiError::SsoRequired.into());
                    }
                    roles
                        .audit_bypass(tenant_id, caller.user_id, caller.claims.fam)
                        .await
                        .map_err(|e| ApiError::dependency("Audit log", e))?;
                    tracing::warn!(tenant.id = %tenant_id, user.id = %caller.user_id, "platform admin entered an SSO-only tenant without its SSO login");
                }
            }
            Ok(Self {
                tenant_id,
                user_id: caller.user_id,
                role: access.role,
                claims: caller.claims,
            })
        })
    }
}
