use std::process::ExitCode;

use clap::Parser;
use http_kit::cli::CommonCommand;

/// document: documents and files of a tenant: upload, list, download, presigned URLs.
#[derive(Parser)]
#[command(name = "document", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<CommonCommand>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    http_kit::cli::run::<document::Service, _, _>(
        cli.command.unwrap_or_default(),
        main_db::migrate_command,
    )
}
