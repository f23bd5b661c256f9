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
