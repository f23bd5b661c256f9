//! Accounts: registration (with its verification email), profiles, users for the other
//! services. The state they run on (`App`, transactions, throttles) is in `app.rs`;
//! sessions are in `sessions.rs`, emailed links (verification, password reset) and
//! password changes in `email_links.rs`, platform administration in `admin.rs`.
//! Handlers call these; SQL lives in `main_db::users` and `store`.

pub use clients::UserSummary;
use domain::{Email, UserId};
use events::{AccountEvent, EventEnvelope, RegistrationSource, UserRegistered};
use http_kit::{ApiError, FieldErrors};
use main_db::users::{self, NewUser, UserRow};

use crate::app::{App, TxError};
use crate::passwords::MAX_PASSWORD_BYTES;

/// A user as the API shows it, never a password hash: the wire type of the internal
/// API too (`clients::UserSummary`), declared once.
pub fn user_summary(u: UserRow) -> UserSummary {
    UserSummary {
        id: UserId::from_uuid(u.id),
        first_name: u.first_name,
        last_name: u.last_name,
        email: u.email,
        is_active: u.is_active,
        email_verified: u.email_verified_at.is_some(),
        created_at: u.created_at,
        updated_at: u.updated_at,
    }
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
        Some(v) if domain::is_blank(v) => {
            errors.add(field, "must not be blank");
            None
        }
        Some(v) if v.chars().count() > 100 => {
            errors.add(field, "must be at most 100 characters");
            None
        }
        Some(v) if v.chars().any(domain::is_hidden_or_control) => {
            errors.add(
                field,
                "must not contain control or invisible formatting characters",
            );
            None
        }
        Some(v) => Some(v.to_owned()),
    }
}

/// A password of the registration policy (at least 8 characters, a letter and a digit,
/// at most 72 bytes), or field errors under `field`.
pub fn validate_password(
    errors: &mut FieldErrors,
    field: &str,
    value: Option<&str>,
) -> Option<String> {
    let Some(password) = value else {
        errors.add(field, "is required");
        return None;
    };
    let mut ok = true;
    if password.chars().count() < 8 {
        errors.add(field, "must be at least 8 characters");
        ok = false;
    }
    if password.len() > MAX_PASSWORD_BYTES {
        errors.add(field, format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
        ok = false;
    }
    if !password.chars().any(char::is_alphabetic) || !password.chars().any(|c| c.is_ascii_digit()) {
        errors.add(field, "must contain at least one letter and one digit");
        ok = false;
    }
    ok.then(|| password.to_owned())
}

pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// A user insert's error: `email_exists` for the unique address.
fn email_taken(e: diesel::result::Error) -> TxError {
    if is_unique_violation(&e) {
        TxError::Api(ApiError::EmailExists)
    } else {
        TxError::Db(e)
    }
}

impl App {
    pub async fn register(
        &self,
        input: RegisterInput,
        client_ip: Option<&str>,
    ) -> Result<UserRow, ApiError> {
        let mut throttles = Vec::new();
        if let Some(ip) = client_ip {
            throttles.push((format!("register:ip:{ip}"), self.throttles.register_per_ip));
        }
        // An address too long to be one is refused by validation, not counted.
        if let Some(email) = input.email.as_deref().filter(|e| e.len() <= 255) {
            throttles.push((
                format!("register:email:{}", email.trim().to_ascii_lowercase()),
                self.throttles.register_per_email,
            ));
        }
        self.throttle(&throttles).await?;
        self.create_with_password(input).await
    }

    /// Creates a user with a password, unverified, as `register` does but without its
    /// per-address and per-email limits: for `tenant init`'s administrator through the
    /// internal API, which a client cannot reach (and whose caller's address is a
    /// service's, shared with every other call it makes).
    pub async fn create_with_password(&self, input: RegisterInput) -> Result<UserRow, ApiError> {
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
        let password = validate_password(&mut errors, "password", input.password.as_deref());
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
            email_verified: false,
        };
        let registered = UserRegistered {
            user_id: id,
            email: email.to_string(),
            source: None,
        };
        let created = self
            .transaction(async |tx| {
                let user = users::insert(tx, new).await.map_err(email_taken)?;
                let registered = EventEnvelope::of(&registered, None, Some(id))
                    .map_err(ApiError::internal)?
                    .with_request_id(http_kit::request_id::current());
                let link = self
                    .new_link(tx, &user, crate::store::email_tokens::Purpose::VerifyEmail)
                    .await?;
                Ok((user, vec![registered, link]))
            })
            .await?;
        tracing::info!(user.id = %id, "user registered");
        Ok(created)
    }

    /// The user with `email`, created without a password if there is none (SSO): also
    /// whether this call created it. A created user's email is verified when the
    /// directory asserted the domain (`email_verified`).
    pub async fn resolve_sso_user(
        &self,
        email: &str,
        first_name: Option<String>,
        last_name: Option<String>,
        email_verified: bool,
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
        drop(conn);
        let id = UserId::new();
        let new = NewUser {
            id,
            email: &email,
            password_hash: None,
            first_name: &first,
            last_name: &last,
            email_verified,
        };
        let registered = UserRegistered {
            user_id: id,
            email: email.to_string(),
            source: Some(RegistrationSource::Sso),
        };
        let created = self
            .transaction(async |tx| {
                let user = users::insert(tx, new).await.map_err(email_taken)?;
                let event = EventEnvelope::of(&registered, None, Some(id))
                    .map_err(ApiError::internal)?
                    .with_request_id(http_kit::request_id::current());
                Ok((user, vec![event]))
            })
            .await;
        match created {
            Ok(user) => Ok((user, true)),
            // Created concurrently by another call: that one is the user.
            Err(ApiError::EmailExists) => {
                let mut conn = self.conn().await?;
                users::find_by_email(&mut conn, &email)
                    .await
                    .map_err(ApiError::internal)?
                    .map(|u| (u, false))
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!(
                            "user vanished after a unique violation"
                        ))
                    })
            }
            Err(e) => Err(e),
        }
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

    /// The users with these addresses (stored addresses are normalised, as these are).
    pub async fn users_by_email(&self, emails: &[Email]) -> Result<Vec<UserRow>, ApiError> {
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn().await?;
        users::find_many_by_email(&mut conn, emails)
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

    /// A `user.account` event with the request's id.
    pub fn account_event(
        &self,
        event: &AccountEvent,
        actor: Option<UserId>,
    ) -> Result<EventEnvelope, ApiError> {
        Ok(event
            .envelope(actor)
            .map_err(ApiError::internal)?
            .with_request_id(http_kit::request_id::current()))
    }
}
