//! The caller's role in the tenant of the path, asked of the tenant service (through a
//! [`RoleLookup`]) and cached at most `ttl` (30 s by default). A non-member gets 404,
//! as if the tenant did not exist; a lookup that cannot be answered gets 503.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use domain::{Permission, Role, TenantId, UserId};

use super::Authenticated;
use crate::ApiError;

pub type RoleFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<Role>, String>> + Send + 'a>>;

/// Who answers "what is this user's role in this tenant" (the tenant service's
/// internal API, through `clients::TenantClient`).
pub trait RoleLookup: Send + Sync {
    fn role(&self, tenant: TenantId, user: UserId) -> RoleFuture<'_>;
}

/// A cached answer: the role (`None`: not a member) and when it was learned.
type CachedRole = (Option<Role>, Instant);

/// Caches answers (including "not a member") for at most `ttl`.
pub struct CachedRoles {
    inner: Arc<dyn RoleLookup>,
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<(TenantId, UserId), CachedRole>>,
}

impl CachedRoles {
    pub fn new(inner: Arc<dyn RoleLookup>, ttl: Duration, max_entries: usize) -> Self {
        Self {
            inner,
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub async fn role(&self, tenant: TenantId, user: UserId) -> Result<Option<Role>, String> {
        let key = (tenant, user);
        if let Some((role, at)) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if at.elapsed() < self.ttl {
                return Ok(*role);
            }
        }
        let role = self.inner.role(tenant, user).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (role, Instant::now()));
        Ok(role)
    }

    /// Forgets a cached answer (on `membership.changed`).
    pub fn invalidate(&self, tenant: TenantId, user: UserId) {
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
            let role = roles
                .role(tenant_id, caller.user_id)
                .await
                .map_err(|e| ApiError::dependency("Membership lookup", e))?
                .ok_or(ApiError::NotFound("Tenant"))?;
            Ok(Self {
                tenant_id,
                user_id: caller.user_id,
                role,
            })
        })
    }
}
