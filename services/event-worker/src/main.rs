use std::process::ExitCode;

use clap::Parser;
use http_kit::cli::CommonCommand;

/// event-worker: Kafka consumers (audit log) and their API.
#[derive(Parser)]
#[command(name = "event-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<CommonCommand>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or_default() {
        // Serving stops the consumers after the HTTP server: they finish their batch and
        // commit their offsets before the process exits.
        CommonCommand::Serve => {
            http_kit::cli::run_with::<event_worker::Service, _, _>(|settings| async move {
                let address = settings.common.bind_address();
                let internal = settings.common.internal_bind_address();
                let grace = settings.common.shutdown_timeout;
                let listeners = http_kit::server::Listeners::bind(&settings.common)?;
                tracing::info!(%address, %internal, service = "event-worker", "listening");
                let (server, consumers) = event_worker::start(settings, listeners)?;
                let served = server.await;
                consumers.stop(grace).await;
                served?;
                tracing::info!(service = "event-worker", "stopped");
                Ok(ExitCode::SUCCESS)
            })
        }
        command => http_kit::cli::run::<event_worker::Service, _, _>(command, |url| async move {
            main_db::migrate_command(url)
                .await
                .map_err(|e| anyhow::anyhow!(e))
        }),
    }
}
