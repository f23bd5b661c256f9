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

// --- The relay: outbox -> Kafka (librdkafka's mock cluster, a real Kafka-protocol broker).

mod relay {
    use std::time::Duration;

    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    use domain::{TenantId, UserId};
    use events::outbox::outbox;
    use events::{enqueue, EventEnvelope, KafkaSettings, OutboxError, Relay, RelayError, Topic};
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    use serde_json::json;
    use testkit::TestContext;

    const TOPICS: [&str; 2] = ["tenant.created", "membership.changed"];

    fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for topic in TOPICS {
            cluster.create_topic(topic, 1, 1).expect("topic");
        }
        cluster
    }

    fn relay(brokers: &str, message_timeout: Duration) -> Relay {
        Relay::new(&KafkaSettings {
            connection: brokers.into(),
            client_id: "relay-test".into(),
            message_timeout,
        })
        .expect("relay")
    }

    /// Every message of TOPICS from the beginning: (topic, key, envelope), until
    /// `count` have arrived (failing after 20 s).
    async fn consume(brokers: &str, count: usize) -> Vec<(String, String, EventEnvelope)> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "relay-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut partitions = TopicPartitionList::new();
        for topic in TOPICS {
            partitions
                .add_partition_offset(topic, 0, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&partitions).expect("assign");
        let mut seen = Vec::new();
        while seen.len() < count {
            let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of {count} events arrived", seen.len()))
                .expect("message");
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8");
            let envelope: EventEnvelope =
                serde_json::from_slice(message.payload().expect("payload")).expect("envelope");
            seen.push((message.topic().to_owned(), key, envelope));
        }
        seen
    }

    fn event(topic: Topic, tenant: TenantId, n: usize) -> EventEnvelope {
        EventEnvelope::new(topic, Some(tenant), Some(UserId::new()), json!({"n": n}))
            .expect("event")
    }

    async fn commit(conn: &mut AsyncPgConnection, events: &[EventEnvelope]) {
        conn.transaction::<(), OutboxError, _>(async |tx| {
            for event in events {
                enqueue(tx, event).await?;
            }
            Ok(())
        })
        .await
        .expect("commit");
    }

    async fn unpublished(conn: &mut AsyncPgConnection) -> Vec<(i32, Option<String>)> {
        outbox::table
            .filter(outbox::published_at.is_null())
            .select((outbox::attempts, outbox::last_error))
            .load(conn)
            .await
            .expect("outbox")
    }

    #[tokio::test]
    async fn committed_events_are_published_in_order_with_the_tenant_as_key() {
        let ctx = TestContext::new().await;
        let mut conn = AsyncPgConnection::establish(&ctx.main_url)
            .await
            .expect("connect");
        let cluster = cluster();
        let brokers = cluster.bootstrap_servers();
        let (acme, globex) = (TenantId::new(), TenantId::new());
        let sent = vec![
            event(Topic::TenantCreated, acme, 1),
            event(Topic::MembershipChanged, globex, 2),
            event(Topic::TenantCreated, acme, 3),
        ];
        commit(&mut conn, &sent).await;
        // A rolled-back event is never published.
        let lost = event(Topic::TenantCreated, acme, 99);
        let _ = conn
            .transaction::<(), OutboxError, _>(async |tx| {
                enqueue(tx, &lost).await?;
                Err(OutboxError::Database(
                    diesel::result::Error::RollbackTransaction,
                ))
            })
            .await;

        let relay = relay(&brokers, Duration::from_secs(10));
        assert_eq!(relay.publish_pending(&mut conn).await.expect("publish"), 3);
        assert_eq!(
            relay.publish_pending(&mut conn).await.expect("again"),
            0,
            "nothing twice"
        );
        assert!(unpublished(&mut conn).await.is_empty());

        let got = consume(&brokers, 3).await;
        let created: Vec<_> = got
            .iter()
            .filter(|(t, _, _)| t == "tenant.created")
            .collect();
        assert_eq!(created.len(), 2);
        assert_eq!(created[0].2, sent[0], "oldest first");
        assert_eq!(created[1].2, sent[2]);
        for (_, key, envelope) in &got {
            let tenant = envelope.tenant_id.expect("tenant");
            assert_eq!(*key, tenant.to_string(), "keyed by tenant");
            assert_ne!(envelope.id, lost.id);
        }
        let membership = got
            .iter()
            .find(|(t, _, _)| t == "membership.changed")
            .expect("one");
        assert_eq!(membership.2, sent[1]);
    }

    #[tokio::test]
    async fn events_committed_while_the_broker_is_down_all_arrive_once_it_is_back() {
        let ctx = TestContext::new().await;
        let mut conn = AsyncPgConnection::establish(&ctx.main_url)
            .await
            .expect("connect");
        let cluster = cluster();
        let brokers = cluster.bootstrap_servers();
        let relay = relay(&brokers, Duration::from_secs(1));
        // The producer has met the broker; then the broker goes away.
        commit(
            &mut conn,
            &[event(Topic::TenantCreated, TenantId::new(), 0)],
        )
        .await;
        assert_eq!(relay.publish_pending(&mut conn).await.expect("warm-up"), 1);
        cluster.broker_down(-1).expect("down");

        let tenant = TenantId::new();
        let sent: Vec<_> = (1..=5)
            .map(|n| event(Topic::TenantCreated, tenant, n))
            .collect();
        commit(&mut conn, &sent).await;
        let err = relay
            .publish_pending(&mut conn)
            .await
            .expect_err("broker down");
        assert!(
            matches!(err, RelayError::Delivery { published: 0, .. }),
            "{err:?}"
        );
        let waiting = unpublished(&mut conn).await;
        assert_eq!(waiting.len(), 5, "nothing marked that Kafka did not take");
        assert!(
            waiting
                .iter()
                .any(|(attempts, why)| *attempts == 1 && why.is_some()),
            "the failed attempt is recorded: {waiting:?}"
        );

        cluster.broker_up(-1).expect("up");
        // Each failed run waits for its messages to time out (1 s): no sleep needed.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut published = 0;
        loop {
            match relay.publish_pending(&mut conn).await {
                Ok(n) => {
                    published += n;
                    break;
                }
                Err(RelayError::Delivery { published: n, .. }) => {
                    published += n;
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the relay did not catch up once the broker was back"
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(published, 5);
        assert!(unpublished(&mut conn).await.is_empty());

        let got = consume(&brokers, 6).await;
        let ids: Vec<_> = got.iter().skip(1).map(|(_, _, e)| e.id).collect();
        let expected: Vec<_> = sent.iter().map(|e| e.id).collect();
        assert_eq!(ids, expected, "every event, once, in order");
    }
}

// --- The consumer loop stopping while the broker is down (librdkafka's mock cluster).

mod consumer_shutdown {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use events::{ConsumerSettings, EventEnvelope, Handler, HandlerError, Shutdown, Topic};
    use futures_util::future::BoxFuture;
    use testkit::TestKafka;

    struct Count(Arc<AtomicUsize>);

    impl Handler for Count {
        fn name(&self) -> &str {
            "count"
        }

        fn handle<'a>(
            &'a self,
            events: &'a [EventEnvelope],
        ) -> BoxFuture<'a, Result<(), HandlerError>> {
            self.0.fetch_add(events.len(), Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
    }

    /// A broker with one event, and a runtime running a consumer loop that has handled
    /// it (so it is in its group with the partition assigned).
    fn consuming(
        shutdown: &Shutdown,
    ) -> (
        TestKafka,
        tokio::runtime::Runtime,
        tokio::task::JoinHandle<Result<(), events::consumer::ConsumerError>>,
    ) {
        let topic = Topic::TenantCreated;
        let kafka = TestKafka::start(&[topic.as_str()], 1).expect("mock cluster");
        let event = EventEnvelope::new(topic, None, None, serde_json::json!({})).expect("event");
        kafka
            .produce(
                topic.as_str(),
                "k",
                &serde_json::to_vec(&event).expect("JSON"),
            )
            .expect("produce");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let handled = Arc::new(AtomicUsize::new(0));
        let mut settings = ConsumerSettings::new(kafka.brokers(), "shutdown-test", vec![topic]);
        settings.send_timeout = Duration::from_secs(2);
        // Closed in place, a consumer whose broker is down waited about this long on
        // the mock cluster, or for minutes: far longer than the bounds below.
        settings.session_timeout = Duration::from_secs(45);
        let task = runtime.spawn(events::consumer::run(
            settings,
            Count(handled.clone()),
            shutdown.clone(),
        ));
        runtime.block_on(async {
            testkit::wait_until(Duration::from_secs(30), || async {
                handled.load(Ordering::SeqCst) == 1
            })
            .await
            .expect("the event handled");
        });
        (kafka, runtime, task)
    }

    #[test]
    fn a_consumer_stopped_during_a_broker_outage_returns_within_its_bound() {
        let shutdown = Shutdown::new();
        let (kafka, runtime, task) = consuming(&shutdown);
        kafka.set_up(false).expect("broker down");
        shutdown.trigger();
        // send_timeout (2 s) bounds the final commit and the group's leaving.
        let stopped =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(15), task).await });
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "the loop did not stop: {stopped:?}"
        );
        drop(runtime);
    }

    #[test]
    fn a_runtime_dropped_during_a_broker_outage_is_not_held_by_its_consumer() {
        let shutdown = Shutdown::new();
        let (kafka, runtime, _task) = consuming(&shutdown);
        kafka.set_up(false).expect("broker down");
        // Dropping the runtime drops the loop's future, and the consumer with it.
        let (dropped, done) = mpsc::channel();
        std::thread::spawn(move || {
            drop(runtime);
            let _ = dropped.send(());
        });
        done.recv_timeout(Duration::from_secs(15))
            .expect("the runtime was held by a consumer closing against a dead broker");
    }
}
