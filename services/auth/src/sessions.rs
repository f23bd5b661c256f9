//! Sessions: login, new sessions (also for SSO), refresh (rotation with reuse
//! detection), logout, the session list, and ending sessions: one, all but the
//! current, all (a per-user cut-off in Redis ends every access token at once), or those
//! an SSO identity produced.
//!
//! A session is a refresh family (`user_sessions`, its id the `fam` claim). Every change
//! to one takes its row lock, so a revocation never misses a successor token a
//! concurrent rotation stores. Revocations are written to the database first (refresh
//! tokens stop there), then to Redis, which every service checks on every request: a
//! revoked session's access tokens stop working at once.

use crate::store::refresh_tokens::{self, NewRefreshToken};
use crate::store::sessions::{self, AccountState, NewSession, Revoked, SessionOrigin, SessionRow};
use chrono::{DateTime, Utc};
use domain::{Email, UserId};
use events::account::RevokedBy;
use events::AccountEvent;
use http_kit::identity::{Claims, TokenType};
use http_kit::ApiError;
use main_db::users::{self, UserRow};
use serde::Serialize;
use uuid::Uuid;

use crate::app::{redis_unavailable, App, TxError};
use crate::tokens::{Issued, SessionGrant, TokenPair};

/// Where a session is opened from (shown in the session list).
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

/// A session as the session list shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_used_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub client_address: Option<String>,
    /// `pwd` or `sso`.
    pub auth_method: String,
    /// For an SSO session: the tenant whose sign-in made it.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub sso_tenant_id: Option<Uuid>,
    /// The session of the token that asked.
    pub current: bool,
}

impl SessionBody {
    fn new(row: SessionRow, current: Option<Uuid>) -> Self {
        Self {
            current: current == Some(row.id),
            id: row.id,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            user_agent: row.user_agent,
            client_address: row.client_address,
            auth_method: row.amr,
            sso_tenant_id: row.sso_tenant_id,
        }
    }
}

enum Rotation {
    Rotated(Box<TokenPair>),
    /// Rotated moments ago (another tab): the pair issued then.
    Repeated,
    Unknown,
    Revoked,
    Reused,
    Disabled,
}

fn refresh_row(refresh: &Issued, parent: Option<Uuid>) -> NewRefreshToken {
    NewRefreshToken {
        jti: refresh.claims.jti,
        user_id: UserId::from_uuid(refresh.claims.sub),
        family_id: refresh.claims.fam.unwrap_or(refresh.claims.jti),
        parent_jti: parent,
        issued_at: DateTime::from_timestamp(refresh.claims.iat, 0).unwrap_or_else(Utc::now),
        expires_at: refresh.expires_at(),
    }
}

fn grant<'a>(
    user: &UserRow,
    family: Uuid,
    origin: &'a SessionOrigin,
    signed_in_at: DateTime<Utc>,
) -> SessionGrant<'a> {
    SessionGrant {
        user: UserId::from_uuid(user.id),
        family,
        origin,
        platform_admin: user.is_platform_admin,
        auth_time: signed_in_at.timestamp(),
    }
}

impl App {
    /// 429 when a bucket of failed logins is full (nothing is counted here).
    async fn refuse_after_failures(&self, buckets: &[(String, u32)]) -> Result<(), ApiError> {
        for (bucket, limit) in buckets {
            match self.limiter.peek(bucket, *limit).await {
                Ok(cache::RateDecision::Allowed) => {}
                Ok(cache::RateDecision::Limited { retry_after }) => {
                    tracing::info!(
                        bucket = bucket.splitn(4, ':').take(3).collect::<Vec<_>>().join(":"),
                        "login throttled"
                    );
                    return Err(ApiError::RateLimited {
                        retry_after_secs: retry_after.as_secs().max(1),
                    });
                }
                Err(e) => return Err(ApiError::dependency("Rate limiter", e)),
            }
        }
        Ok(())
    }

    /// Counts a failed login in each bucket (best effort: Redis failing here must not
    /// turn a wrong password into a 503).
    async fn count_failure(&self, buckets: &[(String, u32)]) {
        for (bucket, limit) in buckets {
            if let Err(e) = self.limiter.hit(bucket, *limit, self.limits.window).await {
                tracing::warn!(error = %e, "could not count a failed login");
            }
        }
    }

    /// Checks the password (same time for unknown emails), then opens a session.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: &ClientInfo,
    ) -> Result<(UserRow, Vec<clients::UserTenant>, TokenPair), ApiError> {
        let normalised = email.trim().to_ascii_lowercase();
        // Failed attempts are counted, not attempts: an office behind one address signs
        // in all at once, while one address guessing many accounts (spraying) or one
        // account (brute force) is stopped. Per (account, client address): failures
        // from one address do not lock the owner out everywhere else; a success clears
        // it. An email too long to be one gets no bucket of its own (a key as long as
        // the body is not stored).
        let mut buckets = Vec::with_capacity(2);
        if let Some(ip) = &client.address {
            buckets.push((format!("login:failed:ip:{ip}"), self.limits.per_ip));
        }
        let account_bucket = format!(
            "login:failed:account:{normalised}:{}",
            client.address.as_deref().unwrap_or("-")
        );
        if normalised.len() <= domain::MAX_EMAIL_LEN {
            buckets.push((account_bucket.clone(), self.limits.per_account));
        }
        self.refuse_after_failures(&buckets).await?;
        // bcrypt reads 72 bytes; a longer password is never the one registered (the
        // policy refuses those), and must not match on its first 72 bytes.
        let too_long = password.len() > crate::passwords::MAX_PASSWORD_BYTES;

        let user = match Email::parse(&normalised) {
            Ok(email) => {
                let mut conn = self.conn().await?;
                users::find_by_email(&mut conn, &email)
                    .await
                    .map_err(ApiError::internal)?
            }
            Err(_) => None,
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let verified = self.passwords.verify(password, hash).await? && !too_long;
        let Some(user) = user.filter(|_| verified) else {
            self.count_failure(&buckets).await;
            return Err(ApiError::InvalidCredentials);
        };
        if !user.is_active {
            return Err(ApiError::AccountInactive);
        }
        if self.require_verified_email && user.email_verified_at.is_none() {
            return Err(ApiError::EmailNotVerified);
        }
        if let Err(e) = self.limiter.reset(&account_bucket).await {
            tracing::warn!(error = %e, "could not reset the login rate limit");
        }
        // Before the session exists: a failure here leaves nothing behind.
        let tenants = self.tenants_of(UserId::from_uuid(user.id)).await?;
        let unchanged = AccountState {
            password_hash: user.password_hash.as_deref(),
            tokens_valid_after: user.tokens_valid_after,
        };
        let pair = self
            .open_session(&user, &SessionOrigin::Password, client, Some(&unchanged))
            .await?
            // The password changed, or every session was ended, while this login ran.
            .ok_or(ApiError::InvalidCredentials)?;
        tracing::info!(user.id = %user.id, "login");
        Ok((user, tenants, pair))
    }

    /// A new session of an active user (an SSO login): its token pair.
    pub async fn new_session(
        &self,
        user: &UserRow,
        origin: &SessionOrigin,
        client: &ClientInfo,
    ) -> Result<TokenPair, ApiError> {
        self.open_session(user, origin, client, None)
            .await?
            .ok_or(ApiError::AccountInactive)
    }

    /// Stores a new session and its first refresh token; `None` when the user is not
    /// active (or, with `unchanged`, the account changed since it was read).
    async fn open_session(
        &self,
        user: &UserRow,
        origin: &SessionOrigin,
        client: &ClientInfo,
        unchanged: Option<&AccountState<'_>>,
    ) -> Result<Option<TokenPair>, ApiError> {
        let family = Uuid::new_v4();
        let pair = self.issuer.pair(&grant(user, family, origin, Utc::now()))?;
        let session = NewSession {
            id: family,
            user_id: UserId::from_uuid(user.id),
            expires_at: pair.refresh.expires_at(),
            user_agent: client.user_agent.as_deref(),
            client_address: client.address.as_deref(),
            origin,
        };
        let first = refresh_row(&pair.refresh, None);
        self.transaction(async |tx| {
            if !sessions::insert(tx, &session, unchanged).await? {
                return Ok((None, Vec::new()));
            }
            refresh_tokens::insert(tx, &first).await?;
            Ok((Some(pair), Vec::new()))
        })
        .await
    }

    /// Rotates a refresh token. Presenting a token already rotated (or refreshing one of
    /// a revoked session) revokes the whole session and answers `token_revoked`; an
    /// inactive account answers `account_disabled`.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, ApiError> {
        let claims = self
            .verifier
            .verify_signed(token, TokenType::Refresh)
            .await?;
        let family = claims.fam.ok_or(ApiError::InvalidToken)?;
        let user_id = UserId::from_uuid(claims.sub);
        let mut conn = self.conn().await?;
        let user = users::find(&mut conn, user_id)
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::InvalidToken)?;
        drop(conn);
        if !user.is_active {
            return Err(ApiError::AccountDisabled);
        }
        self.verifier.check_revocation(&claims).await?;
        let outcome = self
            .transaction(async |tx| {
                let Some(session) = sessions::lock(tx, family).await? else {
                    return Ok((Rotation::Unknown, Vec::new()));
                };
                if session.user_id != claims.sub {
                    return Ok((Rotation::Unknown, Vec::new()));
                }
                if session.revoked_at.is_some() {
                    return Ok((Rotation::Revoked, Vec::new()));
                }
                let Some(user) = users::find(tx, user_id).await? else {
                    return Ok((Rotation::Unknown, Vec::new()));
                };
                if !user.is_active {
                    return Ok((Rotation::Disabled, Vec::new()));
                }
                let Some(row) = refresh_tokens::find(tx, claims.jti).await? else {
                    return Ok((Rotation::Unknown, Vec::new()));
                };
                if row.revoked_at.is_some() {
                    return Ok((Rotation::Revoked, Vec::new()));
                }
                if !refresh_tokens::mark_used(tx, claims.jti).await? {
                    let moments_ago = row.used_at.is_some_and(|at| {
                        (Utc::now() - at)
                            .to_std()
                            .is_ok_and(|ago| ago < self.refresh_reuse_interval)
                    });
                    if moments_ago {
                        return Ok((Rotation::Repeated, Vec::new()));
                    }
                    sessions::revoke(tx, user_id, family, "refresh token reused").await?;
                    return Ok((Rotation::Reused, Vec::new()));
                }
                let origin = session.origin();
                let pair = self
                    .issuer
                    .pair(&grant(&user, family, &origin, session.created_at))?;
                // Before the commit: a concurrent refresh with the same token waits on
                // the session's lock, and finds the pair once this one commits. Redis
                // not answering rolls the rotation back (503, the token still valid)
                // rather than leave a second tab to a 401.
                self.keep_successor(claims.jti, &pair)
                    .await
                    .map_err(redis_unavailable)?;
                refresh_tokens::insert(tx, &refresh_row(&pair.refresh, Some(claims.jti))).await?;
                sessions::touch(tx, family, pair.refresh.expires_at()).await?;
                Ok((Rotation::Rotated(Box::new(pair)), Vec::new()))
            })
            .await?;
        match outcome {
            Rotation::Rotated(pair) => Ok(*pair),
            // Redis failing to answer is a 503 the client retries, never a 401 that
            // would sign a user out of a session nothing revoked.
            Rotation::Repeated => match self
                .successor(claims.jti)
                .await
                .map_err(redis_unavailable)?
            {
                Some(pair) => {
                    tracing::info!(user.id = %user_id, session = %family, "refresh token presented again moments after its rotation: the same pair");
                    Ok(pair)
                }
                // The kept pair expired between the database's check and this read
                // (the interval ended mid-request): a reuse like any later one, so the
                // session ends; answering 401 and leaving it alive would let the
                // token's thief go on with its successor.
                None => {
                    self.transaction(async |tx| {
                        sessions::revoke(tx, user_id, family, "refresh token reused").await?;
                        Ok(((), Vec::new()))
                    })
                    .await?;
                    self.end_reused_session(user_id, family).await
                }
            },
            Rotation::Unknown => Err(ApiError::InvalidToken),
            Rotation::Revoked => Err(ApiError::TokenRevoked),
            Rotation::Disabled => Err(ApiError::AccountDisabled),
            Rotation::Reused => self.end_reused_session(user_id, family).await,
        }
    }

    /// After a reuse revoked the session in the database: its tokens revoked in Redis
    /// too, and `token_revoked`.
    async fn end_reused_session(
        &self,
        user_id: UserId,
        family: Uuid,
    ) -> Result<TokenPair, ApiError> {
        tracing::warn!(user.id = %user_id, session = %family, "refresh token reuse: session revoked");
        self.revocations
            .revoke_family(&family.to_string(), self.issuer.refresh_ttl)
            .await
            .map_err(redis_unavailable)?;
        Err(ApiError::TokenRevoked)
    }

    /// Keeps the pair a rotation of `rotated` issued, sealed, for the reuse interval;
    /// an error when Redis does not answer.
    async fn keep_successor(
        &self,
        rotated: Uuid,
        pair: &TokenPair,
    ) -> Result<(), cache::CacheError> {
        if self.refresh_reuse_interval.is_zero() {
            return Ok(());
        }
        let plain = format!("{}\n{}", pair.access.token, pair.refresh.token);
        let aad = format!("refresh-successor:{rotated}");
        let sealed = match self.links.keyring.encrypt(plain.as_bytes(), aad.as_bytes()) {
            Ok(sealed) => format!("{}:{}", sealed.key_id, sealed.ciphertext),
            Err(e) => {
                tracing::warn!(error = %e, "could not seal a rotated pair");
                return Ok(());
            }
        };
        self.successors
            .put(
                "refresh-successor",
                &rotated.to_string(),
                &sealed,
                self.refresh_reuse_interval,
            )
            .await?;
        Ok(())
    }

    /// The pair kept for `rotated`, if still there and intact; an error when Redis
    /// does not answer.
    async fn successor(&self, rotated: Uuid) -> Result<Option<TokenPair>, cache::CacheError> {
        let Some(stored) = self
            .successors
            .get("refresh-successor", &rotated.to_string())
            .await?
        else {
            return Ok(None);
        };
        Ok(self.open_successor(rotated, &stored).await)
    }

    /// A kept pair unsealed and verified; `None` when it does not open or verify.
    async fn open_successor(&self, rotated: Uuid, stored: &str) -> Option<TokenPair> {
        let (key_id, ciphertext) = stored.split_once(':')?;
        let aad = format!("refresh-successor:{rotated}");
        let plain = self
            .links
            .keyring
            .decrypt(key_id, ciphertext, aad.as_bytes())
            .ok()?;
        let plain = String::from_utf8(plain).ok()?;
        let (access, refresh) = plain.split_once('\n')?;
        let access_claims = self
            .verifier
            .verify_signed(access, TokenType::Access)
            .await
            .ok()?;
        let refresh_claims = self
            .verifier
            .verify_signed(refresh, TokenType::Refresh)
            .await
            .ok()?;
        Some(TokenPair {
            access: Issued {
                token: access.to_owned(),
                claims: access_claims,
            },
            refresh: Issued {
                token: refresh.to_owned(),
                claims: refresh_claims,
            },
        })
    }

    /// Revokes the access token and its session (and, when given, the session of
    /// `refresh_token` if it belongs to the same user).
    pub async fn logout(
        &self,
        access: &Claims,
        refresh_token: Option<&str>,
    ) -> Result<(), ApiError> {
        // Everything is checked before anything is revoked: a bad refresh token is a 400
        // that leaves the session as it was, never half a logout.
        let mut families: Vec<Uuid> = access.fam.into_iter().collect();
        if let Some(token) = refresh_token {
            match self.verifier.verify(token, TokenType::Refresh).await {
                Ok(claims) if claims.sub == access.sub => families.extend(claims.fam),
                // Already revoked or rotated: its session is handled or was this one.
                Ok(_) | Err(ApiError::TokenRevoked) | Err(ApiError::TokenExpired) => {}
                Err(e @ (ApiError::ServiceUnavailable(_) | ApiError::Dependency { .. })) => {
                    return Err(e)
                }
                Err(_) => {
                    return Err(ApiError::validation(
                        "refresh_token",
                        "is not a valid refresh token",
                    ))
                }
            }
        }
        families.dedup();
        let now = Utc::now().timestamp();
        self.revocations
            .revoke(
                &access.jti.to_string(),
                std::time::Duration::from_secs(access.remaining_secs(now)),
            )
            .await
            .map_err(redis_unavailable)?;
        let user = UserId::from_uuid(access.sub);
        for family in families {
            self.transaction(async |tx| {
                sessions::revoke(tx, user, family, "logout").await?;
                Ok(((), Vec::new()))
            })
            .await?;
            self.revocations
                .revoke_family(&family.to_string(), self.issuer.refresh_ttl)
                .await
                .map_err(redis_unavailable)?;
        }
        tracing::info!(user.id = %access.sub, "logout");
        Ok(())
    }

    /// The user's live sessions, most recently used first; `current` marks `current`.
    pub async fn sessions_of(
        &self,
        user: UserId,
        current: Option<Uuid>,
    ) -> Result<Vec<SessionBody>, ApiError> {
        let mut conn = self.conn().await?;
        let rows = sessions::live_of_user(&mut conn, user)
            .await
            .map_err(ApiError::internal)?;
        Ok(rows
            .into_iter()
            .map(|row| SessionBody::new(row, current))
            .collect())
    }

    /// Ends one of the user's sessions; 404 when it is not a live session of theirs.
    pub async fn revoke_session(&self, user: &UserRow, session: Uuid) -> Result<(), ApiError> {
        let user_id = UserId::from_uuid(user.id);
        let revoked = self
            .transaction(async |tx| {
                let revoked = sessions::revoke(tx, user_id, session, "revoked by the user")
                    .await?
                    .ok_or(ApiError::NotFound("Session"))?;
                let event = self.account_event(
                    &AccountEvent::SessionsRevoked {
                        user_id,
                        email: user.email.clone(),
                        first_name: user.first_name.clone(),
                        by: RevokedBy::User,
                        sessions_revoked: 1,
                        session_id: Some(session),
                    },
                    Some(user_id),
                )?;
                Ok((revoked, vec![event]))
            })
            .await?;
        self.forget_sessions(&[revoked]).await?;
        tracing::info!(user.id = %user_id, session = %session, "session revoked");
        Ok(())
    }

    /// Marks revoked sessions in Redis: their access tokens stop working at once.
    pub async fn forget_sessions(&self, revoked: &[Revoked]) -> Result<(), ApiError> {
        let ids: Vec<String> = revoked.iter().map(|r| r.id.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.revocations
            .revoke_families(&ids, self.issuer.refresh_ttl)
            .await
            .map_err(redis_unavailable)
    }

    /// Refuses every token of the user issued before `cutoff`, and the sessions ended
    /// with it, in Redis.
    pub async fn forget_all_sessions(
        &self,
        user: UserId,
        cutoff: DateTime<Utc>,
        revoked: &[Revoked],
    ) -> Result<(), ApiError> {
        let ids: Vec<String> = revoked.iter().map(|r| r.id.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.revocations
            .revoke_user_before(
                &user.to_string(),
                cutoff.timestamp(),
                &ids,
                self.issuer.refresh_ttl,
            )
            .await
            .map_err(redis_unavailable)
    }

    /// Ends every session of `user` inside the caller's transaction (the user's row must
    /// be locked): the cut-off and the sessions ended, for [`Self::forget_all_sessions`]
    /// after the commit.
    pub async fn end_all_in(
        &self,
        tx: &mut diesel_async::AsyncPgConnection,
        user: UserId,
        reason: &str,
    ) -> Result<(DateTime<Utc>, Vec<Revoked>), TxError> {
        let cutoff = users::cut_tokens(tx, user)
            .await?
            .ok_or(ApiError::NotFound("User"))?;
        let revoked = sessions::revoke_all(tx, user, None, reason).await?;
        // A reset link still in a mailbox would open the account again.
        crate::store::email_tokens::use_all(
            tx,
            user,
            crate::store::email_tokens::Purpose::ResetPassword,
        )
        .await?;
        Ok((cutoff, revoked))
    }

    /// Sign out everywhere: every session of the user ends, the caller's included.
    pub async fn revoke_all_sessions(
        &self,
        user: UserId,
        by: RevokedBy,
        actor: Option<UserId>,
    ) -> Result<usize, ApiError> {
        let reason = match by {
            RevokedBy::User => "signed out everywhere",
            RevokedBy::Admin => "revoked by a platform administrator",
            RevokedBy::SsoIdentityDisabled => "the directory refused the identity",
        };
        let (cutoff, revoked) = self
            .transaction(async |tx| {
                let row = users::lock(tx, user)
                    .await?
                    .ok_or(ApiError::NotFound("User"))?;
                let (cutoff, revoked) = self.end_all_in(tx, user, reason).await?;
                let event = self.account_event(
                    &AccountEvent::SessionsRevoked {
                        user_id: user,
                        email: row.email,
                        first_name: row.first_name,
                        by,
                        sessions_revoked: revoked.len(),
                        session_id: None,
                    },
                    actor,
                )?;
                Ok(((cutoff, revoked), vec![event]))
            })
            .await?;
        self.forget_all_sessions(user, cutoff, &revoked).await?;
        tracing::info!(user.id = %user, sessions = revoked.len(), "every session revoked");
        Ok(revoked.len())
    }

    /// Ends the sessions `user` obtained through `tenant`'s SSO login (the directory
    /// refused the identity: disabled, removed, or its grant revoked).
    pub async fn revoke_sso_sessions(
        &self,
        user: UserId,
        tenant: domain::TenantId,
    ) -> Result<usize, ApiError> {
        let revoked = self
            .transaction(async |tx| {
                let Some(row) = users::find(tx, user).await? else {
                    return Ok((Vec::new(), Vec::new()));
                };
                let revoked =
                    sessions::revoke_sso(tx, user, tenant, "the directory refused the identity")
                        .await?;
                if revoked.is_empty() {
                    return Ok((revoked, Vec::new()));
                }
                let event = self.account_event(
                    &AccountEvent::SessionsRevoked {
                        user_id: user,
                        email: row.email,
                        first_name: row.first_name,
                        by: RevokedBy::SsoIdentityDisabled,
                        sessions_revoked: revoked.len(),
                        session_id: None,
                    },
                    None,
                )?;
                Ok((revoked, vec![event]))
            })
            .await?;
        self.forget_sessions(&revoked).await?;
        if !revoked.is_empty() {
            tracing::info!(user.id = %user, tenant.id = %tenant, sessions = revoked.len(), "SSO sessions revoked");
        }
        Ok(revoked.len())
    }
}
