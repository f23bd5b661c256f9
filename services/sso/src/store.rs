//! The sso service's tables in the main database: `tenant_sso_configs` and
//! `user_azure_identities` (it alone writes them). All SQL of the service is here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use domain::{TenantId, UserId};
use main_db::schema::{tenant_sso_configs as cfg, user_azure_identities as ids};
use uuid::Uuid;

pub type Conn = AsyncPgConnection;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cfg)]
pub struct ConfigRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub provider: String,
    pub provider_tenant_id: String,
    pub client_id: String,
    pub client_secret_encrypted: Option<String>,
    pub encryption_key_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub is_enabled: bool,
    pub config_metadata: serde_json::Value,
    pub auto_provisioning: bool,
    pub default_role: String,
    pub sync_attributes_on_login: bool,
    pub allowed_email_domains: Vec<Option<String>>,
    pub allowed_azure_groups: Vec<Option<String>>,
    pub group_role_mapping: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ConfigRow {
    pub fn domains(&self) -> Vec<String> {
        self.allowed_email_domains
            .iter()
            .flatten()
            .cloned()
            .collect()
    }

    pub fn groups(&self) -> Vec<String> {
        self.allowed_azure_groups
            .iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// What a create writes.
pub struct NewConfig {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub provider_tenant_id: String,
    pub client_id: String,
    pub client_secret: Option<(String, String)>,
    pub redirect_uri: Option<String>,
    pub is_enabled: bool,
    pub config_metadata: serde_json::Value,
}

pub async fn config(conn: &mut Conn, tenant: TenantId) -> QueryResult<Option<ConfigRow>> {
    cfg::table
        .filter(cfg::tenant_id.eq(tenant.into_uuid()))
        .select(ConfigRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// `Ok(None)` when the tenant already has a configuration.
pub async fn insert_config(conn: &mut Conn, new: NewConfig) -> QueryResult<Option<ConfigRow>> {
    let (secret, key_id) = new.client_secret.unzip();
    let inserted = diesel::insert_into(cfg::table)
        .values((
            cfg::id.eq(new.id),
            cfg::tenant_id.eq(new.tenant_id.into_uuid()),
            cfg::provider_tenant_id.eq(new.provider_tenant_id),
            cfg::client_id.eq(new.client_id),
            cfg::client_secret_encrypted.eq(secret),
            cfg::encryption_key_id.eq(key_id),
            cfg::redirect_uri.eq(new.redirect_uri),
            cfg::is_enabled.eq(new.is_enabled),
            cfg::config_metadata.eq(new.config_metadata),
        ))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await;
    match inserted {
        Ok(row) => Ok(Some(row)),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A change of the connection fields; `None` leaves a field as it is.
#[derive(Default)]
pub struct ConfigChange {
    pub provider_tenant_id: Option<String>,
    pub client_id: Option<String>,
    /// `Some(None)` removes the secret.
    pub client_secret: Option<Option<(String, String)>>,
    pub redirect_uri: Option<Option<String>>,
    pub is_enabled: Option<bool>,
    pub config_metadata: Option<serde_json::Value>,
}

#[derive(AsChangeset)]
#[diesel(table_name = cfg)]
struct ChangeSet {
    provider_tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret_encrypted: Option<Option<String>>,
    encryption_key_id: Option<Option<String>>,
    redirect_uri: Option<Option<String>>,
    is_enabled: Option<bool>,
    config_metadata: Option<serde_json::Value>,
    updated_at: DateTime<Utc>,
}

pub async fn update_config(
    conn: &mut Conn,
    tenant: TenantId,
    change: ConfigChange,
) -> QueryResult<Option<ConfigRow>> {
    let (secret, key_id) = match change.client_secret {
        None => (None, None),
        Some(None) => (Some(None), Some(None)),
        Some(Some((secret, key))) => (Some(Some(secret)), Some(Some(key))),
    };
    diesel::update(cfg::table.filter(cfg::tenant_id.eq(tenant.into_uuid())))
        .set(ChangeSet {
            provider_tenant_id: change.provider_tenant_id,
            client_id: change.client_id,
            client_secret_encrypted: secret,
            encryption_key_id: key_id,
            redirect_uri: change.redirect_uri,
            is_enabled: change.is_enabled,
            config_metadata: change.config_metadata,
            updated_at: Utc::now(),
        })
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Auto-provisioning settings, all written together.
pub struct Provisioning {
    pub enabled: bool,
    pub default_role: String,
    pub sync_attributes_on_login: bool,
    pub allowed_email_domains: Vec<String>,
    pub allowed_azure_groups: Vec<String>,
    pub group_role_mapping: serde_json::Value,
}

pub async fn set_provisioning(
    conn: &mut Conn,
    tenant: TenantId,
    p: Provisioning,
) -> QueryResult<Option<ConfigRow>> {
    diesel::update(cfg::table.filter(cfg::tenant_id.eq(tenant.into_uuid())))
        .set((
            cfg::auto_provisioning.eq(p.enabled),
            cfg::default_role.eq(p.default_role),
            cfg::sync_attributes_on_login.eq(p.sync_attributes_on_login),
            cfg::allowed_email_domains.eq(p.allowed_email_domains),
            cfg::allowed_azure_groups.eq(p.allowed_azure_groups),
            cfg::group_role_mapping.eq(p.group_role_mapping),
            cfg::updated_at.eq(diesel::dsl::now),
        ))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn delete_config(conn: &mut Conn, tenant: TenantId) -> QueryResult<usize> {
    diesel::delete(cfg::table.filter(cfg::tenant_id.eq(tenant.into_uuid())))
        .execute(conn)
        .await
}

/// Enabled configurations whose allowed domains hold `domain` exactly.
pub async fn enabled_for_domain(conn: &mut Conn, domain: &str) -> QueryResult<Vec<ConfigRow>> {
    cfg::table
        .filter(cfg::is_enabled.eq(true))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("")
                .bind::<diesel::sql_types::Text, _>(domain)
                .sql(" = ANY(allowed_email_domains)"),
        )
        .order(cfg::created_at.asc())
        .limit(50)
        .select(ConfigRow::as_select())
        .load(conn)
        .await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = ids)]
pub struct IdentityRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    pub azure_tenant_id: String,
    pub azure_object_id: String,
    pub azure_upn: Option<String>,
    pub azure_display_name: Option<String>,
    pub access_token_encrypted: Option<String>,
    pub refresh_token_encrypted: Option<String>,
    pub id_token_encrypted: Option<String>,
    pub encryption_key_id: Option<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub needs_reauth: bool,
    pub last_sync: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl IdentityRow {
    pub fn has_valid_token(&self) -> bool {
        !self.needs_reauth
            && self.access_token_encrypted.is_some()
            && self.token_expires_at.is_some_and(|t| t > Utc::now())
    }
}

/// Encrypted Azure tokens of an identity, with the key id that sealed them.
#[derive(Clone)]
pub struct SealedTokens {
    pub access: String,
    pub refresh: Option<String>,
    pub id_token: Option<String>,
    pub key_id: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn identity_by_subject(
    conn: &mut Conn,
    tenant: TenantId,
    azure_tenant: &str,
    object_id: &str,
) -> QueryResult<Option<IdentityRow>> {
    ids::table
        .filter(ids::tenant_id.eq(tenant.into_uuid()))
        .filter(ids::azure_tenant_id.eq(azure_tenant))
        .filter(ids::azure_object_id.eq(object_id))
        .select(IdentityRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn identity_of_user(
    conn: &mut Conn,
    tenant: TenantId,
    user: UserId,
) -> QueryResult<Option<IdentityRow>> {
    ids::table
        .filter(ids::tenant_id.eq(tenant.into_uuid()))
        .filter(ids::user_id.eq(user.into_uuid()))
        .select(IdentityRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn identities_of_user(conn: &mut Conn, user: UserId) -> QueryResult<Vec<IdentityRow>> {
    ids::table
        .filter(ids::user_id.eq(user.into_uuid()))
        .order(ids::created_at.asc())
        .select(IdentityRow::as_select())
        .load(conn)
        .await
}

pub struct NewIdentity {
    pub id: Uuid,
    pub user_id: UserId,
    pub tenant_id: TenantId,
    pub azure_tenant_id: String,
    pub azure_object_id: String,
    pub azure_upn: Option<String>,
    pub azure_display_name: Option<String>,
    pub tokens: SealedTokens,
}

/// Inserts an identity; `Ok(None)` when (tenant, tid, oid) or (user, tenant) exists.
pub async fn insert_identity(
    conn: &mut Conn,
    new: NewIdentity,
) -> QueryResult<Option<IdentityRow>> {
    let inserted = diesel::insert_into(ids::table)
        .values((
            ids::id.eq(new.id),
            ids::user_id.eq(new.user_id.into_uuid()),
            ids::tenant_id.eq(new.tenant_id.into_uuid()),
            ids::azure_tenant_id.eq(new.azure_tenant_id),
            ids::azure_object_id.eq(new.azure_object_id),
            ids::azure_upn.eq(new.azure_upn),
            ids::azure_display_name.eq(new.azure_display_name),
            ids::access_token_encrypted.eq(Some(new.tokens.access)),
            ids::refresh_token_encrypted.eq(new.tokens.refresh),
            ids::id_token_encrypted.eq(new.tokens.id_token),
            ids::encryption_key_id.eq(Some(new.tokens.key_id)),
            ids::token_expires_at.eq(Some(new.tokens.expires_at)),
            ids::last_sync.eq(Some(Utc::now())),
        ))
        .returning(IdentityRow::as_returning())
        .get_result(conn)
        .await;
    match inserted {
        Ok(row) => Ok(Some(row)),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// After a login: new tokens, the names Entra sent, `needs_reauth` cleared.
pub async fn record_login(
    conn: &mut Conn,
    identity: Uuid,
    upn: Option<String>,
    display_name: Option<String>,
    tokens: SealedTokens,
) -> QueryResult<IdentityRow> {
    diesel::update(ids::table.find(identity))
        .set((
            ids::azure_upn.eq(upn),
            ids::azure_display_name.eq(display_name),
            ids::access_token_encrypted.eq(Some(tokens.access)),
            ids::refresh_token_encrypted.eq(tokens.refresh),
            ids::id_token_encrypted.eq(tokens.id_token),
            ids::encryption_key_id.eq(Some(tokens.key_id)),
            ids::token_expires_at.eq(Some(tokens.expires_at)),
            ids::needs_reauth.eq(false),
            ids::last_sync.eq(Some(Utc::now())),
            ids::updated_at.eq(diesel::dsl::now),
        ))
        .returning(IdentityRow::as_returning())
        .get_result(conn)
        .await
}

/// After a token refresh, if the identity still holds the refresh token that was used
/// (`previous`): 0 rows means someone else refreshed, logged out or unlinked meanwhile,
/// and nothing is written. The refresh token is kept when Entra sent no new one.
pub async fn record_refresh(
    conn: &mut Conn,
    identity: Uuid,
    previous: &str,
    tokens: SealedTokens,
) -> QueryResult<usize> {
    diesel::update(
        ids::table
            .find(identity)
            .filter(ids::refresh_token_encrypted.eq(previous))
            .filter(ids::needs_reauth.eq(false)),
    )
    .set((
        ids::access_token_encrypted.eq(Some(tokens.access)),
        tokens
            .refresh
            .map(|r| ids::refresh_token_encrypted.eq(Some(r))),
        ids::id_token_encrypted.eq(tokens.id_token),
        ids::encryption_key_id.eq(Some(tokens.key_id)),
        ids::token_expires_at.eq(Some(tokens.expires_at)),
        ids::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// Entra refused the refresh token `previous` (`invalid_grant`): the user must sign in
/// again. Only if the identity still holds that token (else 0 rows).
pub async fn mark_needs_reauth(
    conn: &mut Conn,
    identity: Uuid,
    previous: &str,
) -> QueryResult<usize> {
    diesel::update(
        ids::table
            .find(identity)
            .filter(ids::refresh_token_encrypted.eq(previous)),
    )
    .set((
        ids::needs_reauth.eq(true),
        ids::access_token_encrypted.eq(None::<String>),
        ids::refresh_token_encrypted.eq(None::<String>),
        ids::id_token_encrypted.eq(None::<String>),
        ids::encryption_key_id.eq(None::<String>),
        ids::token_expires_at.eq(None::<DateTime<Utc>>),
        ids::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// Logout: the stored Azure tokens go.
pub async fn clear_tokens(conn: &mut Conn, identity: Uuid) -> QueryResult<usize> {
    diesel::update(ids::table.find(identity))
        .set((
            ids::access_token_encrypted.eq(None::<String>),
            ids::refresh_token_encrypted.eq(None::<String>),
            ids::id_token_encrypted.eq(None::<String>),
            ids::encryption_key_id.eq(None::<String>),
            ids::token_expires_at.eq(None::<DateTime<Utc>>),
            ids::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
}

pub async fn delete_identity(conn: &mut Conn, identity: Uuid) -> QueryResult<usize> {
    diesel::delete(ids::table.find(identity))
        .execute(conn)
        .await
}

pub async fn delete_identities_of_tenant(conn: &mut Conn, tenant: TenantId) -> QueryResult<usize> {
    diesel::delete(ids::table.filter(ids::tenant_id.eq(tenant.into_uuid())))
        .execute(conn)
        .await
}

pub async fn count_identities(conn: &mut Conn, tenant: TenantId) -> QueryResult<i64> {
    ids::table
        .filter(ids::tenant_id.eq(tenant.into_uuid()))
        .count()
        .get_result(conn)
        .await
}

/// Figures for `GET …/sso/statistics`.
pub struct Statistics {
    pub total: i64,
    pub needs_reauth: i64,
    pub with_tokens: i64,
    pub expiring_within: i64,
    pub last_login: Option<DateTime<Utc>>,
}

pub async fn statistics(
    conn: &mut Conn,
    tenant: TenantId,
    window: chrono::Duration,
) -> QueryResult<Statistics> {
    let base = || ids::table.filter(ids::tenant_id.eq(tenant.into_uuid()));
    let total = base().count().get_result(conn).await?;
    let needs_reauth = base()
        .filter(ids::needs_reauth.eq(true))
        .count()
        .get_result(conn)
        .await?;
    let with_tokens = base()
        .filter(ids::access_token_encrypted.is_not_null())
        .count()
        .get_result(conn)
        .await?;
    let expiring_within = base()
        .filter(ids::refresh_token_encrypted.is_not_null())
        .filter(ids::token_expires_at.lt(Utc::now() + window))
        .count()
        .get_result(conn)
        .await?;
    let last_login = base()
        .select(diesel::dsl::max(ids::last_sync))
        .first(conn)
        .await?;
    Ok(Statistics {
        total,
        needs_reauth,
        with_tokens,
        expiring_within,
        last_login,
    })
}

/// Identities whose Azure access token expires before `before` and that can be
/// refreshed (their tenant's SSO enabled), soonest first, leaving out `skip` (the job's
/// backoff).
pub async fn expiring(
    conn: &mut Conn,
    before: DateTime<Utc>,
    skip: &[Uuid],
    limit: i64,
) -> QueryResult<Vec<IdentityRow>> {
    ids::table
        .filter(ids::refresh_token_encrypted.is_not_null())
        .filter(ids::needs_reauth.eq(false))
        .filter(ids::token_expires_at.lt(before))
        .filter(ids::id.ne_all(skip))
        .filter(
            ids::tenant_id.eq_any(
                cfg::table
                    .filter(cfg::is_enabled.eq(true))
                    .select(cfg::tenant_id),
            ),
        )
        .order(ids::token_expires_at.asc())
        .limit(limit)
        .select(IdentityRow::as_select())
        .load(conn)
        .await
}
