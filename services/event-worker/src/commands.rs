//! The event-worker's commands besides serving: `topics ensure` and `dlq list|replay|
//! purge` (what they do: docs/OPERATIONS.md). Each reads only the settings it needs,
//! prints what it did, and returns the process's exit code.

use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::dlq::{self, Position};
use crate::topics::{self, TopicSettings};
use crate::Settings;

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

/// `topics ensure`.
pub fn ensure_topics() -> ExitCode {
    run_command(TopicSettings::read, |settings| async move {
        topics::ensure(&settings, |line| println!("{line}")).await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// `dlq list [--topic T]`.
pub fn dlq_list(topic: Option<String>) -> ExitCode {
    run_command(TopicSettings::read, |settings| async move {
        let topics = dlq::dlq_topics(topic.as_deref()).map_err(anyhow::Error::msg)?;
        let connection = settings.connection();
        let timeout = settings.timeout;
        let letters =
            tokio::task::spawn_blocking(move || dlq::read(&connection, &topics, None, timeout))
                .await??;
        for letter in &letters {
            println!("{}", letter.line());
        }
        println!("{} dead letters", letters.len());
        Ok(ExitCode::SUCCESS)
    })
}

/// `dlq replay --id P | --topic T [--since S]`.
pub fn dlq_replay(
    id: Option<Position>,
    topic: Option<String>,
    since: Option<DateTime<Utc>>,
) -> ExitCode {
    run_command(Settings::read, |settings| async move {
        let common = &settings.common;
        let connection = common
            .kafka()
            .map(events::Connection::from)
            .ok_or_else(|| anyhow::anyhow!("KAFKA_BROKERS is not set"))?;
        let topics = match (&id, &topic) {
            (Some(id), _) => vec![id.topic.clone()],
            (None, topic) => dlq::dlq_topics(topic.as_deref()).map_err(anyhow::Error::msg)?,
        };
        let timeout = common.kafka_timeout;
        let reader = connection.clone();
        let letters =
            tokio::task::spawn_blocking(move || dlq::read(&reader, &topics, id.as_ref(), timeout))
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

/// `dlq purge --before S [--topic T]`.
pub fn dlq_purge(before: DateTime<Utc>, topic: Option<String>) -> ExitCode {
    run_command(TopicSettings::read, |settings| async move {
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
    })
}
