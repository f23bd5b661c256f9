use std::process::ExitCode;

use clap::Parser;
use http_kit::cli::CommonCommand;

/// sso: per-tenant Microsoft Entra ID single sign-on.
#[derive(Parser)]
#[command(name = "sso", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<CommonCommand>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    http_kit::cli::run::<sso::Service, _, _>(
        cli.command.unwrap_or_default(),
        main_db::migrate_command,
    )
}
