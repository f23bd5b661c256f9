//! Invitations to join a tenant by email (issue 15): an admin invites an address with a
//! role; the address gets a link `{PUBLIC_APP_URL}/invitations/accept?token=…` with a
//! random single-use token (32 bytes, base64url) of which only the SHA-256 is stored;
//! anyone holding the link sees who invites to what (the public preview), and the
//! account holding that address, verified, accepts it and becomes a member.
//!
//! - Inviting an address with a pending invitation sends it again: the same row gets a
//!   new token (the earlier link stops working), expiry, role and inviter.
//! - The link travels to the mailer (outbox → Kafka → event-worker) sealed by the
//!   keyring, bound to the invitation (`events::invitation::link_aad`).
//! - Accepting creates the membership, marks the invitation accepted and records
//!   `membership.changed` (`added_by: invitation`) and `invitation.accepted` in one
//!   transaction; every service's cached role for the new member is then dropped.

use std::sync::Arc;

use crate::store::invitations::{self, InvitationRow, NewInvitation};
use chrono::{DateTime, Utc};
use domain::{Email, Role, TenantId, UserId};
use events::invitation::{link_aad, InvitationEvent, SealedLink};
use events::EventEnvelope;
use http_kit::{ApiError, FieldErrors, Page};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::{App, TxError};
use crate::routes::members::{added, AddedBy};
use crate::settings::InvitationSettings;

/// Longest token accepted (ours are 43 characters).
const MAX_TOKEN_LEN: usize = 128;

/// Pending invitations expired longer than this are deleted when the tenant invites
/// again (until then their links answer 410 rather than 404).
const KEEP_EXPIRED_DAYS: i64 = 30;

/// What invitations need beyond the tenant service's shared state.
#[derive(Clone)]
pub struct Invitations {
    pub keyring: Arc<secrets::Keyring>,
    /// The front end's URL, without a trailing slash.
    pub public_app_url: String,
    pub settings: InvitationSettings,
    pub limiter: cache::RateLimiter,
}

/// Who sent an invitation (`null` once that account is gone).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Inviter {
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    pub name: String,
}

/// An invitation as its tenant's admins see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Invitation {
    pub id: Uuid,
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantId,
    pub email: String,
    pub role: Role,
    pub invited_by: Option<Inviter>,
    /// When it was sent (last).
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
}

/// What a link shows anyone who holds it: nothing about the invited address.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preview {
    pub tenant_name: String,
    pub role: Role,
    /// The inviter's name (`null` once that account is gone).
    pub invited_by_name: Option<String>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
}

/// An invitation sent, and whether it was one already pending, sent again.
pub struct Sent {
    pub invitation: Invitation,
    pub refreshed: bool,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token() -> Result<String, ApiError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The hash of a presented token; `None` for what cannot be one of ours.
fn presented(token: &str) -> Option<[u8; 32]> {
    let token = token.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then(|| token_hash(token))
}

fn not_found() -> ApiError {
    ApiError::NotFound("Invitation")
}

/// An invitation that may be used now: pending and unexpired (404, else 410).
fn usable(row: Option<InvitationRow>) -> Result<InvitationRow, ApiError> {
    let row = row
        .filter(InvitationRow::is_pending)
        .ok_or_else(not_found)?;
    if row.has_expired(Utc::now()) {
        return Err(ApiError::LinkExpired);
    }
    Ok(row)
}

fn full_name(user: &clients::UserSummary) -> String {
    format!("{} {}", user.first_name, user.last_name)
        .trim()
        .to_owned()
}

fn auth_unavailable(e: clients::ClientError) -> ApiError {
    ApiError::dependency("Auth service", e)
}

fn role_of(row: &InvitationRow) -> Result<Role, ApiError> {
    row.role.parse().map_err(ApiError::internal)
}

fn body(row: &InvitationRow, invited_by: Option<Inviter>) -> Result<Invitation, ApiError> {
    Ok(Invitation {
        id: row.id,
        tenant_id: TenantId::from_uuid(row.tenant_id),
        email: row.email.clone(),
        role: role_of(row)?,
        invited_by,
        created_at: row.created_at,
        expires_at: row.expires_at,
    })
}

/// Parses the body of an invitation: the address normalised and the role, or field
/// errors naming `email` and `role`.
pub fn parse_request(email: Option<&str>, role: Option<&str>) -> Result<(Email, Role), ApiError> {
    let mut errors = FieldErrors::new();
    let email = match email.map(Email::parse) {
        None => {
            errors.add("email", "is required");
            None
        }
        Some(Err(e)) => {
            errors.add("email", e.to_string());
            None
        }
        Some(Ok(email)) => Some(email),
    };
    let role = match role.map(str::parse::<Role>) {
        None => {
            errors.add("role", "is required");
            None
        }
        Some(Err(e)) => {
            errors.add("role", e.to_string());
            None
        }
        Some(Ok(role)) => Some(role),
    };
    errors.into_result()?;
    match (email, role) {
        (Some(email), Some(role)) => Ok((email, role)),
        _ => Err(ApiError::validation("email", "is required")),
    }
}

impl Invitations {
    /// Counts a hit on each bucket: 429 with `Retry-After` past its limit.
    async fn throttle(&self, buckets: &[(String, cache::RateLimit)]) -> Result<(), ApiError> {
        for (bucket, limit) in buckets {
            match self
                .limiter
                .check(bucket, *limit)
                .await
                .map_err(|e| ApiError::dependency("Redis", e))?
            {
                cache::RateDecision::Allowed => {}
                cache::RateDecision::Limited { retry_after } => {
                    tracing::info!(bucket = bucket.split(':').next().unwrap_or(""), "throttled");
                    return Err(ApiError::RateLimited {
                        retry_after_secs: retry_after.as_secs(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Counts a preview or an acceptance from the client address.
    async fn throttle_token(&self, kind: &str, client_ip: Option<&str>) -> Result<(), ApiError> {
        match client_ip {
            Some(ip) => {
                self.throttle(&[(
                    format!("invitation-{kind}:ip:{ip}"),
                    self.settings.token_per_ip,
                )])
                .await
            }
            None => Ok(()),
        }
    }

    /// The link of `token`, sealed for the mailer and bound to invitation `id`.
    fn sealed_link(&self, id: Uuid, token: &str) -> Result<SealedLink, ApiError> {
        let url = format!("{}/invitations/accept?token={token}", self.public_app_url);
        let sealed = self
            .keyring
            .encrypt(url.as_bytes(), &link_aad(id))
            .map_err(ApiError::internal)?;
        Ok(SealedLink {
            reference: id,
            key_id: sealed.key_id,
            ciphertext: sealed.ciphertext,
        })
    }

    /// `admin` invites `email` to `tenant` as `role` (or sends its pending invitation
    /// again). 409 `conflict` if the address belongs to a member; 409
    /// `invitation_limit_reached` past `INVITATION_MAX_PENDING`.
    pub async fn invite(
        &self,
        app: &App,
        admin: UserId,
        tenant: TenantId,
        email: Email,
        role: Role,
    ) -> Result<Sent, ApiError> {
        self.throttle(&[
            (
                format!("invitation:tenant:{tenant}"),
                self.settings.per_tenant,
            ),
            (
                format!("invitation:email:{tenant}:{}", email.as_str()),
                self.settings.per_email,
            ),
        ])
        .await?;
        // Who invites (their name goes into the email) and who holds the address now.
        let users = app
            .auth
            .lookup(&[admin], &[email.as_str()])
            .await
            .map_err(auth_unavailable)?;
        let inviter = users
            .iter()
            .find(|u| u.id == admin)
            .ok_or(ApiError::Unauthorized)?;
        // The platform mails in the inviter's name: only someone who proved their own
        // address may have it send mail to others.
        if !inviter.email_verified {
            return Err(ApiError::forbidden_code(
                "email_not_verified",
                "Verify your email address before inviting people",
            ));
        }
        let inviter = Inviter {
            id: admin,
            name: full_name(inviter),
        };
        let holder = users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email.as_str()))
            .map(|u| u.id);
        let expires_at = Utc::now()
            + chrono::Duration::from_std(self.settings.ttl)
                .map_err(|e| ApiError::internal(anyhow::anyhow!(e)))?;
        let token = random_token()?;
        let hash = token_hash(&token);
        let max_pending = self.settings.max_pending;
        let mut conn = app.conn().await?;
        let (row, refreshed, event) = diesel_async::AsyncConnection::transaction::<_, TxError, _>(
            &mut *conn,
            async |tx| {
                let tenant_row = crate::store::tenants::find(tx, tenant)
                    .await?
                    .filter(|t| t.is_active)
                    .ok_or(ApiError::NotFound("Tenant"))?;
                invitations::lock_tenant(tx, tenant).await?;
                if let Some(user) = holder {
                    if crate::store::memberships::find(tx, tenant, user).await?.is_some() {
                        return Err(ApiError::Conflict(
                            "This address belongs to a member of the tenant already".into(),
                        )
                        .into());
                    }
                }
                invitations::delete_expired(
                    tx,
                    tenant,
                    Utc::now() - chrono::Duration::days(KEEP_EXPIRED_DAYS),
                )
                .await?;
                let pending = invitations::lock_pending_for(tx, tenant, &email).await?;
                let id = pending.as_ref().map_or_else(Uuid::new_v4, |p| p.id);
                let new = NewInvitation {
                    id,
                    tenant,
                    email: &email,
                    role,
                    token_hash: &hash,
                    invited_by: admin,
                    expires_at,
                };
                let (row, refreshed) = if pending.is_some() {
                    let row = invitations::refresh(tx, id, &new)
                        .await?
                        .ok_or_else(not_found)?;
                    (row, true)
                } else {
                    let open = invitations::count_open(tx, tenant).await?;
                    if open >= i64::from(max_pending) {
                        return Err(ApiError::conflict_code(
                            "invitation_limit_reached",
                            format!(
                                "This tenant has {max_pending} pending invitations, the most it may have: revoke some or wait for them to expire"
                            ),
                        )
                        .into());
                    }
                    (invitations::insert(tx, &new).await?, false)
                };
                let event = InvitationEvent::Created {
                    invitation_id: row.id,
                    tenant_id: tenant,
                    tenant_name: tenant_row.name,
                    email: row.email.clone(),
                    role,
                    invited_by: admin,
                    invited_by_name: inviter.name.clone(),
                    link: self.sealed_link(row.id, &token)?,
                    expires_at: row.expires_at,
                    refreshed,
                };
                let event = envelope(&event, admin)?;
                enqueue(tx, &event).await?;
                Ok((row, refreshed, event))
            },
        )
        .await?;
        app.relay.nudge(events::OutboxDb::Main);
        tracing::info!(tenant.id = %tenant, invitation = %row.id, refreshed, event = %event.id, "invitation sent");
        Ok(Sent {
            invitation: body(&row, Some(inviter))?,
            refreshed,
        })
    }

    /// The tenant's pending, unexpired invitations, most recently sent first, and how
    /// many there are.
    pub async fn list(
        &self,
        app: &App,
        tenant: TenantId,
        page: Page,
    ) -> Result<(Vec<Invitation>, i64), ApiError> {
        let (rows, total) = {
            let mut conn = app.conn().await?;
            let total = invitations::count_open(&mut conn, tenant)
                .await
                .map_err(ApiError::internal)?;
            let rows = invitations::list_open(&mut conn, tenant, page.offset(), page.per_page)
                .await
                .map_err(ApiError::internal)?;
            (rows, total)
        };
        let mut inviters: Vec<UserId> = rows
            .iter()
            .filter_map(|r| r.invited_by.map(UserId::from_uuid))
            .collect();
        inviters.sort_unstable_by_key(|id| id.into_uuid());
        inviters.dedup();
        let users = app.auth.users(&inviters).await.map_err(auth_unavailable)?;
        let inviter = |id: Option<Uuid>| {
            let id = UserId::from_uuid(id?);
            users.iter().find(|u| u.id == id).map(|u| Inviter {
                id,
                name: full_name(u),
            })
        };
        let list = rows
            .iter()
            .map(|row| body(row, inviter(row.invited_by)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((list, total))
    }

    /// Revokes the tenant's pending invitation `id` (404 if there is none): its link
    /// stops working.
    pub async fn revoke(
        &self,
        app: &App,
        admin: UserId,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<InvitationRow, ApiError> {
        let mut conn = app.conn().await?;
        let row =
            diesel_async::AsyncConnection::transaction::<_, TxError, _>(&mut *conn, async |tx| {
                let row = invitations::revoke(tx, tenant, id)
                    .await?
                    .ok_or_else(not_found)?;
                let event = InvitationEvent::Revoked {
                    invitation_id: row.id,
                    tenant_id: tenant,
                    email: row.email.clone(),
                    role: role_of(&row)?,
                };
                enqueue(tx, &envelope(&event, admin)?).await?;
                Ok(row)
            })
            .await?;
        app.relay.nudge(events::OutboxDb::Main);
        tracing::info!(tenant.id = %tenant, invitation = %id, "invitation revoked");
        Ok(row)
    }

    /// What the link of `token` invites to: 404 for a link unknown, used or revoked
    /// (or of a tenant gone), 410 `token_expired` for an expired one.
    pub async fn preview(
        &self,
        app: &App,
        token: &str,
        client_ip: Option<&str>,
    ) -> Result<Preview, ApiError> {
        self.throttle_token("preview", client_ip).await?;
        let hash = presented(token).ok_or_else(not_found)?;
        let (row, tenant) = {
            let mut conn = app.conn().await?;
            let row = usable(
                invitations::find_by_hash(&mut conn, &hash)
                    .await
                    .map_err(ApiError::internal)?,
            )?;
            let tenant = crate::store::tenants::find(&mut conn, TenantId::from_uuid(row.tenant_id))
                .await
                .map_err(ApiError::internal)?
                .filter(|t| t.is_active)
                .ok_or_else(not_found)?;
            (row, tenant)
        };
        let inviter = match row.invited_by {
            Some(id) => app
                .auth
                .users(&[UserId::from_uuid(id)])
                .await
                .map_err(auth_unavailable)?
                .first()
                .map(full_name),
            None => None,
        };
        Ok(Preview {
            tenant_name: tenant.name,
            role: role_of(&row)?,
            invited_by_name: inviter,
            expires_at: row.expires_at,
        })
    }

    /// `caller` accepts the invitation of `token`: their account's address must be the
    /// invited one (403 `invitation_email_mismatch`) and verified (403
    /// `email_not_verified`); 404 for a link unknown, used or revoked, 410 for an
    /// expired one, 409 if the caller is a member already. Returns the membership.
    pub async fn accept(
        &self,
        app: &App,
        caller: UserId,
        token: Option<&str>,
        client_ip: Option<&str>,
    ) -> Result<clients::tenant::Membership, ApiError> {
        self.throttle_token("accept", client_ip).await?;
        let token = token.map(str::trim).unwrap_or_default();
        if token.is_empty() {
            return Err(ApiError::validation("token", "is required"));
        }
        let hash = presented(token).ok_or_else(not_found)?;
        // The caller's address and whether it is verified, from auth (who owns them),
        // before any lock is taken.
        let account = app
            .auth
            .users(&[caller])
            .await
            .map_err(auth_unavailable)?
            .into_iter()
            .find(|u| u.id == caller)
            .filter(|u| u.is_active)
            .ok_or(ApiError::Unauthorized)?;
        let address = Email::parse(&account.email).ok();
        let request_id = http_kit::request_id::current();
        let mut conn = app.conn().await?;
        let (tenant, membership) = diesel_async::AsyncConnection::transaction::<_, TxError, _>(
            &mut *conn,
            async |tx| {
                let row = usable(invitations::lock_by_hash(tx, &hash).await?)?;
                let tenant = TenantId::from_uuid(row.tenant_id);
                if address.as_ref().map(Email::as_str) != Some(row.email.as_str()) {
                    return Err(ApiError::forbidden_code(
                        "invitation_email_mismatch",
                        "This invitation was sent to another email address: sign in with the account of that address",
                    )
                    .into());
                }
                if !account.email_verified {
                    return Err(ApiError::forbidden_code(
                        "email_not_verified",
                        "Verify your email address before accepting the invitation",
                    )
                    .into());
                }
                crate::store::tenants::find(tx, tenant)
                    .await?
                    .filter(|t| t.is_active)
                    .ok_or_else(not_found)?;
                // Second line behind revoke_after_membership_change: an invitation
                // admits only while its sender may still invite.
                let inviter_admin = match row.invited_by {
                    Some(inviter) => crate::store::memberships::find(tx, tenant, UserId::from_uuid(inviter))
                        .await?
                        .is_some_and(|m| m.role == Role::Admin.as_str()),
                    None => false,
                };
                if !inviter_admin {
                    return Err(not_found().into());
                }
                if crate::store::memberships::find(tx, tenant, caller).await?.is_some() {
                    return Err(ApiError::Conflict(
                        "You are a member of this tenant already".into(),
                    )
                    .into());
                }
                let role = role_of(&row)?;
                let membership = crate::store::memberships::insert(tx, caller, tenant, role)
                    .await
                    .map_err(already_member)?;
                invitations::accept(tx, row.id, caller)
                    .await?
                    .ok_or_else(not_found)?;
                let changed = added(
                    tenant,
                    caller,
                    caller,
                    role,
                    request_id.clone(),
                    AddedBy::Invitation(row.id),
                )?;
                enqueue(tx, &changed).await?;
                let accepted = InvitationEvent::Accepted {
                    invitation_id: row.id,
                    tenant_id: tenant,
                    email: row.email.clone(),
                    role,
                    user_id: caller,
                };
                enqueue(tx, &envelope(&accepted, caller)?).await?;
                Ok((
                    tenant,
                    clients::tenant::Membership {
                        tenant_id: tenant,
                        user_id: caller,
                        role,
                        joined_at: membership.joined_at,
                        sso_only_directory: None,
                    },
                ))
            },
        )
        .await?;
        app.relay.nudge(events::OutboxDb::Main);
        app.roles_changed(tenant, Some(caller)).await;
        tracing::info!(tenant.id = %tenant, user.id = %caller, "invitation accepted");
        Ok(membership)
    }
}

/// A membership added meanwhile (by user id, or SSO) is a 409 like one found before.
fn already_member(e: diesel::result::Error) -> ApiError {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
            ApiError::Conflict("You are a member of this tenant already".into())
        }
        other => ApiError::internal(other),
    }
}

/// A membership change that may leave invitations behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipChange {
    Removed,
    RoleSet(Role),
}

/// In the transaction of a membership change: a member removed or no longer an admin
/// loses the pending invitations they sent (they may no longer invite, so what they
/// sent must not let anyone in), and a removed member's own pending invitation is
/// revoked (an old link must not bring them back). Each is recorded as
/// `invitation.revoked` by `actor` (`None`: the platform, e.g. SSO group mapping).
pub async fn revoke_after_membership_change(
    tx: &mut diesel_async::AsyncPgConnection,
    tenant: TenantId,
    user: UserId,
    change: MembershipChange,
    actor: Option<UserId>,
) -> Result<usize, TxError> {
    let mut revoked = Vec::new();
    if change != MembershipChange::RoleSet(Role::Admin) {
        revoked.extend(invitations::revoke_sent_by(tx, tenant, user).await?);
    }
    if change == MembershipChange::Removed {
        if let Some(account) = main_db::users::find(tx, user).await? {
            let email = account.email.to_ascii_lowercase();
            revoked.extend(invitations::revoke_addressed_to(tx, tenant, &email).await?);
        }
    }
    for row in &revoked {
        let event = InvitationEvent::Revoked {
            invitation_id: row.id,
            tenant_id: tenant,
            email: row.email.clone(),
            role: role_of(row)?,
        };
        let envelope = event
            .envelope(actor)
            .map_err(ApiError::internal)?
            .with_request_id(http_kit::request_id::current());
        enqueue(tx, &envelope).await?;
    }
    if !revoked.is_empty() {
        tracing::info!(tenant.id = %tenant, user.id = %user, revoked = revoked.len(), "pending invitations revoked with a membership change");
    }
    Ok(revoked.len())
}

fn envelope(event: &InvitationEvent, actor: UserId) -> Result<EventEnvelope, ApiError> {
    Ok(event
        .envelope(Some(actor))
        .map_err(ApiError::internal)?
        .with_request_id(http_kit::request_id::current()))
}

async fn enqueue(
    tx: &mut diesel_async::AsyncPgConnection,
    event: &EventEnvelope,
) -> Result<(), ApiError> {
    events::enqueue(tx, event).await.map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_characters_and_only_their_hash_is_compared() {
        let token = random_token().expect("token");
        assert_eq!(token.len(), 43);
        assert!(token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(random_token().expect("token"), token);
        assert_eq!(presented(&format!(" {token} ")), Some(token_hash(&token)));
        assert_eq!(presented(""), None);
        assert_eq!(presented(&"a".repeat(MAX_TOKEN_LEN + 1)), None);
    }

    #[test]
    fn requests_name_the_fields_that_are_wrong() {
        let (email, role) =
            parse_request(Some(" Ada@Example.COM "), Some("viewer")).expect("valid");
        assert_eq!((email.as_str(), role), ("ada@example.com", Role::Viewer));
        let ApiError::Validation(errors) =
            parse_request(Some("not an address"), Some("owner")).expect_err("invalid")
        else {
            panic!("a validation error");
        };
        assert_eq!(errors.fields().collect::<Vec<_>>(), ["email", "role"]);
        let ApiError::Validation(errors) = parse_request(None, None).expect_err("missing") else {
            panic!("a validation error");
        };
        assert_eq!(errors.fields().collect::<Vec<_>>(), ["email", "role"]);
    }

    #[test]
    fn a_link_is_usable_while_pending_and_unexpired() {
        let now = Utc::now();
        let row = InvitationRow {
            id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            email: "ada@example.com".into(),
            role: "user".into(),
            token_hash: vec![0; 32],
            invited_by: None,
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
            accepted_at: None,
            accepted_by: None,
            revoked_at: None,
        };
        assert!(usable(Some(row.clone())).is_ok());
        assert!(matches!(usable(None), Err(ApiError::NotFound(_))));
        let used = InvitationRow {
            accepted_at: Some(now),
            ..row.clone()
        };
        assert!(matches!(usable(Some(used)), Err(ApiError::NotFound(_))));
        let revoked = InvitationRow {
            revoked_at: Some(now),
            ..row.clone()
        };
        assert!(matches!(usable(Some(revoked)), Err(ApiError::NotFound(_))));
        let expired = InvitationRow {
            expires_at: now - chrono::Duration::seconds(1),
            ..row
        };
        assert!(matches!(usable(Some(expired)), Err(ApiError::LinkExpired)));
    }
}
