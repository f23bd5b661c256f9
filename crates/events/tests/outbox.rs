//! The outbox commits and rolls back with the caller's transaction, in the main
//! database and in a tenant database.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use domain::{TenantId, UserId};
use events::outbox::outbox;
use events::{enqueue, EventEnvelope, OutboxError, Topic};
use serde_json::json;
use testkit::TestContext;

async fn stored(
    conn: &mut AsyncPgConnection,
) -> Vec<(uuid::Uuid, String, String, serde_json::Value)> {
    outbox::table
        .select((
            outbox::id,
            outbox::topic,
            outbox::partition_key,
            outbox::payload,
        ))
        .order(outbox::created_at)
        .load(conn)
        .await
        .expect("read outbox")
}

async fn exercise(url: &str) {
    let mut conn = AsyncPgConnection::establish(url).await.expect("connect");
    let tenant = TenantId::new();
    let event = EventEnvelope::new(
        Topic::TenantCreated,
        Some(tenant),
        Some(UserId::new()),
        json!({"name": "Acme"}),
    )
    .expect("event");

    let err = enqueue(&mut conn, &event)
        .await
        .expect_err("outside a transaction");
    assert!(matches!(err, OutboxError::NotInTransaction), "{err:?}");

    // Rolled back with the change it reports.
    let rolled_back = conn
        .transaction::<(), OutboxError, _>(async |tx| {
            enqueue(tx, &event).await?;
            Err(OutboxError::Database(
                diesel::result::Error::RollbackTransaction,
            ))
        })
        .await;
    assert!(rolled_back.is_err());
    assert!(
        stored(&mut conn).await.is_empty(),
        "nothing survives a rollback"
    );

    // Committed with it.
    let committed = event.clone();
    conn.transaction::<(), OutboxError, _>(async |tx| enqueue(tx, &committed).await)
        .await
        .expect("commit");
    let rows = stored(&mut conn).await;
    assert_eq!(rows.len(), 1);
    let (id, topic, key, payload) = &rows[0];
    assert_eq!(*id, event.id);
    assert_eq!(topic, "tenant.created");
    assert_eq!(*key, tenant.to_string());
    let back: EventEnvelope =
        serde_json::from_value(payload.clone()).expect("stored envelope parses");
    assert_eq!(back, event);

    // The same event twice is refused (the id is the primary key).
    let again = event.clone();
    let dup = conn
        .transaction::<(), OutboxError, _>(async |tx| enqueue(tx, &again).await)
        .await;
    assert!(matches!(dup, Err(OutboxError::Database(_))), "{dup:?}");
}

#[tokio::test]
async fn outbox_rows_follow_the_transaction_in_the_main_database() {
    let ctx = TestContext::new().await;
    exercise(&ctx.main_url).await;
}

#[tokio::test]
async fn outbox_rows_follow_the_transaction_in_a_tenant_database() {
    let ctx = TestContext::new().await;
    let name = format!("{}_copy", ctx.tenant_template);
    ctx.track_database(&name);
    let mut admin = AsyncPgConnection::establish(&ctx.main_url)
        .await
        .expect("connect");
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
            ctx.tenant_template
        ))
        .await
        .expect("tenant database");
    exercise(&ctx.url_of(&name)).await;
}
