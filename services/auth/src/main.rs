use std::process::ExitCode;

use clap::{Parser, Subcommand};
use http_kit::cli::CommonCommand;

/// auth: users, login, refresh, logout and JWTs.
#[derive(Parser)]
#[command(name = "auth", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Common(CommonCommand),
    /// Print a new Ed25519 private key (PKCS#8 PEM) for JWT_PRIVATE_KEY.
    GenerateKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Common(CommonCommand::Serve)) {
        Command::Common(command) => {
            http_kit::cli::run::<auth::Service, _, _>(command, main_db::migrate_command)
        }
        Command::GenerateKey => match auth::keys::generate_pem() {
            Ok(pem) => {
                print!("{pem}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("auth: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
