//! The transactional outbox. `enqueue` writes the event into the `outbox` table of
//! whatever database the connection is on (main or tenant: both have the same table),
//! and refuses to run outside a transaction: an event must commit or roll back with the
//! change it reports.

use diesel::prelude::*;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};

use crate::EventEnvelope;

diesel::table! {
    /// Same shape in the main database and in every tenant database.
    outbox (id) {
        id -> Uuid,
        topic -> Text,
        partition_key -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        seq -> Int8,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox::enqueue must run inside the caller's transaction")]
    NotInTransaction,
    #[error("event type {0:?} is not in the topic catalog")]
    UnknownTopic(String),
    #[error("event could not be serialised: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error(transparent)]
    Database(#[from] diesel::result::Error),
}

/// Records `event` in the outbox, inside the caller's open transaction.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    event: &EventEnvelope,
) -> Result<(), OutboxError> {
    let depth = AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()?;
    if depth.is_none() {
        return Err(OutboxError::NotInTransaction);
    }
    let topic = event
        .topic()
        .ok_or_else(|| OutboxError::UnknownTopic(event.event_type.clone()))?;
    diesel::insert_into(outbox::table)
        .values((
            outbox::id.eq(event.id),
            outbox::topic.eq(topic.as_str()),
            outbox::partition_key.eq(event.partition_key()),
            outbox::payload.eq(serde_json::to_value(event)?),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the unpublished events of the outbox `from` is on into the outbox `to` is on,
/// oldest first, and returns how many. For a database about to be dropped (a purged
/// tenant): its events then leave through the other database's relay. Rows already in
/// `to` are skipped, so a repeated move after a failed drop publishes nothing twice
/// (consumers are idempotent by event id in any case).
pub async fn transfer(
    from: &mut AsyncPgConnection,
    to: &mut AsyncPgConnection,
) -> Result<usize, OutboxError> {
    let rows: Vec<(uuid::Uuid, String, String, serde_json::Value)> = outbox::table
        .select((
            outbox::id,
            outbox::topic,
            outbox::partition_key,
            outbox::payload,
        ))
        .filter(outbox::published_at.is_null())
        .order(outbox::seq.asc())
        .load(from)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let values: Vec<_> = rows
        .into_iter()
        .map(|(id, topic, key, payload)| {
            (
                outbox::id.eq(id),
                outbox::topic.eq(topic),
                outbox::partition_key.eq(key),
                outbox::payload.eq(payload),
            )
        })
        .collect();
    let moved = diesel::insert_into(outbox::table)
        .values(&values)
        .on_conflict(outbox::id)
        .do_nothing()
        .execute(to)
        .await?;
    Ok(moved)
}
