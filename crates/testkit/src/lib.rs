//! Test fixtures on real servers (dev-dependency only).
//!
//! Every test gets its own main database and its own tenant template database, both
//! created from template databases that are built once per migration set (whichever
//! test process comes first builds them under an advisory lock; later ones reuse them),
//! and its own Redis key prefix. Everything a test made is dropped when its
//! [`TestContext`] goes, also when the test panics.
//!
//! Reads `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`, a
//! superuser: tests create databases) and `TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use diesel::sql_types::{Bool, Text};
use diesel::QueryableByName;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, FileBasedMigrations, MigrationHarness};
use tokio::sync::OnceCell;

const MAIN_TEMPLATE_PREFIX: &str = "testkit_main_tpl_";
const TENANT_TEMPLATE_PREFIX: &str = "testkit_tenant_tpl_";
/// Serialises template building across test processes.
const TEMPLATE_LOCK_KEY: i64 = 0x0074_6573_746b_6974;

mod gateway;
mod kafka;
pub mod oidc;
mod redis_cluster;
pub mod service_contract;
mod smtp;
mod tansu;
mod vault;

pub use gateway::{TestGateway, Upstreams};
pub use kafka::{KafkaRecord, TestKafka};
pub use oidc::{OidcClient, OidcTenant, OidcUser, TestOidc};
pub use redis_cluster::TestRedisCluster;
pub use smtp::{Mail, TestSmtp};
pub use vault::{TestVault, VAULT_ROLE_ID, VAULT_SECRET_ID};

/// The value after `name` in a development tool's arguments (`dev-s3`, `dev-kafka`).
pub fn cli_arg(args: &[String], name: &str) -> anyhow::Result<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .with_context(|| format!("missing {name} VALUE"))
}

/// The internal service token every service gets in tests.
pub const INTERNAL_TOKEN: &str = "internal-token-for-tests-0123456789abcdef";

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `url` (a database on `server`) through the PgBouncer of `TEST_DATABASE_POOLER`
/// (`host:port`), when it fronts `server`: the test server of `TEST_DATABASE_URL`.
fn pooled_url(server: &str, url: &str) -> Option<String> {
    let pooler = std::env::var("TEST_DATABASE_POOLER")
        .ok()
        .filter(|p| !p.is_empty())?;
    if server != server_url() {
        return None;
    }
    let (host, port) = pooler
        .rsplit_once(':')
        .expect("TEST_DATABASE_POOLER must be host:port");
    let mut parsed = url::Url::parse(url).expect("a database URL");
    parsed
        .set_host(Some(host))
        .expect("TEST_DATABASE_POOLER host");
    parsed
        .set_port(Some(port.parse().expect("TEST_DATABASE_POOLER port")))
        .expect("a port");
    Some(parsed.to_string())
}

/// `url` pointing at database `name` instead.
pub fn database_url(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("TEST_DATABASE_URL must be a URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn main_migrations_dir() -> PathBuf {
    workspace_root().join("migrations/main")
}

pub fn tenant_migrations_dir() -> PathBuf {
    workspace_root().join("migrations/tenant")
}

/// The `down.sql` of the newest migration in `dir`: run on an up-to-date database, it
/// leaves the database as an older release made it (for migration-runner tests).
pub fn latest_down_sql(dir: &Path) -> String {
    let mut migrations: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    migrations.sort();
    let latest = migrations.last().expect("at least one migration");
    std::fs::read_to_string(latest.join("down.sql"))
        .unwrap_or_else(|e| panic!("reading {}/down.sql: {e}", latest.display()))
}

/// A hash of every file of a migration directory: the template's name changes with it.
fn migrations_hash(dir: &Path) -> anyhow::Result<String> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            for sql in std::fs::read_dir(entry.path())? {
                let sql = sql?;
                files.insert(sql.path(), std::fs::read(sql.path())?);
            }
        }
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (path, content) in &files {
        path.strip_prefix(dir).unwrap_or(path).hash(&mut hasher);
        content.hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

#[derive(QueryableByName)]
struct DbRow {
    #[diesel(sql_type = Text)]
    datname: String,
    #[diesel(sql_type = Bool)]
    datistemplate: bool,
}

#[derive(QueryableByName)]
struct NameRow {
    #[diesel(sql_type = Text)]
    name: String,
}

async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    tokio::time::timeout(Duration::from_secs(10), AsyncPgConnection::establish(url))
        .await
        .context("timed out connecting to PostgreSQL")?
        .with_context(|| "connecting to PostgreSQL (is it running? TEST_DATABASE_URL)".to_owned())
}

fn quote(name: &str) -> anyhow::Result<String> {
    if name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(format!("\"{name}\""))
    } else {
        bail!("refusing unsafe database name {name:?}")
    }
}

/// Applies every migration of `dir` to the database at `url`.
pub async fn migrate_directory(url: &str, dir: PathBuf) -> anyhow::Result<()> {
    let conn = connect(url).await?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        let source = FileBasedMigrations::from_path(&dir)
            .map_err(|e| anyhow::anyhow!("migrations at {}: {e}", dir.display()))?;
        wrapper
            .run_pending_migrations(source)
            .map_err(|e| anyhow::anyhow!("migrating: {e}"))?;
        Ok(())
    })
    .await?
}

/// Applies embedded migrations (for crates that embed their own).
pub async fn migrate_embedded(url: &str, migrations: EmbeddedMigrations) -> anyhow::Result<()> {
    let conn = connect(url).await?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> =
            AsyncConnectionWrapper::from(conn);
        wrapper
            .run_pending_migrations(migrations)
            .map_err(|e| anyhow::anyhow!("migrating: {e}"))?;
        Ok(())
    })
    .await?
}

/// The two template names of this migration set, built if missing.
struct Templates {
    main: String,
    tenant: String,
}

static TEMPLATES: OnceCell<Templates> = OnceCell::const_new();

async fn ensure_template(
    admin: &mut AsyncPgConnection,
    name: &str,
    dir: PathBuf,
) -> anyhow::Result<()> {
    let rows: Vec<DbRow> = diesel::sql_query(
        "SELECT datname::text AS datname, datistemplate FROM pg_database WHERE datname = $1",
    )
    .bind::<Text, _>(name)
    .load(admin)
    .await?;
    if matches!(rows.as_slice(), [row, ..] if row.datistemplate) {
        return Ok(());
    }
    if !rows.is_empty() {
        // A build that died half-way.
        admin
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", quote(name)?))
            .await?;
    }
    admin
        .batch_execute(&format!("CREATE DATABASE {}", quote(name)?))
        .await?;
    migrate_directory(&database_url(&server_url(), name), dir).await?;
    // Marking it a template is the last step: it says the build completed.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} WITH IS_TEMPLATE true",
            quote(name)?
        ))
        .await?;
    Ok(())
}

/// Drops templates of older migration sets and databases of test processes that died.
async fn drop_stale(admin: &mut AsyncPgConnection, keep: &[&str]) -> anyhow::Result<()> {
    let rows: Vec<DbRow> = diesel::sql_query(
        "SELECT datname::text AS datname, datistemplate FROM pg_database WHERE datname LIKE 'testkit\\_%'",
    )
    .load(admin)
    .await?;
    for row in rows {
        let name = row.datname;
        let stale_template = (name.starts_with(MAIN_TEMPLATE_PREFIX)
            || name.starts_with(TENANT_TEMPLATE_PREFIX))
            && !keep.contains(&name.as_str());
        let dead_owner = name
            .strip_prefix("testkit_p")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if stale_template || dead_owner {
            let quoted = quote(&name)?;
            let _ = admin
                .batch_execute(&format!("ALTER DATABASE {quoted} WITH IS_TEMPLATE false"))
                .await;
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
                .await;
        }
    }
    Ok(())
}

async fn templates() -> anyhow::Result<&'static Templates> {
    TEMPLATES
        .get_or_try_init(|| async {
            let main = format!(
                "{MAIN_TEMPLATE_PREFIX}{}",
                migrations_hash(&main_migrations_dir())?
            );
            let tenant = format!(
                "{TENANT_TEMPLATE_PREFIX}{}",
                migrations_hash(&tenant_migrations_dir())?
            );
            let mut admin = connect(&server_url()).await?;
            diesel::sql_query("SELECT pg_advisory_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(TEMPLATE_LOCK_KEY)
                .execute(&mut admin)
                .await?;
            let built = async {
                drop_stale(&mut admin, &[&main, &tenant]).await?;
                ensure_template(&mut admin, &main, main_migrations_dir()).await?;
                ensure_template(&mut admin, &tenant, tenant_migrations_dir()).await
            }
            .await;
            // The lock ends with the session anyway; unlock explicitly for clarity.
            let _ = admin
                .batch_execute(&format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
                .await;
            built?;
            Ok(Templates { main, tenant })
        })
        .await
}

/// A test's id: its process (so a later run can drop what a dead one left) and a
/// random part.
fn context_id() -> String {
    format!(
        "p{}_{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// One test's databases and Redis prefix.
pub struct TestContext {
    /// The test's main database, migrated.
    pub main_db: String,
    pub main_url: String,
    /// The test's own tenant template database, migrated (never connect to it and keep
    /// the connection: `CREATE DATABASE … TEMPLATE` refuses a template in use).
    pub tenant_template: String,
    /// Server URL pointing at the maintenance database (`postgres`).
    pub server_url: String,
    pub redis_url: String,
    /// Every Redis key of this test starts with it.
    pub redis_prefix: String,
    tracked: Arc<Mutex<Vec<String>>>,
    /// The services' pool settings are left at their defaults (`on_server`).
    pool_defaults: bool,
}

impl TestContext {
    pub async fn new() -> Self {
        Self::try_new()
            .await
            .expect("test databases (is PostgreSQL running? see README)")
    }

    pub async fn try_new() -> anyhow::Result<Self> {
        // TEST_LOG=<filter> (e.g. `events=debug`) shows the services' logs of a test
        // (with `--no-capture`).
        if let Ok(filter) = std::env::var("TEST_LOG") {
            http_kit::telemetry::init(http_kit::config::LogFormat::Pretty, &filter);
        }
        let templates = templates().await?;
        let id = context_id();
        let main_db = format!("testkit_{id}_main");
        let tenant_template = format!("testkit_{id}_ttpl");
        let server_url = server_url();
        let mut admin = connect(&server_url).await?;
        for (db, template) in [
            (&main_db, &templates.main),
            (&tenant_template, &templates.tenant),
        ] {
            create_from_template(&mut admin, db, template).await?;
        }
        Ok(Self {
            main_url: database_url(&server_url, &main_db),
            main_db,
            tenant_template,
            server_url,
            redis_url: redis_url(),
            redis_prefix: format!("test:{id}:"),
            tracked: Arc::new(Mutex::new(Vec::new())),
            pool_defaults: false,
        })
    }

    /// A context on another server (a [`PrivatePostgres`]): its main database and
    /// tenant template are migrated there directly, and services started on it keep
    /// their default pool sizes (the connection budget is what such tests measure).
    pub async fn on_server(server_url: &str) -> anyhow::Result<Self> {
        let id = context_id();
        let main_db = format!("testkit_{id}_main");
        let tenant_template = format!("testkit_{id}_ttpl");
        let mut admin = connect(server_url).await?;
        for db in [&main_db, &tenant_template] {
            admin
                .batch_execute(&format!("CREATE DATABASE {}", quote(db)?))
                .await?;
        }
        drop(admin);
        migrate_directory(&database_url(server_url, &main_db), main_migrations_dir()).await?;
        migrate_directory(
            &database_url(server_url, &tenant_template),
            tenant_migrations_dir(),
        )
        .await?;
        Ok(Self {
            main_url: database_url(server_url, &main_db),
            main_db,
            tenant_template,
            server_url: server_url.to_owned(),
            redis_url: redis_url(),
            redis_prefix: format!("test:{id}:"),
            tracked: Arc::new(Mutex::new(Vec::new())),
            pool_defaults: true,
        })
    }

    /// URL of another database on the test server.
    pub fn url_of(&self, database: &str) -> String {
        database_url(&self.server_url, database)
    }

    /// Drop `database` with this context (for databases a test creates directly).
    pub fn track_database(&self, database: impl Into<String>) {
        self.tracked
            .lock()
            .expect("not poisoned")
            .push(database.into());
    }

    /// Settings a service reads, pointing at this test's databases and Redis prefix.
    pub fn service_env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", self.main_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_KEY_PREFIX", self.redis_prefix.clone()),
            ("TENANT_TEMPLATE_DATABASE", self.tenant_template.clone()),
            ("HTTP_WORKERS", "1".to_owned()),
            ("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN.to_owned()),
            ("ENVIRONMENT", "test".to_owned()),
            ("DATABASE_POOL_SIZE", "4".to_owned()),
            // The tests' broker is tansu, whose storage panics on an idempotent produce
            // after a producer-epoch bump (docs/DESIGN-NOTES.md, "Kafka on tansu").
            ("KAFKA_IDEMPOTENCE", "false".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if self.pool_defaults {
            env.remove("DATABASE_POOL_SIZE");
        }
        // Behind a transaction-mode PgBouncer (`PGBOUNCER=1 scripts/test.sh`): request
        // traffic through it, administration and migrations straight to the server, as
        // k8s/README.md says to deploy. Tests on a private server of their own bypass it.
        if let Some(pooled) = pooled_url(&self.server_url, &self.main_url) {
            env.insert("DATABASE_ADMIN_URL".to_owned(), self.main_url.clone());
            env.insert("DATABASE_URL".to_owned(), pooled);
            // PgBouncer refuses statement_timeout in the startup options (k8s/README.md).
            env.insert("DATABASE_STATEMENT_TIMEOUT_MS".to_owned(), "0".to_owned());
        }
        env
    }

    async fn cleanup(
        main_url: String,
        server_url: String,
        mut databases: Vec<String>,
        redis_url: String,
        prefix: String,
    ) -> anyhow::Result<()> {
        // Tenant databases the test provisioned are listed in its main database.
        if let Ok(mut main) = connect(&main_url).await {
            let rows: Vec<NameRow> =
                diesel::sql_query("SELECT database_name::text AS name FROM tenants")
                    .load(&mut main)
                    .await
                    .unwrap_or_default();
            databases.extend(rows.into_iter().map(|r| r.name));
        }
        let mut admin = connect(&server_url).await?;
        for db in databases {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote(&db)?
                ))
                .await
                .with_context(|| format!("dropping {db}"))?;
        }
        let client = redis::Client::open(redis_url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
        }
        Ok(())
    }
}

async fn create_from_template(
    admin: &mut AsyncPgConnection,
    db: &str,
    template: &str,
) -> anyhow::Result<()> {
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        quote(db)?,
        quote(template)?
    );
    // Another process may be finishing a CREATE from the same template (dozens at once
    // when the whole suite runs, more when two runs share the server): retry for up to
    // ten seconds.
    let mut attempt = 0;
    loop {
        match admin.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 200 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("creating {db} from {template}")),
        }
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        let mut databases = self.tracked.lock().map(|t| t.clone()).unwrap_or_default();
        databases.push(self.main_db.clone());
        databases.push(self.tenant_template.clone());
        let (main_url, server_url, redis_url, prefix) = (
            self.main_url.clone(),
            self.server_url.clone(),
            self.redis_url.clone(),
            self.redis_prefix.clone(),
        );
        // Drop runs inside the test's runtime: clean up on a thread with its own.
        let outcome = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(Self::cleanup(
                        main_url, server_url, databases, redis_url, prefix,
                    ))
                })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("testkit: cleanup failed: {e:#}"),
            Err(_) => eprintln!("testkit: cleanup panicked"),
        }
    }
}

/// Starts service `S` in-process on free ports with this test's settings (plus
/// `extra` variables); returns the base URL of its public listener. The server runs
/// until the test ends.
///
/// Tests name services by their public base URL; a `*_SERVICE_URL` variable given so is
/// rewritten to that service's internal listener, which is where services call each
/// other (and the only place the internal API answers). [`internal_url`] gives it to a
/// test that calls the internal API itself.
pub fn start_service<S: http_kit::cli::Service>(
    ctx: &TestContext,
    extra: &[(&str, &str)],
) -> String {
    let (listeners, base) = free_listeners();
    start_service_on::<S>(ctx, extra, listeners);
    base
}

/// Like [`start_service`], on listeners the test chose (for services that must know
/// each other's address before either starts: [`free_listeners`]).
pub fn start_service_on<S: http_kit::cli::Service>(
    ctx: &TestContext,
    extra: &[(&str, &str)],
    listeners: http_kit::server::Listeners,
) {
    let mut env = ctx.service_env();
    for (key, value) in extra {
        let value = if key.ends_with("_SERVICE_URL") {
            internal_url(value)
        } else {
            (*value).to_owned()
        };
        env.insert((*key).to_owned(), value);
    }
    let mut reader = http_kit::ConfigReader::new(&env);
    let settings = S::read_settings(&mut reader);
    let settings = reader.finish(settings).expect("valid service settings");
    // The background tasks run detached, for as long as the test's runtime.
    let running = S::start(settings, listeners).expect("start the service");
    tokio::spawn(running.server);
}

/// Waits (10 s at most) until the Redis server at `url` answers `PING`.
pub(crate) async fn wait_for_redis(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    wait_until(Duration::from_secs(10), || async {
        match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await
    .with_context(|| format!("redis-server at {url} did not answer"))
}

/// A Redis server of the test's own (`redis-server` on a free port), for tests that stop
/// Redis under a running service. Killed when dropped.
pub struct TestRedis {
    child: std::process::Child,
    port: u16,
    pub url: String,
}

impl TestRedis {
    pub async fn start() -> anyhow::Result<Self> {
        let port = {
            let probe = TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let child = Self::spawn(port)?;
        let url = format!("redis://127.0.0.1:{port}");
        let server = Self { child, port, url };
        server.wait_ready().await?;
        Ok(server)
    }

    fn spawn(port: u16) -> anyhow::Result<std::process::Child> {
        std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed?)")
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        wait_for_redis(&self.url).await
    }

    /// Starts the server again on the same port (empty: it keeps nothing on disk).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.child = Self::spawn(self.port)?;
        self.wait_ready().await
    }

    /// Stops the server (by the PID it recorded) and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of the test's own (`initdb` into a temporary directory, on a
/// free port), for tests that stop the database server. Stopped and removed when
/// dropped.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// Superuser URL of its `postgres` database.
    pub url: String,
}

fn as_postgres_user(program: &Path) -> std::process::Command {
    // initdb refuses to run as root: run it, and the server, as the postgres user.
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if is_root {
        let mut command = std::process::Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        std::process::Command::new(program)
    }
}

impl PrivatePostgres {
    pub fn start() -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")?
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .context("no PostgreSQL binaries under /usr/lib/postgresql")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = Path::new("/var/tmp").join(format!("testkit-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let _ = std::process::Command::new("chown")
            .arg("postgres:")
            .arg(&dir)
            .status();
        let status = as_postgres_user(&bin.join("initdb"))
            .args(["-D"])
            .arg(&dir)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("initdb")?;
        anyhow::ensure!(status.success(), "initdb failed");
        let server = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
        };
        server.resume()?;
        Ok(server)
    }

    /// Starts (again) the server.
    pub fn resume(&self) -> anyhow::Result<()> {
        let status = as_postgres_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
                self.port,
                self.dir.display()
            ))
            .args(["-w", "-l"])
            .arg(self.dir.join("server.log"))
            .arg("start")
            .stdout(std::process::Stdio::null())
            .status()
            .context("pg_ctl start")?;
        anyhow::ensure!(status.success(), "pg_ctl start failed");
        Ok(())
    }

    /// Kills the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn kill(&self) -> anyhow::Result<()> {
        let status = as_postgres_user(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("pg_ctl stop")?;
        anyhow::ensure!(status.success(), "pg_ctl stop failed");
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An S3 server of the test's own: s3s-fs on a temporary directory, checking SigV4
/// signatures and presigned-URL expiry for real. `endpoint` uses 127.0.0.1 and
/// `public_endpoint` names the same server as `localhost`, so a URL signed for the
/// public host is told apart from one signed for the internal host.
pub struct TestS3 {
    pub endpoint: String,
    pub public_endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    dir: PathBuf,
    server: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    wire: Arc<Tripwire>,
}

/// Handles of the connections a server opened (to cut them when it stops).
pub type Connections = Arc<Mutex<Vec<tokio::task::AbortHandle>>>;

/// Makes a test S3 server fail as if it died, once it has received a given number of
/// bytes after being armed: the connection reading at that moment is reset and every
/// later read or connection fails (S3 going away in the middle of an upload).
#[derive(Debug, Default)]
pub struct Tripwire {
    /// Bytes to let through after arming; 0 when disarmed.
    limit: std::sync::atomic::AtomicU64,
    received: std::sync::atomic::AtomicU64,
    tripped: std::sync::atomic::AtomicBool,
}

impl Tripwire {
    /// Fails the server after `bytes` more bytes have arrived.
    pub fn arm(&self, bytes: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        self.received.store(0, SeqCst);
        self.limit.store(bytes.max(1), SeqCst);
    }

    /// Brings a tripped server back (S3 restarted): connections are served again.
    pub fn disarm(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        self.limit.store(0, SeqCst);
        self.received.store(0, SeqCst);
        self.tripped.store(false, SeqCst);
    }

    pub fn tripped(&self) -> bool {
        std::sync::atomic::AtomicBool::load(&self.tripped, std::sync::atomic::Ordering::SeqCst)
    }

    fn count(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let limit = std::sync::atomic::AtomicU64::load(&self.limit, SeqCst);
        if limit > 0 && self.received.fetch_add(n, SeqCst) + n >= limit {
            self.tripped.store(true, SeqCst);
        }
        self.tripped()
    }
}

/// A server-side connection whose reads go past a [`Tripwire`].
struct Wired {
    inner: tokio::net::TcpStream,
    wire: Arc<Tripwire>,
}

impl tokio::io::AsyncRead for Wired {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = self.get_mut();
        let reset = || Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        if this.wire.tripped() {
            return reset();
        }
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            if this.wire.count((buf.filled().len() - before) as u64) {
                return reset();
            }
        }
        poll
    }
}

impl tokio::io::AsyncWrite for Wired {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves S3 (s3s-fs over `dir`, checking SigV4 with one key pair) on `listener`;
/// returns the accept loop and the handles of the connections it opened.
pub fn serve_s3(
    listener: tokio::net::TcpListener,
    dir: &Path,
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, Connections)> {
    serve_s3_wired(listener, dir, access_key, secret_key, Arc::default())
}

/// S3's response-header overrides, which s3s-fs does not apply: AWS S3 and MinIO answer
/// a GET or HEAD whose (signed) query names `response-content-type`,
/// `response-content-disposition`, `response-cache-control`, `response-content-language`,
/// `response-content-encoding` or `response-expires` with that header, replacing the
/// stored one. Presigned downloads rely on it (storage::ServedAs).
#[derive(Clone)]
struct ResponseOverrides(s3s::service::S3Service);

type S3Future = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<s3s::HttpResponse, s3s::HttpError>> + Send>,
>;

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ResponseOverrides {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = S3Future;

    fn call(&self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let overrides = if matches!(*request.method(), http::Method::GET | http::Method::HEAD) {
            response_overrides(request.uri().query().unwrap_or(""))
        } else {
            Vec::new()
        };
        let answer = hyper::service::Service::call(&self.0, request);
        Box::pin(async move {
            let mut response = answer.await?;
            if response.status().is_success() {
                for (name, value) in overrides {
                    response.headers_mut().insert(name, value);
                }
            }
            Ok(response)
        })
    }
}

fn response_overrides(query: &str) -> Vec<(http::HeaderName, http::HeaderValue)> {
    use http::header;
    url::form_urlencoded::parse(query.as_bytes())
        .filter_map(|(key, value)| {
            let name = match key.as_ref() {
                "response-content-type" => header::CONTENT_TYPE,
                "response-content-disposition" => header::CONTENT_DISPOSITION,
                "response-cache-control" => header::CACHE_CONTROL,
                "response-content-language" => header::CONTENT_LANGUAGE,
                "response-content-encoding" => header::CONTENT_ENCODING,
                "response-expires" => header::EXPIRES,
                _ => return None,
            };
            http::HeaderValue::from_str(&value)
                .ok()
                .map(|value| (name, value))
        })
        .collect()
}

/// [`serve_s3`] with a [`Tripwire`] that can make the server fail mid-request.
pub fn serve_s3_wired(
    listener: tokio::net::TcpListener,
    dir: &Path,
    access_key: &str,
    secret_key: &str,
    wire: Arc<Tripwire>,
) -> anyhow::Result<(tokio::task::JoinHandle<()>, Connections)> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let fs = s3s_fs::FileSystem::new(dir).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        access_key.to_owned(),
        secret_key.to_owned(),
    ));
    let service = ResponseOverrides(builder.build());
    let connections: Connections = Arc::default();
    let tracked = connections.clone();
    let server = tokio::spawn(async move {
        let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            if wire.tripped() {
                // A dead server: the connection is dropped unanswered.
                continue;
            }
            let socket = Wired {
                inner: socket,
                wire: wire.clone(),
            };
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            let task = tokio::spawn(async move {
                let _ = conn.await;
            });
            if let Ok(mut list) = tracked.lock() {
                list.retain(|t| !t.is_finished());
                list.push(task.abort_handle());
            }
        }
    });
    Ok((server, connections))
}

impl TestS3 {
    pub async fn start() -> anyhow::Result<Self> {
        let dir =
            std::env::temp_dir().join(format!("testkit-s3-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let (access_key, secret_key) = (
            "testkit-access".to_owned(),
            "testkit-secret-0123456789".to_owned(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let wire = Arc::new(Tripwire::default());
        let (server, connections) =
            serve_s3_wired(listener, &dir, &access_key, &secret_key, wire.clone())?;
        Ok(Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            public_endpoint: format!("http://localhost:{port}"),
            access_key,
            secret_key,
            dir,
            server,
            connections,
            wire,
        })
    }

    /// Makes the server die once it has received `bytes` more bytes (mid-upload).
    pub fn fail_after_receiving(&self, bytes: u64) {
        self.wire.arm(bytes);
    }

    /// Whether [`Self::fail_after_receiving`] has struck.
    pub fn failed(&self) -> bool {
        self.wire.tripped()
    }

    /// Serves again after [`Self::fail_after_receiving`] struck (S3 back after an
    /// outage, with what it had stored).
    pub fn revive(&self) {
        self.wire.disarm();
    }

    /// What s3s-fs keeps of multipart uploads that were neither completed nor aborted:
    /// its `.upload-{id}.json` records and `.upload_id-{id}.part-{n}` files (beside the
    /// buckets), and in-progress temporary files. Empty when nothing is left over.
    pub fn upload_leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload") || name.contains("tmp"))
            .collect();
        out.sort();
        out
    }

    /// Stops the server at once: the listener and every open connection.
    pub fn stop(&self) {
        self.server.abort();
        if let Ok(list) = self.connections.lock() {
            for connection in list.iter() {
                connection.abort();
            }
        }
    }

    /// Where the server keeps object `key` of `bucket` on disk (to alter it behind the
    /// server's back).
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.join(bucket).join(key)
    }

    /// Every stored object's path relative to the bucket directory `bucket`.
    pub fn objects(&self, bucket: &str) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if let Ok(relative) = path.strip_prefix(base) {
                    let name = relative.to_string_lossy().into_owned();
                    // s3s-fs keeps metadata and upload state beside the objects.
                    if !name.starts_with(".") && !name.contains("/.") {
                        out.push(name);
                    }
                }
            }
        }
        let base = self.dir.join(bucket);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A listener on a free loopback port and its base URL, for starting a service
/// in-process.
pub fn free_listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = listener.local_addr().expect("local address");
    (listener, format!("http://{addr}"))
}

/// Public base URL → internal base URL of every service listening in this process.
static INTERNAL_URLS: std::sync::LazyLock<std::sync::Mutex<HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// A service's two listeners on free loopback ports, and the public base URL; the
/// internal one is known to [`internal_url`].
pub fn free_listeners() -> (http_kit::server::Listeners, String) {
    let (public, base) = free_listener();
    let (internal, internal_base) = free_listener();
    INTERNAL_URLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(base.clone(), internal_base);
    (http_kit::server::Listeners { public, internal }, base)
}

/// The internal listener's base URL of the service whose public base URL is `public`
/// (anything else is returned unchanged: a URL of something that is not ours).
pub fn internal_url(public: &str) -> String {
    let trimmed = public.trim_end_matches('/');
    INTERNAL_URLS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(trimmed)
        .cloned()
        .unwrap_or_else(|| public.to_owned())
}

/// Waits until `condition` holds, polling every 20 ms, failing after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition().await {
        if tokio::time::Instant::now() >= deadline {
            bail!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
