use std::process::ExitCode;

use clap::Parser;
use http_kit::cli::CommonCommand;

/// event-worker: kafka consumers: audit log, webhooks, notifications, file processing.
#[derive(Parser)]
#[command(name = "event-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<CommonCommand>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    http_kit::cli::run::<event_worker::Service, _, _>(
        cli.command.unwrap_or_default(),
        |url| async move {
            main_db::migrate_command(url)
                .await
                .map_err(|e| anyhow::anyhow!(e))
        },
    )
}
