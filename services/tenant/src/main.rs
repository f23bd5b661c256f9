use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use http_kit::cli::CommonCommand;
use tenant::migrate_tenants::{self, MigrateTenantsArgs};

/// tenant: tenants, memberships and tenant databases.
#[derive(Parser)]
#[command(name = "tenant", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Common(CommonCommand),
    /// Migrate the tenant template and every tenant database (or one).
    MigrateTenants(MigrateTenantsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Common(CommonCommand::Serve)) {
        Command::Common(command) => {
            http_kit::cli::run::<tenant::Service, _, _>(command, |url| async move {
                main_db::migrate_command(url)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))
            })
        }
        Command::MigrateTenants(args) => {
            http_kit::cli::run_with::<tenant::Service, _, _>(|settings| async move {
                let show_progress = std::io::stderr().is_terminal();
                let summary = migrate_tenants::run(&settings, &args, show_progress, |line| {
                    println!("{line}")
                })
                .await?;
                migrate_tenants::settle().await;
                Ok(if summary.failed > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            })
        }
    }
}
