//! `tenant migrate-tenants`: migrates the template and every tenant database (or one),
//! with bounded parallelism, a progress bar, a line per tenant and a summary; failed
//! tenants are reported while the others still get migrated. `--dry-run` lists pending
//! migrations and `--history` applied ones, changing nothing.

use domain::{TenantId, TenantStatus};
use tenant_db::migrations::{self, Mode, Outcome, Summary, Target, TargetResult};
use tenant_db::TenantDatabaseManager;

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

/// Runs the command, writing lines to `line`; the summary counts tenants only (the
/// template is reported on its own line and counts as a failure when it fails).
pub async fn run(
    settings: &Settings,
    args: &MigrateTenantsArgs,
    show_progress: bool,
    mut line: impl FnMut(&str),
) -> anyhow::Result<Summary> {
    let mode = args.mode();
    let timeout = settings.tenant_db.timeout;
    let db = main_db::build_pool(
        settings.common.database_url.expose(),
        &settings.main_pool_settings(),
    )?;
    let manager = TenantDatabaseManager::new(settings.tenant_db.clone())?;
    let mut template_failed = false;

    if args.tenant_id.is_none() {
        let template = &settings.tenant_db.template_database;
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
        line(&describe(&TargetResult {
            target: Target {
                label: format!("template {template}"),
                url: String::new(),
            },
            outcome: outcome.map_err(|e| e.to_string()),
            duration: started.elapsed(),
        }));
    }

    let rows = {
        let mut conn = db.get().await.map_err(main_db::DbError::from)?;
        crate::store::tenants::with_databases(&mut conn, args.tenant_id).await?
    };
    if let Some(id) = args.tenant_id {
        anyhow::ensure!(
            !rows.is_empty(),
            "no tenant {id} with a database (active or deactivated)"
        );
    }
    let names: Vec<String> = rows.iter().map(|r| r.database_name.clone()).collect();
    let existing = manager.existing(&names).await?;
    let mut targets = Vec::with_capacity(rows.len());
    let mut missing = Vec::new();
    for row in &rows {
        let label = format!("{} {}", row.id, row.database_name);
        if existing.contains(&row.database_name) {
            targets.push(Target {
                label,
                url: settings.tenant_db.admin_url_for(&row.database_name),
            });
        } else if row.status() == TenantStatus::Deleted {
            // Purged: nothing to migrate.
            line(&format!("{label}: skipped (deactivated, database purged)"));
        } else {
            missing.push(label);
        }
    }

    let progress = indicatif::ProgressBar::with_draw_target(
        Some(targets.len() as u64),
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
    let mut summary = migrations::run_many(targets, mode, concurrency, timeout, |result| {
        let text = describe(result);
        progress.suspend(|| line(&text));
        progress.inc(1);
    })
    .await;
    progress.finish_and_clear();
    for label in missing {
        line(&format!(
            "{label}: FAILED: the tenant's database does not exist"
        ));
        summary.total += 1;
        summary.failed += 1;
    }
    if template_failed {
        summary.failed += 1;
    }
    line(&describe_summary(&summary, mode));
    Ok(summary)
}
