//! `tenant migrate-tenants`: migrates the template and every tenant database (or one),
//! with bounded parallelism, a progress bar, a line per tenant and a summary; failed
//! tenants are reported while the others still get migrated. `--dry-run` lists pending
//! migrations and `--history` applied ones, changing nothing.

use domain::{TenantId, TenantStatus};
use tenant_db::migrations::{self, Mode, Outcome, Summary, Target, TargetResult};

use crate::fleet::Fleet;
use crate::placement::ServerState;
use crate::store::servers::ServerRow;
use crate::store::tenants::TenantRow;
use crate::Settings;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct MigrateTenantsArgs {
    /// List pending migrations per tenant; change nothing (not even a version table).
    #[arg(long, conflicts_with = "history")]
    pub dry_run: bool,
    /// Only this tenant.
    #[arg(long)]
    pub tenant_id: Option<TenantId>,
    /// List the migrations applied to each tenant database.
    #[arg(long)]
    pub history: bool,
    /// Tenant databases migrated at once (default: TENANT_MIGRATION_CONCURRENCY).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: Option<u16>,
}

impl MigrateTenantsArgs {
    fn mode(&self) -> Mode {
        if self.dry_run {
            Mode::DryRun
        } else if self.history {
            Mode::History
        } else {
            Mode::Apply
        }
    }
}

/// One line of the report for a result.
pub fn describe(result: &TargetResult) -> String {
    let took = format!("{} ms", result.duration.as_millis());
    let what = match &result.outcome {
        Ok(Outcome::Applied(versions)) => format!("applied {}", versions.join(", ")),
        Ok(Outcome::UpToDate) => "up to date".to_owned(),
        Ok(Outcome::Pending(versions)) => format!("pending {}", versions.join(", ")),
        Ok(Outcome::History(applied)) if applied.is_empty() => "no migrations applied".to_owned(),
        Ok(Outcome::History(applied)) => applied
            .iter()
            .map(|m| format!("{} ({})", m.version, m.run_on.format("%Y-%m-%d %H:%M:%S")))
            .collect::<Vec<_>>()
            .join(", "),
        Err(reason) => format!("FAILED: {reason}"),
    };
    format!("{}: {what} [{took}]", result.target.label)
}

pub fn describe_summary(summary: &Summary, mode: Mode) -> String {
    let seconds = summary.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        summary.total as f64 / seconds
    } else {
        0.0
    };
    let counts = match mode {
        Mode::Apply => format!(
            "{} migrated, {} up to date, {} failed",
            summary.migrated, summary.up_to_date, summary.failed
        ),
        Mode::DryRun => format!(
            "{} with pending migrations, {} up to date, {} failed",
            summary.with_pending, summary.up_to_date, summary.failed
        ),
        Mode::History => format!("{} listed, {} failed", summary.up_to_date, summary.failed),
    };
    format!(
        "{} tenant databases: {counts} in {seconds:.2} s ({rate:.1} tenants/s)",
        summary.total
    )
}

/// Runs the command, writing lines to `line`; the summary counts tenants only (each
/// server's template is reported on its own line and counts as a failure when it
/// fails). Servers are migrated at the same time, each with `concurrency` tenants at
/// once; a summary line per server precedes the total when there are several.
pub async fn run(
    settings: &Settings,
    args: &MigrateTenantsArgs,
    show_progress: bool,
    line: impl FnMut(&str),
) -> anyhow::Result<Summary> {
    let mode = args.mode();
    let line = std::cell::RefCell::new(line);
    let say = |text: &str| (line.borrow_mut())(text);
    let (db, fleet) = Fleet::for_command(settings)?;
    let (servers, rows) = {
        let mut conn = db.get().await.map_err(main_db::DbError::from)?;
        (
            crate::store::servers::list(&mut conn).await?,
            crate::store::tenants::with_databases(&mut conn, args.tenant_id).await?,
        )
    };
    if let Some(id) = args.tenant_id {
        anyhow::ensure!(
            !rows.is_empty(),
            "no tenant {id} with a database (active or deactivated)"
        );
    }
    // Every server that holds tenants or may get some; a disabled, empty one is left
    // alone.
    let servers: Vec<_> = servers
        .into_iter()
        .filter(|s| {
            let holds = rows.iter().any(|r| r.server_id == s.id);
            if args.tenant_id.is_some() {
                holds
            } else {
                holds || s.state() != ServerState::Disabled
            }
        })
        .collect();
    let several = servers.len() > 1;

    let progress = indicatif::ProgressBar::with_draw_target(
        Some(rows.len() as u64),
        if show_progress {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    );
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tenants, {per_sec}, eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let concurrency = args
        .concurrency
        .map_or(settings.migration_concurrency, usize::from);
    let started = std::time::Instant::now();
    let per_server = futures_util::future::join_all(servers.iter().map(|server| {
        let tenants: Vec<_> = rows.iter().filter(|r| r.server_id == server.id).collect();
        let (fleet, progress, say) = (&fleet, &progress, &say);
        async move {
            let report = |text: &str| progress.suspend(|| say(text));
            let mut summary = migrate_server(
                fleet,
                server,
                &tenants,
                args,
                mode,
                concurrency,
                &report,
                progress,
            )
            .await;
            summary.elapsed = started.elapsed();
            if several {
                report(&format!(
                    "server {}: {}",
                    server.name,
                    describe_summary(&summary, mode)
                ));
            }
            summary
        }
    }))
    .await;
    progress.finish_and_clear();
    let mut summary = Summary::default();
    for part in per_server {
        summary.total += part.total;
        summary.migrated += part.migrated;
        summary.up_to_date += part.up_to_date;
        summary.with_pending += part.with_pending;
        summary.failed += part.failed;
    }
    summary.elapsed = started.elapsed();
    say(&describe_summary(&summary, mode));
    Ok(summary)
}

/// One server: its template (unless one tenant was asked for), then its tenants.
#[allow(clippy::too_many_arguments)]
async fn migrate_server(
    fleet: &Fleet,
    server: &ServerRow,
    tenants: &[&TenantRow],
    args: &MigrateTenantsArgs,
    mode: Mode,
    concurrency: usize,
    report: &dyn Fn(&str),
    progress: &indicatif::ProgressBar,
) -> Summary {
    let timeout = fleet.base().timeout;
    let mut summary = Summary::default();
    let manager = match fleet.manager_of(server).await {
        Ok(manager) => manager,
        Err(e) => {
            // Every tenant of an unreachable server fails, named.
            report(&format!("server {}: FAILED: {e}", server.name));
            for tenant in tenants {
                report(&format!(
                    "{} {}: FAILED: its server {} cannot be reached",
                    tenant.id, tenant.database_name, server.name
                ));
                progress.inc(1);
            }
            summary.total = tenants.len();
            summary.failed = tenants.len() + usize::from(args.tenant_id.is_none());
            return summary;
        }
    };
    let mut template_failed = false;
    if args.tenant_id.is_none() {
        let started = std::time::Instant::now();
        let outcome = match mode {
            Mode::Apply => manager.ensure_template().await.map(|r| {
                if r.applied.is_empty() {
                    Outcome::UpToDate
                } else {
                    Outcome::Applied(r.applied)
                }
            }),
            Mode::DryRun => migrations::pending(&manager.template_url(), timeout)
                .await
                .map(|p| {
                    if p.is_empty() {
                        Outcome::UpToDate
                    } else {
                        Outcome::Pending(p)
                    }
                }),
            Mode::History => migrations::history(&manager.template_url(), timeout)
                .await
                .map(Outcome::History),
        };
        template_failed = outcome.is_err();
        let label = if server.id == tenant_db::MAIN_SERVER_ID {
            format!("template {}", manager.settings().template_database)
        } else {
            format!(
                "template {} on {}",
                manager.settings().template_database,
                server.name
            )
        };
        report(&describe(&TargetResult {
            target: Target {
                label,
                url: String::new(),
            },
            outcome: outcome.map_err(|e| e.to_string()),
            duration: started.elapsed(),
        }));
    }

    let names: Vec<String> = tenants.iter().map(|r| r.database_name.clone()).collect();
    let existing = match manager.existing(&names).await {
        Ok(existing) => existing,
        Err(e) => {
            report(&format!("server {}: FAILED: {e}", server.name));
            Vec::new()
        }
    };
    let mut targets = Vec::with_capacity(tenants.len());
    let mut missing = Vec::new();
    for row in tenants {
        let label = format!("{} {}", row.id, row.database_name);
        if existing.contains(&row.database_name) {
            targets.push(Target {
                label,
                url: manager.settings().admin_url_for(&row.database_name),
            });
        } else if row.status() == TenantStatus::Deleted {
            // Purged: nothing to migrate.
            report(&format!("{label}: skipped (deactivated, database purged)"));
            progress.inc(1);
        } else {
            missing.push(label);
        }
    }
    let mut summary = migrations::run_many(targets, mode, concurrency, timeout, |result| {
        report(&describe(result));
        progress.inc(1);
    })
    .await;
    for label in missing {
        report(&format!(
            "{label}: FAILED: the tenant's database does not exist"
        ));
        progress.inc(1);
        summary.total += 1;
        summary.failed += 1;
    }
    if template_failed {
        summary.failed += 1;
    }
    summary
}
