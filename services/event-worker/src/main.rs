use std::process::ExitCode;

use clap::{Parser, Subcommand};
use http_kit::cli::CommonCommand;

/// event-worker: Kafka consumers (audit log) and their API.
#[derive(Parser)]
#[command(name = "event-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Common(CommonCommand),
    /// Kafka topics of the event catalog.
    #[command(subcommand)]
    Topics(TopicsCommand),
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create every missing topic and its .dlq (KAFKA_TOPIC_PARTITIONS,
    /// KAFKA_REPLICATION_FACTOR, KAFKA_RETENTION_HOURS); report drift; change nothing
    /// that exists. Needs only the Kafka settings.
    Ensure,
}

/// Runs `task` on a runtime with settings read by `read` (a command that needs fewer
/// settings than the service).
fn run_command<S, F, Fut>(
    read: impl FnOnce(&mut http_kit::ConfigReader<'_>) -> S,
    task: F,
) -> ExitCode
where
    F: FnOnce(S) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    let settings = match http_kit::cli::load_settings(read) {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("event-worker: {errors}");
            return ExitCode::from(http_kit::cli::EXIT_CONFIG);
        }
    };
    http_kit::telemetry::init(http_kit::config::LogFormat::Pretty, "warn");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("event-worker: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(task(settings)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("event-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Common(CommonCommand::Serve)) {
        Command::Topics(TopicsCommand::Ensure) => run_command(
            event_worker::topics::TopicSettings::read,
            |settings| async move {
                event_worker::topics::ensure(&settings, |line| println!("{line}")).await?;
                Ok(ExitCode::SUCCESS)
            },
        ),
        // Serving stops the consumers after the HTTP server: they finish their batch and
        // commit their offsets before the process exits.
        Command::Common(CommonCommand::Serve) => {
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
        Command::Common(command) => {
            http_kit::cli::run::<event_worker::Service, _, _>(command, |url| async move {
                main_db::migrate_command(url)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))
            })
        }
    }
}
