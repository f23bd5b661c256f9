use std::process::ExitCode;

use clap::Parser;
use http_kit::cli::CommonCommand;

/// auth: users, login, refresh, logout and JWTs.
#[derive(Parser)]
#[command(name = "auth", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<CommonCommand>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    http_kit::cli::run::<auth::Service, _, _>(cli.command.unwrap_or_default(), |url| async move {
        main_db::migrate_command(url)
            .await
            .map_err(|e| anyhow::anyhow!(e))
    })
}
