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
    /// Dead letters: list, replay once the cause is fixed, purge old ones.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Print every dead letter (id, when, consumer, attempts, event, reason).
    List {
        /// Only this topic's (e.g. file.process).
        #[arg(long)]
        topic: Option<String>,
    },
    /// Republish dead letters to their source topic, as they were, and audit each
    /// replay; consumers that had handled an event skip it by its id.
    Replay {
        /// One dead letter: <topic>.dlq/<partition>/<offset>, as `dlq list` prints.
        #[arg(long, conflicts_with_all = ["topic", "since"], required_unless_present = "topic")]
        id: Option<event_worker::dlq::Position>,
        /// Every dead letter of this topic.
        #[arg(long)]
        topic: Option<String>,
        /// With --topic: only those dead-lettered at or after this time (RFC 3339).
        #[arg(long, requires = "topic")]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Delete the dead letters older than a time.
    Purge {
        /// Dead-lettered before this time (RFC 3339) go.
        #[arg(long)]
        before: chrono::DateTime<chrono::Utc>,
        /// Only this topic's.
        #[arg(long)]
        topic: Option<String>,
    },
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
        Command::Dlq(command) => dlq(command),
        // Serving stops the consumers after the HTTP server (`http_kit::lifecycle`): they
        // finish their batch and commit their offsets before the process exits.
        Command::Common(command) => {
            http_kit::cli::run::<event_worker::Service, _, _>(command, |url| async move {
                main_db::migrate_command(url)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))
            })
        }
    }
}

fn dlq(command: DlqCommand) -> ExitCode {
    use event_worker::dlq;
    match command {
        DlqCommand::List { topic } => run_command(
            event_worker::topics::TopicSettings::read,
            |settings| async move {
                let topics = dlq::dlq_topics(topic.as_deref()).map_err(anyhow::Error::msg)?;
                let connection = settings.connection();
                let timeout = settings.timeout;
                let letters = tokio::task::spawn_blocking(move || {
                    dlq::read(&connection, &topics, None, timeout)
                })
                .await??;
                for letter in &letters {
                    println!("{}", letter.line());
                }
                println!("{} dead letters", letters.len());
                Ok(ExitCode::SUCCESS)
            },
        ),
        DlqCommand::Replay { id, topic, since } => {
            run_command(event_worker::Settings::read, |settings| async move {
                let common = &settings.common;
                let connection = common
                    .kafka()
                    .map(events::Connection::from)
                    .ok_or_else(|| anyhow::anyhow!("KAFKA_BROKERS is not set"))?;
                let topics = match (&id, &topic) {
                    (Some(id), _) => vec![id.topic.clone()],
                    (None, topic) => {
                        dlq::dlq_topics(topic.as_deref()).map_err(anyhow::Error::msg)?
                    }
                };
                let timeout = common.kafka_timeout;
                let reader = connection.clone();
                let letters = tokio::task::spawn_blocking(move || {
                    dlq::read(&reader, &topics, id.as_ref(), timeout)
                })
                .await??;
                let letters: Vec<_> = letters
                    .into_iter()
                    .filter(|l| since.is_none_or(|since| l.at.is_some_and(|at| at >= since)))
                    .collect();
                let db = main_db::build_pool(
                    common.database_url.expose(),
                    &main_db::PoolSettings {
                        max_size: 1,
                        timeout: common.database_timeout,
                    },
                )?;
                dlq::replay(&connection, &db, &letters, timeout, |line| {
                    println!("{line}")
                })
                .await?;
                Ok(ExitCode::SUCCESS)
            })
        }
        DlqCommand::Purge { before, topic } => run_command(
            event_worker::topics::TopicSettings::read,
            |settings| async move {
                let topics = dlq::dlq_topics(topic.as_deref()).map_err(anyhow::Error::msg)?;
                dlq::purge(
                    &settings.connection(),
                    &topics,
                    before,
                    settings.timeout,
                    |line| println!("{line}"),
                )
                .await?;
                Ok(ExitCode::SUCCESS)
            },
        ),
    }
}
