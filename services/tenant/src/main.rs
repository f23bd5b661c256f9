use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use http_kit::cli::CommonCommand;
use tenant::commands::{self, InitArgs, InitSettings};
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
    /// Create the platform admin and a test tenant (idempotent; needs auth running).
    Init(InitArgs),
    /// Reactivate a deactivated (not purged) tenant.
    Reactivate {
        #[arg(long)]
        tenant_id: domain::TenantId,
    },
    /// Move a tenant's database to another server (resumes an interrupted move).
    Move {
        #[arg(long)]
        tenant_id: domain::TenantId,
        /// The server to move to (tenant servers list).
        #[arg(
            long,
            required_unless_present = "rollback",
            conflicts_with = "rollback"
        )]
        to: Option<String>,
        /// Roll back the tenant's interrupted move instead.
        #[arg(long)]
        rollback: bool,
    },
    /// The PostgreSQL servers that hold tenant databases.
    #[command(subcommand)]
    Servers(ServersCommand),
}

#[derive(Subcommand)]
enum ServersCommand {
    /// Register a server: its settings checked, its template made, then active.
    Add(commands::AddServerArgs),
    /// Every server: state, weight, limit, tenants, share.
    List,
    /// Stop placing new tenants on a server; its tenants stay.
    Drain { name: String },
    /// Place new tenants on a server again.
    Activate { name: String },
    /// Take a server out of service (refused while it holds tenants).
    Disable { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Common(CommonCommand::Serve)) {
        Command::Common(command) => {
            http_kit::cli::run::<tenant::Service, _, _>(command, main_db::migrate_command)
        }
        Command::MigrateTenants(args) => {
            http_kit::cli::run_with::<tenant::Service, _, _>(|settings| async move {
                let show_progress = std::io::stderr().is_terminal();
                let summary = migrate_tenants::run(&settings, &args, show_progress, |line| {
                    println!("{line}")
                })
                .await?;
                Ok(if summary.failed > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            })
        }
        Command::Init(args) => {
            let init = match http_kit::cli::load_settings(InitSettings::read) {
                Ok(init) => init,
                Err(errors) => {
                    eprintln!("tenant: {errors}");
                    return ExitCode::from(http_kit::cli::EXIT_CONFIG);
                }
            };
            http_kit::cli::run_with::<tenant::Service, _, _>(|settings| async move {
                commands::init(&settings, &init, &args, |line| println!("{line}")).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Servers(command) => {
            use tenant::placement::ServerState;
            let change = match command {
                ServersCommand::Add(args) => {
                    return http_kit::cli::run_with::<tenant::Service, _, _>(
                        |settings| async move {
                            commands::servers_add(&settings, &args, |line| println!("{line}"))
                                .await?;
                            Ok(ExitCode::SUCCESS)
                        },
                    );
                }
                ServersCommand::List => None,
                ServersCommand::Drain { name } => Some((name, ServerState::Draining)),
                ServersCommand::Activate { name } => Some((name, ServerState::Active)),
                ServersCommand::Disable { name } => Some((name, ServerState::Disabled)),
            };
            http_kit::cli::run_with::<tenant::Service, _, _>(|settings| async move {
                let print = |line: &str| println!("{line}");
                match change {
                    None => commands::servers_list(&settings, print).await?,
                    Some((name, state)) => {
                        commands::servers_set_state(&settings, &name, state, print).await?
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Move { tenant_id, to, .. } => {
            http_kit::cli::run_with::<tenant::Service, _, _>(|settings| async move {
                commands::move_tenant(&settings, tenant_id, to.as_deref(), |line| {
                    println!("{line}")
                })
                .await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Reactivate { tenant_id } => {
            http_kit::cli::run_with::<tenant::Service, _, _>(|settings| async move {
                commands::reactivate(&settings, tenant_id, |line| println!("{line}")).await?;
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}
