//! Creating, dropping and checking tenant databases, and keeping the template migrated.

use std::time::Duration;

use deadpool::Runtime;
use diesel::sql_types::Text;
use diesel::OptionalExtension;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::TenantDatabaseName;

use crate::migrations::{self, MigrationReport};
use crate::{quote_identifier, TenantConnection, TenantDbError, TenantDbSettings, TenantPoolCache};

/// How long to keep retrying a CREATE whose template is momentarily in use.
const TEMPLATE_BUSY_RETRY: Duration = Duration::from_secs(5);

pub struct TenantDatabaseManager {
    settings: TenantDbSettings,
    /// Connections to the server's main database, for CREATE/DROP DATABASE
    /// (`admin_server_url`).
    admin: Pool<AsyncPgConnection>,
    pools: TenantPoolCache,
    /// The template (by its oid) a database made from it was found fully migrated
    /// from: databases made from the same template need no check
    /// ([`Self::migrate_new`]).
    verified_template: std::sync::Mutex<Option<u32>>,
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

impl TenantDatabaseManager {
    /// Must be called inside a Tokio runtime (the pool cache starts its sweep).
    pub fn new(settings: TenantDbSettings) -> Result<Self, TenantDbError> {
        if quote_identifier(&settings.template_database).is_none() {
            return Err(TenantDbError::Pool(format!(
                "template database name {:?} must be [a-z0-9_], at most 63 bytes",
                settings.template_database
            )));
        }
        let admin = Pool::builder(AsyncDieselConnectionManager::<AsyncPgConnection>::new(
            settings.admin_server_url.clone(),
        ))
        .max_size(settings.admin_pool_size)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(settings.timeout))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| TenantDbError::Pool(e.to_string()))?;
        let pools = TenantPoolCache::new(settings.clone());
        Ok(Self {
            settings,
            admin,
            pools,
            verified_template: std::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &TenantDbSettings {
        &self.settings
    }

    pub fn pools(&self) -> &TenantPoolCache {
        &self.pools
    }

    /// A pooled connection to a tenant's database.
    pub async fn connection(
        &self,
        database: &TenantDatabaseName,
    ) -> Result<TenantConnection, TenantDbError> {
        self.pools.get(database).await
    }

    /// A tenant database's URL for request traffic.
    pub fn database_url(&self, database: &TenantDatabaseName) -> String {
        self.settings.url_for(database.as_str())
    }

    /// A tenant database's URL for migrations (session-level locks: never through a
    /// transaction-mode pooler).
    pub fn admin_database_url(&self, database: &TenantDatabaseName) -> String {
        self.settings.admin_url_for(database.as_str())
    }

    pub fn template_url(&self) -> String {
        self.settings
            .admin_url_for(&self.settings.template_database)
    }

    fn template_quoted(&self) -> String {
        // Validated in `new`.
        quote_identifier(&self.settings.template_database).unwrap_or_default()
    }

    async fn admin(
        &self,
    ) -> Result<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>, TenantDbError>
    {
        self.admin
            .get()
            .await
            .map_err(|e| TenantDbError::Pool(e.to_string()))
    }

    async fn database_exists(&self, name: &str) -> Result<bool, TenantDbError> {
        let mut conn = self.admin().await?;
        let row: Exists = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists",
        )
        .bind::<Text, _>(name)
        .get_result(&mut conn)
        .await?;
        Ok(row.exists)
    }

    /// Whether the template new tenants are copied from exists (for `/ready`).
    pub async fn template_exists(&self) -> Result<bool, TenantDbError> {
        self.database_exists(&self.settings.template_database).await
    }

    pub async fn exists(&self, database: &TenantDatabaseName) -> Result<bool, TenantDbError> {
        self.database_exists(database.as_str()).await
    }

    /// Names of the given databases that exist, in one query.
    pub async fn existing(&self, names: &[String]) -> Result<Vec<String>, TenantDbError> {
        #[derive(diesel::QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            datname: String,
        }
        let mut conn = self.admin().await?;
        let rows: Vec<Name> = diesel::sql_query(
            "SELECT datname::text AS datname FROM pg_database WHERE datname = ANY($1)",
        )
        .bind::<diesel::sql_types::Array<Text>, _>(names)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.datname).collect())
    }

    /// `CREATE DATABASE "<name>" TEMPLATE "<template>"`. The template must be migrated
    /// ([`Self::ensure_template`]); a template momentarily in use is retried briefly.
    pub async fn create_from_template(
        &self,
        database: &TenantDatabaseName,
    ) -> Result<(), TenantDbError> {
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            database.quoted(),
            self.template_quoted()
        );
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(20);
        loop {
            let mut conn = self.admin().await?;
            match conn.batch_execute(&sql).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let message = e.to_string();
                    if message.contains("already exists") {
                        return Err(TenantDbError::AlreadyExists(database.clone()));
                    }
                    if message.contains("is being accessed by other users") {
                        if started.elapsed() < TEMPLATE_BUSY_RETRY {
                            drop(conn);
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_millis(500));
                            continue;
                        }
                        return Err(TenantDbError::TemplateBusy(
                            self.settings.template_database.clone(),
                        ));
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// `CREATE DATABASE "<name>" TEMPLATE template0`: an empty database, for a copy
    /// restored into it (a tenant's move).
    pub async fn create_empty(&self, database: &TenantDatabaseName) -> Result<(), TenantDbError> {
        let mut conn = self.admin().await?;
        match conn
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                database.quoted()
            ))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("already exists") => {
                Err(TenantDbError::AlreadyExists(database.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Brings a database just made from the template to the latest tenant migration.
    /// A template copy found up to date proves the template is (a template only ever
    /// gains migrations); later copies of the same template, told by its oid read
    /// after the copy, skip the check and its connection. A template made again (an
    /// operator dropped it) has a new oid and is checked again, so a copy taken while
    /// it was half-migrated is migrated.
    pub async fn migrate_new(
        &self,
        database: &TenantDatabaseName,
    ) -> Result<MigrationReport, TenantDbError> {
        let oid = self.template_oid().await?;
        let verified = *self
            .verified_template
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if oid.is_some() && verified == oid {
            return Ok(MigrationReport::default());
        }
        let report =
            migrations::migrate(&self.admin_database_url(database), self.settings.timeout).await?;
        if report.applied.is_empty() {
            *self
                .verified_template
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = oid;
        }
        Ok(report)
    }

    async fn template_oid(&self) -> Result<Option<u32>, TenantDbError> {
        #[derive(diesel::QueryableByName)]
        struct Oid {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            oid: i64,
        }
        let mut conn = self.admin().await?;
        let row: Option<Oid> =
            diesel::sql_query("SELECT oid::bigint AS oid FROM pg_database WHERE datname = $1")
                .bind::<Text, _>(&self.settings.template_database)
                .get_result(&mut conn)
                .await
                .optional()?;
        Ok(row.and_then(|r| u32::try_from(r.oid).ok()))
    }

    /// Whether `other` is the same PostgreSQL cluster as this one (two registrations
    /// of one server under different host names, say): a nonce written as the comment
    /// of this server's template is looked for through `other` (database comments are
    /// shared by every database of a cluster). This server's template must exist.
    pub async fn same_cluster(&self, other: &TenantDatabaseManager) -> Result<bool, TenantDbError> {
        // Another probe of the same cluster may overwrite the comment in between: read
        // back through this server too, and try again when it is no longer ours.
        for attempt in 0..10_u64 {
            let nonce = format!("saas-platform template, probe {}", uuid::Uuid::new_v4());
            let mut mine = self.admin().await?;
            mine.batch_execute(&format!(
                "COMMENT ON DATABASE {} IS '{nonce}'",
                self.template_quoted()
            ))
            .await?;
            drop(mine);
            if other
                .template_comment(&self.settings.template_database)
                .await?
                .as_deref()
                == Some(nonce.as_str())
            {
                return Ok(true);
            }
            // Still ours here: the other server did not see it, so it is another one.
            if self
                .template_comment(&self.settings.template_database)
                .await?
                .as_deref()
                == Some(nonce.as_str())
            {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10 + attempt * 20)).await;
        }
        Err(TenantDbError::Pool(
            "could not tell whether two database servers are one: the template's comment kept changing".to_owned(),
        ))
    }

    /// The comment of the database `name` on this server.
    async fn template_comment(&self, name: &str) -> Result<Option<String>, TenantDbError> {
        #[derive(diesel::QueryableByName)]
        struct Comment {
            #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
            comment: Option<String>,
        }
        let mut conn = self.admin().await?;
        let found: Option<Comment> = diesel::sql_query(
            "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
        )
        .bind::<Text, _>(name)
        .get_result(&mut conn)
        .await
        .optional()?;
        Ok(found.and_then(|f| f.comment))
    }

    /// Drops a tenant database, closing our pool first and terminating any other
    /// session connected to it. Dropping a database that does not exist is a no-op.
    pub async fn drop_database(&self, database: &TenantDatabaseName) -> Result<(), TenantDbError> {
        if !self.pools.evict(database) {
            tracing::warn!(database = %database, "dropping a tenant database whose connections are in use");
        }
        let mut conn = self.admin().await?;
        conn.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            database.quoted()
        ))
        .await?;
        Ok(())
    }

    /// Creates the template if missing and applies pending tenant migrations to it.
    pub async fn ensure_template(&self) -> Result<MigrationReport, TenantDbError> {
        let name = &self.settings.template_database;
        if !self.database_exists(name).await? {
            let mut conn = self.admin().await?;
            match conn
                .batch_execute(&format!("CREATE DATABASE {}", self.template_quoted()))
                .await
            {
                Ok(()) => tracing::info!(template = %name, "created tenant template database"),
                // Another instance created it first.
                Err(e) if e.to_string().contains("already exists") => {}
                Err(e) => return Err(e.into()),
            }
        }
        migrations::migrate(&self.template_url(), self.settings.timeout).await
    }
}
