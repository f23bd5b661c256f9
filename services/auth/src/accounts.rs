//! Accounts and sessions: register, login, refresh (rotation with reuse detection),
//! logout. Handlers call these; SQL lives in `main_db`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use domain::{Email, UserId};
use events::{EventEnvelope, Topic};
use http_kit::identity::{Claims, TokenType, TokenVerifier};
use http_kit::{ApiError, FieldErrors};
use main_db::refresh_tokens::{self, NewRefreshToken};
use main_db::users::{self, NewUser, UserRow};
use main_db::DbPool;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::passwords::{Passwords, MAX_PASSWORD_BYTES};
use crate::tokens::{Issued, TokenIssuer};

/// A user as the API shows it: never a password hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserBody {
    #[schema(value_type = String, format = Uuid)]
    pub id: Uuid,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub is_active: bool,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "http_kit::time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
}

impl From<UserRow> for UserBody {
    fn from(u: UserRow) -> Self {
        Self {
            id: u.id,
            first_name: u.first_name,
            last_name: u.last_name,
            email: u.email,
            is_active: u.is_active,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

pub struct TokenPair {
    pub access: Issued,
    pub refresh: Issued,
}

pub struct RegisterInput {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub password: Option<String>,
}

/// A trimmed name of 1–100 characters, or a field error.
pub fn validate_name(errors: &mut FieldErrors, field: &str, value: Option<&str>) -> Option<String> {
    match value.map(str::trim) {
        None => {
            errors.add(field, "is required");
            None
        }
        Some("") => {
            errors.add(field, "must not be blank");
            None
        }
        Some(v) if v.chars().count() > 100 => {
            errors.add(field, "must be at most 100 characters");
            None
        }
        Some(v) if v.chars().any(char::is_control) => {
            errors.add(field, "must not contain control characters");
            None
        }
        Some(v) => Some(v.to_owned()),
    }
}

fn validate_password(errors: &mut FieldErrors, value: Option<&str>) -> Option<String> {
    let Some(password) = value else {
        errors.add("password", "is required");
        return None;
    };
    let mut ok = true;
    if password.chars().count() < 8 {
        errors.add("password", "must be at least 8 characters");
        ok = false;
    }
    if password.len() > MAX_PASSWORD_BYTES {
        errors.add(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        );
        ok = false;
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        errors.add("password", "must contain at least one letter and one digit");
        ok = false;
    }
    ok.then(|| password.to_owned())
}

pub fn db_unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::dependency("Database", e)
}

fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

fn redis_unavailable(e: cache::CacheError) -> ApiError {
    ApiError::dependency("Redis", e)
}

#[derive(Clone)]
pub struct Accounts {
    pub db: DbPool,
    pub passwords: Passwords,
    pub issuer: TokenIssuer,
    pub verifier: TokenVerifier,
    pub revocations: cache::Revocations,
    pub limiter: cache::RateLimiter,
    pub limits: Arc<LoginLimits>,
    pub tenants: clients::TenantClient,
    /// Publishes the outbox after a commit.
    pub relay: events::RelayHandle,
}

#[derive(Debug, Clone)]
pub struct LoginLimits {
    pub per_ip: u32,
    pub per_account: u32,
    pub window: Duration,
}

impl Accounts {
    async fn conn(&self) -> Result<main_db::DbConnection, ApiError> {
        self.db.get().await.map_err(db_unavailable)
    }

    pub async fn register(
        &self,
        input: RegisterInput,
        request_id: Option<String>,
    ) -> Result<UserRow, ApiError> {
        let mut errors = FieldErrors::new();
        let first_name = validate_name(&mut errors, "first_name", input.first_name.as_deref());
        let last_name = validate_name(&mut errors, "last_name", input.last_name.as_deref());
        let email = match input.email.as_deref().map(Email::parse) {
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
        let password = validate_password(&mut errors, input.password.as_deref());
        let (Some(first_name), Some(last_name), Some(email), Some(password)) =
            (first_name, last_name, email, password)
        else {
            return Err(ApiError::Validation(errors));
        };
        let hash = self.passwords.hash(password).await?;
        let id = UserId::new();
        let new = NewUser {
            id,
            email: &email,
            password_hash: Some(&hash),
            first_name: &first_name,
            last_name: &last_name,
        };
        let mut conn = self.conn().await?;
        let created = self
            .insert_user(
                &mut conn,
                new,
                json!({"user_id": id, "email": email}),
                request_id,
            )
            .await;
        match created {
            Ok(user) => {
                tracing::info!(user.id = %id, "user registered");
                Ok(user)
            }
            Err(e) if is_unique_violation(&e) => Err(ApiError::EmailExists),
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    /// The user with `email`, created without a password if there is none (SSO).
    pub async fn resolve_sso_user(
        &self,
        email: &str,
        first_name: Option<String>,
        last_name: Option<String>,
        request_id: Option<String>,
    ) -> Result<(UserRow, bool), ApiError> {
        let email =
            Email::parse(email).map_err(|e| ApiError::validation("email", e.to_string()))?;
        let mut errors = FieldErrors::new();
        let local = email
            .as_str()
            .split('@')
            .next()
            .unwrap_or("user")
            .to_owned();
        let first = validate_name(
            &mut errors,
            "first_name",
            Some(first_name.as_deref().unwrap_or(&local)),
        );
        let last = validate_name(
            &mut errors,
            "last_name",
            Some(last_name.as_deref().unwrap_or("-")),
        );
        let (Some(first), Some(last)) = (first, last) else {
            return Err(ApiError::Validation(errors));
        };
        let mut conn = self.conn().await?;
        if let Some(user) = users::find_by_email(&mut conn, &email)
            .await
            .map_err(ApiError::internal)?
        {
            return Ok((user, false));
        }
        let id = UserId::new();
        let new = NewUser {
            id,
            email: &email,
            password_hash: None,
            first_name: &first,
            last_name: &last,
        };
        let data = json!({"user_id": id, "email": email, "source": "sso"});
        let created = self.insert_user(&mut conn, new, data, request_id).await;
        match created {
            Ok(user) => Ok((user, true)),
            // Created concurrently by another call: that one is the user.
            Err(e) if is_unique_violation(&e) => users::find_by_email(&mut conn, &email)
                .await
                .map_err(ApiError::internal)?
                .map(|u| (u, false))
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("user vanished after a unique violation"))
                }),
            Err(e) => Err(ApiError::internal(e)),
        }
    }

    /// Inserts a user and its `user.registered` event in one transaction.
    async fn insert_user(
        &self,
        conn: &mut diesel_async::AsyncPgConnection,
        user: NewUser<'_>,
        data: serde_json::Value,
        request_id: Option<String>,
    ) -> Result<UserRow, diesel::result::Error> {
        let event = EventEnvelope::new(Topic::UserRegistered, None, Some(user.id), data)
            .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?
            .with_request_id(request_id);
        let created = conn
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                let created = users::insert(tx, user).await?;
                events::enqueue(tx, &event).await.map_err(|e| match e {
                    events::OutboxError::Database(e) => e,
                    other => diesel::result::Error::QueryBuilderError(other.to_string().into()),
                })?;
                Ok(created)
            })
            .await;
        if created.is_ok() {
            self.relay.nudge(events::OutboxDb::Main);
        }
        created
    }

    async fn check_rate(&self, bucket: &str, limit: u32) -> Result<(), ApiError> {
        match self
            .limiter
            .hit(bucket, limit, self.limits.window)
            .await
            .map_err(redis_unavailable)?
        {
            cache::RateDecision::Allowed => Ok(()),
            cache::RateDecision::Limited { retry_after } => Err(ApiError::RateLimited {
                retry_after_secs: retry_after.as_secs(),
            }),
        }
    }

    /// Checks the password (same time for unknown emails), then issues a token pair.
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client_ip: Option<&str>,
    ) -> Result<(UserRow, Vec<clients::UserTenant>, TokenPair), ApiError> {
        let normalised = email.trim().to_lowercase();
        if let Some(ip) = client_ip {
            self.check_rate(&format!("login:ip:{ip}"), self.limits.per_ip)
                .await?;
        }
        let account_bucket = format!("login:account:{normalised}");
        self.check_rate(&account_bucket, self.limits.per_account)
            .await?;

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
        if !self.passwords.verify(password, hash).await? {
            return Err(ApiError::InvalidCredentials);
        }
        let Some(user) = user else {
            return Err(ApiError::InvalidCredentials);
        };
        if !user.is_active {
            return Err(ApiError::AccountInactive);
        }
        if let Err(e) = self.limiter.reset(&account_bucket).await {
            tracing::warn!(error = %e, "could not reset the login rate limit");
        }
        // Before the session exists: a failure here leaves nothing behind.
        let tenants = self.tenants_of(UserId::from_uuid(user.id)).await?;
        let pair = self.new_session(UserId::from_uuid(user.id)).await?;
        tracing::info!(user.id = %user.id, "login");
        Ok((user, tenants, pair))
    }

    /// A token pair of a new family (a new login session).
    pub async fn new_session(&self, user: UserId) -> Result<TokenPair, ApiError> {
        let family = Uuid::new_v4();
        let access = self.issuer.access(user, family)?;
        let refresh = self.issuer.refresh(user, family)?;
        let mut conn = self.conn().await?;
        refresh_tokens::insert(&mut conn, &new_row(&refresh, None))
            .await
            .map_err(ApiError::internal)?;
        Ok(TokenPair { access, refresh })
    }

    /// Rotates a refresh token. Presenting a token already rotated (or refreshing one of
    /// a revoked family) revokes the whole family and answers `token_revoked`.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, ApiError> {
        let claims = self.verifier.verify(token, TokenType::Refresh).await?;
        let family = claims.fam.ok_or(ApiError::InvalidToken)?;
        let user = UserId::from_uuid(claims.sub);
        let access = self.issuer.access(user, family)?;
        let refresh = self.issuer.refresh(user, family)?;
        let new = new_row(&refresh, Some(claims.jti));
        let mut conn = self.conn().await?;
        let outcome = conn
            .transaction::<_, diesel::result::Error, _>(async |tx| {
                refresh_tokens::lock_family(tx, family).await?;
                if refresh_tokens::family_revoked(tx, family).await? {
                    return Ok(Rotation::Revoked);
                }
                let Some(row) = refresh_tokens::find(tx, claims.jti).await? else {
                    return Ok(Rotation::Unknown);
                };
                if row.user_id != claims.sub {
                    return Ok(Rotation::Unknown);
                }
                if row.revoked_at.is_some() {
                    return Ok(Rotation::Revoked);
                }
                if !refresh_tokens::mark_used(tx, claims.jti).await? {
                    refresh_tokens::revoke_family(tx, family, "refresh token reused").await?;
                    return Ok(Rotation::Reused);
                }
                refresh_tokens::insert(tx, &new).await?;
                Ok(Rotation::Rotated)
            })
            .await
            .map_err(ApiError::internal)?;
        match outcome {
            Rotation::Rotated => Ok(TokenPair { access, refresh }),
            Rotation::Unknown => Err(ApiError::InvalidToken),
            Rotation::Revoked => Err(ApiError::TokenRevoked),
            Rotation::Reused => {
                tracing::warn!(user.id = %user, family = %family, "refresh token reuse: family revoked");
                self.revocations
                    .revoke_family(&family.to_string(), self.issuer.refresh_ttl)
                    .await
                    .map_err(redis_unavailable)?;
                Err(ApiError::TokenRevoked)
            }
        }
    }

    /// Revokes the access token and its session's family (and, when given, the family
    /// of `refresh_token` if it belongs to the same user).
    pub async fn logout(
        &self,
        access: &Claims,
        refresh_token: Option<&str>,
    ) -> Result<(), ApiError> {
        let now = Utc::now().timestamp();
        self.revocations
            .revoke(
                &access.jti.to_string(),
                Duration::from_secs(access.remaining_secs(now)),
            )
            .await
            .map_err(redis_unavailable)?;
        let mut families: Vec<Uuid> = access.fam.into_iter().collect();
        if let Some(token) = refresh_token {
            match self.verifier.verify(token, TokenType::Refresh).await {
                Ok(claims) if claims.sub == access.sub => families.extend(claims.fam),
                // Already revoked or rotated: its family is handled or was the session's.
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
        let mut conn = self.conn().await?;
        for family in families {
            conn.transaction::<_, diesel::result::Error, _>(async |tx| {
                refresh_tokens::lock_family(tx, family).await?;
                refresh_tokens::revoke_family(tx, family, "logout").await
            })
            .await
            .map_err(ApiError::internal)?;
            self.revocations
                .revoke_family(&family.to_string(), self.issuer.refresh_ttl)
                .await
                .map_err(redis_unavailable)?;
        }
        tracing::info!(user.id = %access.sub, "logout");
        Ok(())
    }

    /// The user's active tenants, from the tenant service.
    pub async fn tenants_of(&self, user: UserId) -> Result<Vec<clients::UserTenant>, ApiError> {
        self.tenants
            .tenants_of_user(user)
            .await
            .map_err(|e| ApiError::dependency("Tenant service", e))
    }

    pub async fn users_by_id(&self, ids: &[UserId]) -> Result<Vec<UserRow>, ApiError> {
        let mut conn = self.conn().await?;
        users::find_many(&mut conn, ids)
            .await
            .map_err(ApiError::internal)
    }

    pub async fn profile(&self, user: UserId) -> Result<UserRow, ApiError> {
        let mut conn = self.conn().await?;
        users::find(&mut conn, user)
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("User"))
    }

    pub async fn update_profile(
        &self,
        user: UserId,
        first: Option<String>,
        last: Option<String>,
    ) -> Result<UserRow, ApiError> {
        let mut conn = self.conn().await?;
        users::update_names(&mut conn, user, first.as_deref(), last.as_deref())
            .await
            .map_err(ApiError::internal)?
            .ok_or(ApiError::NotFound("User"))
    }
}

enum Rotation {
    Rotated,
    Unknown,
    Revoked,
    Reused,
}

fn new_row(refresh: &Issued, parent: Option<Uuid>) -> NewRefreshToken {
    NewRefreshToken {
        jti: refresh.claims.jti,
        user_id: UserId::from_uuid(refresh.claims.sub),
        family_id: refresh.claims.fam.unwrap_or(refresh.claims.jti),
        parent_jti: parent,
        issued_at: DateTime::from_timestamp(refresh.claims.iat, 0).unwrap_or_else(Utc::now),
        expires_at: refresh.expires_at(),
    }
}
