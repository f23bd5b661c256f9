//! The main database as an outbox the relay drains.

use events::{OutboxConnection, OutboxDatabases, OutboxDb};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::DbPool;

/// The main database's outbox, for services that write events only there.
pub struct MainOutbox(pub DbPool);

impl OutboxDatabases for MainOutbox {
    fn all(&self) -> BoxFuture<'_, anyhow::Result<Vec<OutboxDb>>> {
        async { Ok(vec![OutboxDb::Main]) }.boxed()
    }

    fn connect<'a>(
        &'a self,
        db: &'a OutboxDb,
    ) -> BoxFuture<'a, anyhow::Result<OutboxConnection<'a>>> {
        async move {
            anyhow::ensure!(*db == OutboxDb::Main, "no outbox database {db} here");
            let conn = self
                .0
                .get()
                .await
                .map_err(|e| anyhow::anyhow!("main database: {e}"))?;
            Ok(Box::new(conn) as OutboxConnection<'a>)
        }
        .boxed()
    }
}

/// Starts `service`'s outbox relay over `databases` (none without `KAFKA_BROKERS`: the
/// rows wait in the outbox) as one of `background`'s tasks: at shutdown it publishes
/// what the last requests committed, then stops.
pub fn start_relay(
    service: &'static str,
    common: &http_kit::CommonSettings,
    databases: std::sync::Arc<dyn OutboxDatabases>,
    background: &mut http_kit::Background,
) -> Result<events::RelayHandle, events::RelayError> {
    let (relay, task) = events::start_relay(
        common.kafka().map(events::Connection::from),
        service,
        common.kafka_timeout,
        common.outbox_sweep_every,
        databases,
        background.token(),
    )?;
    if let Some(task) = task {
        background.adopt("outbox-relay", task);
    }
    Ok(relay)
}
