//! A local Kafka for development (`scripts/dev-up.sh` starts it): librdkafka's mock
//! cluster, one broker, with the given topics. Its port is chosen by librdkafka: the
//! bootstrap address is printed and written to `--write-to`.
//!
//!   dev-kafka --topics tenant.created,tenant.created.dlq,... --write-to FILE

use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let topics = testkit::cli_arg(&args, "--topics")?;
    let topics: Vec<&str> = topics.split(',').filter(|t| !t.is_empty()).collect();
    let kafka = testkit::TestKafka::start(&topics, 3)?;
    let file = testkit::cli_arg(&args, "--write-to")?;
    std::fs::write(&file, kafka.brokers()).with_context(|| format!("writing {file}"))?;
    println!(
        "dev-kafka: librdkafka mock cluster at {} ({} topics)",
        kafka.brokers(),
        topics.len()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
