//! Forgetting processed event ids: `processed_events` would otherwise grow by one row
//! per event and consumer forever. An id only has to outlive any redelivery of its
//! event, which Kafka's retention bounds, so rows older than the retention setting
//! (`PROCESSED_EVENTS_RETENTION_DAYS`, default 14, above Kafka's default 7 days) are
//! deleted, in batches, every hour.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::RunQueryDsl;
use events::Shutdown;
use main_db::DbPool;

const BATCH: i64 = 10_000;

/// Deletes processed ids recorded before `before`; returns how many.
pub async fn prune(db: &DbPool, before: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut conn = db
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("main database: {e}"))?;
    let mut total = 0;
    loop {
        // Small batches: no long lock, no huge transaction.
        let deleted = diesel::sql_query(
            "DELETE FROM processed_events WHERE (consumer, event_id) IN \
             (SELECT consumer, event_id FROM processed_events WHERE processed_at < $1 LIMIT $2)",
        )
        .bind::<Timestamptz, _>(before)
        .bind::<BigInt, _>(BATCH)
        .execute(&mut conn)
        .await?;
        total += deleted;
        if deleted < usize::try_from(BATCH).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

/// Prunes now and every hour until `shutdown`.
pub async fn run(db: DbPool, retention: Duration, shutdown: Shutdown) {
    let mut stop = shutdown.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        let before = Utc::now()
            - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(14));
        match prune(&db, before).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "old processed event ids pruned"),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "pruning processed event ids failed"
            ),
        }
    }
}
