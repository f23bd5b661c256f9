//! Operator commands of the tenant binary besides `migrate-tenants`:
//! `init --create-admin [--create-test-tenant]` (idempotent: a second run changes
//! nothing and says so; the admin's password is `INIT_ADMIN_PASSWORD` or generated and
//! printed once), `reactivate --tenant-id ID`, and `servers add|list|drain|activate|
//! disable`. `init` talks to the auth service at `AUTH_SERVICE_URL`, which must be
//! running.

use domain::{TenantId, TenantName};
use http_kit::Secret;

use crate::provisioning::Provisioner;
use crate::Settings;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct InitArgs {
    /// Create the platform admin user (INIT_ADMIN_EMAIL) unless it exists.
    #[arg(long)]
    pub create_admin: bool,
    /// Create a test tenant (INIT_TEST_TENANT_NAME) owned by the admin unless it exists.
    #[arg(long, requires = "create_admin")]
    pub create_test_tenant: bool,
}

/// Settings of `init`: `INIT_ADMIN_EMAIL` (`admin@example.com`), `INIT_ADMIN_PASSWORD`
/// (generated when unset), `INIT_TEST_TENANT_NAME` (`Test Tenant`).
#[derive(Debug, Clone)]
pub struct InitSettings {
    pub admin_email: String,
    pub admin_password: Option<Secret<String>>,
    pub test_tenant_name: String,
}

impl InitSettings {
    pub fn read(r: &mut http_kit::ConfigReader<'_>) -> Self {
        Self {
            admin_email: r.optional("INIT_ADMIN_EMAIL", "admin@example.com".to_owned()),
            admin_password: r.maybe("INIT_ADMIN_PASSWORD"),
            test_tenant_name: r.optional("INIT_TEST_TENANT_NAME", "Test Tenant".to_owned()),
        }
    }
}

/// 22 random letters and digits, then a letter and a digit (the password rules).
fn generate_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 22];
    getrandom::getrandom(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let mut password: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    password.push_str("k7");
    Ok(password)
}

pub async fn init(
    settings: &Settings,
    init: &InitSettings,
    args: &InitArgs,
    mut line: impl FnMut(&str),
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.create_admin,
        "nothing to do: give --create-admin (and --create-test-tenant)"
    );
    let auth = clients::AuthClient::from_peers(&settings.peers)?;
    let email = domain::Email::parse(&init.admin_email)
        .map_err(|e| anyhow::anyhow!("INIT_ADMIN_EMAIL: {e}"))?;
    let (password, generated) = match &init.admin_password {
        Some(password) => (password.expose().clone(), false),
        None => (generate_password()?, true),
    };
    let created = auth
        .register(email.as_str(), &password, "Platform", "Admin")
        .await?;
    if created {
        line(&format!("admin {email}: created"));
        if generated {
            line(&format!(
                "admin password (shown once, store it now): {password}"
            ));
        }
    } else {
        line(&format!(
            "admin {email}: already exists, password unchanged"
        ));
    }
    // A platform administrator, with a verified email (idempotent).
    let admin = auth.make_platform_admin(email.as_str()).await?;
    if args.create_test_tenant {
        let name = TenantName::parse(&init.test_tenant_name)
            .map_err(|e| anyhow::anyhow!("INIT_TEST_TENANT_NAME: {e}"))?;
        let db = settings.command_pool()?;
        let existing = {
            let mut conn = db.get().await?;
            crate::store::tenants::find_by_creator_and_name(&mut conn, admin.id, &name).await?
        };
        match existing {
            Some(tenant) => line(&format!(
                "test tenant {:?} ({}): already exists, unchanged",
                tenant.name, tenant.id
            )),
            None => {
                let fleet = std::sync::Arc::new(crate::fleet::Fleet::new(
                    db.clone(),
                    settings.tenant_db.clone(),
                )?);
                let tenant = Provisioner::new(db, fleet)
                    .provision(name, Some(admin.id))
                    .await?;
                line(&format!(
                    "test tenant {:?} ({}): created, database {}",
                    tenant.name, tenant.id, tenant.database_name
                ));
            }
        }
    }
    Ok(())
}

/// Reactivates a deactivated tenant whose database still exists.
pub async fn reactivate(
    settings: &Settings,
    tenant_id: TenantId,
    mut line: impl FnMut(&str),
) -> anyhow::Result<()> {
    let (db, fleet) = crate::fleet::Fleet::for_command(settings)?;
    let mut conn = db.get().await?;
    let tenant = crate::store::tenants::find(&mut conn, tenant_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant {tenant_id}"))?;
    let manager = fleet.of_tenant(&tenant).await?;
    anyhow::ensure!(
        !tenant.is_active,
        "tenant {tenant_id} is not deactivated (status {})",
        tenant.status
    );
    let database = tenant.database()?;
    anyhow::ensure!(
        tenant.database_purged_at.is_none() && manager.exists(&database).await?,
        "tenant {tenant_id} was purged (its database {database} is gone): it cannot be reactivated"
    );
    let tenant = crate::store::tenants::reactivate(&mut conn, tenant_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("tenant {tenant_id} changed meanwhile; run again"))?;
    // Services that cached "not a member" while it was deactivated learn it at once.
    let common = &settings.common;
    let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
    http_kit::identity::announce_role_change(
        &cache::Broadcast::new(
            &redis,
            &cache::Keys::new(common.redis_key_prefix.clone()),
            http_kit::identity::ROLE_CHANNEL,
        ),
        tenant_id,
        None,
    )
    .await;
    line(&format!(
        "tenant {:?} ({}): reactivated",
        tenant.name, tenant.id
    ));
    Ok(())
}

/// `servers add`: the server and the settings that hold its URLs.
#[derive(Debug, Clone, clap::Args)]
pub struct AddServerArgs {
    /// Its name: lowercase letters, digits and '-'.
    pub name: String,
    /// The setting holding its administration URL (CREATE/DROP DATABASE, migrations;
    /// never through a transaction-mode pooler), e.g. TENANT_DB_2_ADMIN_URL. Every
    /// tenant service replica must have it (NAME or NAME_FILE).
    #[arg(long, value_name = "SETTING")]
    pub admin_url_setting: String,
    /// The setting holding its URL for request traffic (may be a PgBouncer); every
    /// replica of the services that open tenant connections (tenant, document,
    /// event-worker) must have it. Default: the administration setting.
    #[arg(long, value_name = "SETTING")]
    pub url_setting: Option<String>,
    /// Its share of new tenants, against the other active servers' weights.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub weight: i32,
    /// It gets no tenant past this many.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    pub max_tenants: Option<i32>,
    /// Add it draining: registered and migrated, but given no tenant until
    /// `servers activate`.
    #[arg(long)]
    pub draining: bool,
}

/// `servers add`: checks that both settings are set here and name PostgreSQL URLs,
/// that the server answers on both and is not one already registered, makes and
/// migrates its tenant template (which proves the CREATEDB right), then registers it.
/// Nothing is registered when a step fails.
pub async fn servers_add(
    settings: &Settings,
    args: &AddServerArgs,
    line: impl Fn(&str),
) -> anyhow::Result<()> {
    use crate::placement::ServerState;
    use crate::store::servers;
    let name_ok = {
        let b = args.name.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
    };
    anyhow::ensure!(
        name_ok,
        "server name {:?}: use lowercase letters, digits and '-', starting with a letter or digit, at most 63",
        args.name
    );
    let url_setting = args
        .url_setting
        .as_deref()
        .unwrap_or(&args.admin_url_setting);
    for setting in [args.admin_url_setting.as_str(), url_setting] {
        let ok = setting.len() <= 128
            && setting.starts_with(|c: char| c.is_ascii_uppercase())
            && setting
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
        anyhow::ensure!(
            ok,
            "setting name {setting:?}: use uppercase letters, digits and '_' (the name of a setting, never a URL)"
        );
    }
    let (db, fleet) = crate::fleet::Fleet::for_command(settings)?;
    let mut conn = db.get().await?;
    let existing = servers::list(&mut conn).await?;
    anyhow::ensure!(
        !existing.iter().any(|s| s.name == args.name),
        "a database server named {:?} exists already",
        args.name
    );
    let admin_url = fleet.urls().resolve(&args.admin_url_setting).await?;
    let url = fleet.urls().resolve(url_setting).await?;
    // The same server registered twice would be counted twice and its databases
    // administered under two names.
    let address = |u: &str| {
        url::Url::parse(u).ok().map(|u| {
            (
                u.host_str().unwrap_or("").to_owned(),
                u.port().unwrap_or(5432),
            )
        })
    };
    for other in &existing {
        for setting in [&other.admin_url_ref, &other.url_ref] {
            if let Ok(known) = fleet.urls().resolve(setting).await {
                anyhow::ensure!(
                    address(&known) != address(&admin_url) && address(&known) != address(&url),
                    "{} names the host and port of database server {:?} ({setting}): a server is registered once",
                    if address(&known) == address(&admin_url) { &args.admin_url_setting } else { url_setting },
                    other.name
                );
            }
        }
    }
    let timeout = settings.tenant_db.timeout;
    for (setting, u) in [
        (&args.admin_url_setting[..], &admin_url),
        (url_setting, &url),
    ] {
        tenant_db::migrations::check_connection(u, timeout)
            .await
            .map_err(|e| anyhow::anyhow!("{setting}: the server does not answer: {e}"))?;
    }
    let row = servers::ServerRow::new_for(
        uuid::Uuid::new_v4(),
        &args.name,
        &args.admin_url_setting,
        url_setting,
    );
    let manager = fleet.manager_of(&row).await?;
    let report = manager.ensure_template().await.map_err(|e| {
        anyhow::anyhow!(
            "could not make the tenant template on it (the role of {} needs CREATEDB): {e}",
            args.admin_url_setting
        )
    })?;
    // Under another host name the check above misses it: the cluster is asked.
    for other in &existing {
        let Ok(known) = fleet.manager_of(other).await else {
            continue;
        };
        let same = manager.same_cluster(&known).await.map_err(|e| {
            anyhow::anyhow!(
                "could not check that it is not the server registered as {:?} (which must answer): {e}",
                other.name
            )
        })?;
        anyhow::ensure!(
            !same,
            "{} reaches the PostgreSQL server registered as {:?}: a server is registered once",
            args.admin_url_setting,
            other.name
        );
    }
    line(&format!(
        "template {} on {}: {}",
        settings.tenant_db.template_database,
        args.name,
        if report.applied.is_empty() {
            "up to date".to_owned()
        } else {
            format!("applied {}", report.applied.len())
        }
    ));
    let state = if args.draining {
        ServerState::Draining
    } else {
        ServerState::Active
    };
    servers::insert(&mut conn, &row, state, args.weight, args.max_tenants)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(_, info)
                if info.constraint_name() == Some("database_servers_name_key") =>
            {
                anyhow::anyhow!("a database server named {:?} exists already", args.name)
            }
            other => other.into(),
        })?;
    line(&format!(
        "database server {:?} added: {}, weight {}{} (admin {}, requests {})",
        args.name,
        state.as_str(),
        args.weight,
        args.max_tenants
            .map_or(String::new(), |m| format!(", at most {m} tenants")),
        args.admin_url_setting,
        url_setting,
    ));
    Ok(())
}

/// `move --tenant-id ID --to NAME` (or `--rollback`): moves a tenant's database to
/// another server, resuming an interrupted move (`crate::moving`).
pub async fn move_tenant(
    settings: &Settings,
    tenant_id: TenantId,
    to: Option<&str>,
    line: impl Fn(&str),
) -> anyhow::Result<()> {
    let (db, fleet) = crate::fleet::Fleet::for_command(settings)?;
    let common = &settings.common;
    let redis = cache::connect(common.redis_url.expose(), common.redis_timeout)?;
    let mover = crate::moving::Mover::new(db, fleet, settings.moves.clone()).with_broadcast(
        cache::Broadcast::new(
            &redis,
            &cache::Keys::new(common.redis_key_prefix.clone()),
            crate::moving::MOVED_CHANNEL,
        ),
    );
    let Some(to) = to else {
        mover.rollback(tenant_id).await?;
        line(&format!(
            "tenant {tenant_id}: move rolled back (the copy dropped, its database writable again)"
        ));
        return Ok(());
    };
    let report = mover.run(tenant_id, to).await?;
    let source = if report.source_dropped {
        "source dropped".to_owned()
    } else {
        report.drop_source_after.map_or_else(
            || "source kept".to_owned(),
            |at| {
                format!(
                    "source kept (read-only) until {}",
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                )
            },
        )
    };
    line(&format!(
        "tenant {tenant_id}: {}moved from {} to {}: {} rows in {} tables verified; read-only {:.2} s, total {:.2} s; {source}",
        if report.resumed { "resumed and " } else { "" },
        report.from,
        report.to,
        report.rows(),
        report.tables.len(),
        report.read_only.as_secs_f64(),
        report.total.as_secs_f64(),
    ));
    Ok(())
}

/// `servers list`: every database server, its state, weight, limit, the tenants it
/// holds and its share of them, against its share of the active servers' weight.
pub async fn servers_list(settings: &Settings, line: impl Fn(&str)) -> anyhow::Result<()> {
    let db = settings.command_pool()?;
    let mut conn = db.get().await?;
    let servers = crate::store::servers::list(&mut conn).await?;
    let total: i64 = servers.iter().map(|s| s.tenants).sum();
    let active_weight: i64 = servers
        .iter()
        .filter(|s| s.state() == crate::placement::ServerState::Active)
        .map(|s| i64::from(s.weight))
        .sum();
    line(&format!(
        "{:<20} {:<9} {:>6} {:>11} {:>8} {:>7} {:>7}  {}",
        "name", "state", "weight", "max", "tenants", "share", "target", "urls (settings)"
    ));
    for s in &servers {
        let percent = |part: i64, whole: i64| {
            if whole == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}%", part as f64 * 100.0 / whole as f64)
            }
        };
        let target = if s.state() == crate::placement::ServerState::Active {
            percent(i64::from(s.weight), active_weight)
        } else {
            "-".to_owned()
        };
        line(&format!(
            "{:<20} {:<9} {:>6} {:>11} {:>8} {:>7} {:>7}  admin {}, requests {}",
            s.name,
            s.state,
            s.weight,
            s.max_tenants.map_or("-".to_owned(), |m| m.to_string()),
            s.tenants,
            percent(s.tenants, total),
            target,
            s.admin_url_ref,
            s.url_ref,
        ));
    }
    line(&format!("{} servers, {total} tenants", servers.len()));
    Ok(())
}

/// `servers drain|activate|disable NAME`: a draining server keeps its tenants and gets
/// no new ones; an active one gets new tenants again; a disabled one holds none, so
/// disabling is refused while tenants remain on it (move them first). Changing under
/// the placement lock, so no tenant is placed on a server that is being disabled.
pub async fn servers_set_state(
    settings: &Settings,
    name: &str,
    state: crate::placement::ServerState,
    line: impl Fn(&str),
) -> anyhow::Result<()> {
    use crate::placement::ServerState;
    use crate::store::servers;
    use diesel_async::AsyncConnection;
    let db = settings.command_pool()?;
    let mut conn = db.get().await?;
    let name = name.to_owned();
    let (server, left) = conn
        .transaction::<_, anyhow::Error, _>(async |tx| {
            servers::lock_placement(tx).await?;
            let server = servers::find_by_name(tx, &name).await?.ok_or_else(|| {
                anyhow::anyhow!("no database server named {name:?} (tenant servers list)")
            })?;
            if state == ServerState::Disabled && server.tenants > 0 {
                anyhow::bail!(
                    "database server {name:?} still holds {} tenants: drain it and move them first",
                    server.tenants
                );
            }
            let moving = crate::store::moves::copying_on(tx, server.id).await?;
            if state == ServerState::Disabled && moving > 0 {
                anyhow::bail!(
                    "{moving} tenant moves into or out of database server {name:?} are under way: let them finish first"
                );
            }
            anyhow::ensure!(
                servers::set_state(tx, &name, state).await?,
                "database server {name:?} went away meanwhile"
            );
            let left = servers::list(tx)
                .await?
                .iter()
                .filter(|s| s.name != name && s.state() == ServerState::Active)
                .count()
                + usize::from(state == ServerState::Active);
            Ok((server, left))
        })
        .await?;
    line(&format!(
        "database server {:?}: {} → {} ({} tenants)",
        server.name,
        server.state,
        state.as_str(),
        server.tenants
    ));
    if left == 0 {
        line("warning: no server is active now: new tenants are refused (503) until one is");
    }
    Ok(())
}
