use std::process::ExitCode;

use clap::{Parser, Subcommand};
use event_worker::commands;
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Common(CommonCommand::Serve)) {
        Command::Topics(TopicsCommand::Ensure) => commands::ensure_topics(),
        Command::Dlq(DlqCommand::List { topic }) => commands::dlq_list(topic),
        Command::Dlq(DlqCommand::Replay { id, topic, since }) => {
            commands::dlq_replay(id, topic, since)
        }
        Command::Dlq(DlqCommand::Purge { before, topic }) => commands::dlq_purge(before, topic),
        // Serving stops the consumers after the HTTP server (`http_kit::lifecycle`): they
        // finish their batch and commit their offsets before the process exits.
        Command::Common(command) => {
            http_kit::cli::run::<event_worker::Service, _, _>(command, main_db::migrate_command)
        }
    }
}
