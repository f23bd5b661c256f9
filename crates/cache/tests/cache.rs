//! Revocation, rate limits, one-time values (SSO state), locks and broadcasts on a real
//! Redis (`TEST_REDIS_URL`, else the machine's), each test under its own key prefix;
//! and each of them again on a Redis Cluster of three primaries the test starts
//! (`testkit::TestRedisCluster`), where keys of one operation live in different slots.

use std::time::Duration;

use cache::{Keys, RateDecision, RateLimit, RateLimiter, Revocations, TokenRef};

fn redis() -> (cache::Redis, Keys) {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    on(&url)
}

fn on(url: &str) -> (cache::Redis, Keys) {
    let redis = cache::connect(url, Duration::from_secs(2)).expect("redis url");
    let prefix = format!("test:cache:{}:", uuid::Uuid::new_v4());
    (redis, Keys::new(prefix))
}

/// Runs `case` on the machine's Redis and on a fresh three-primary cluster.
macro_rules! on_both {
    ($single:ident, $cluster:ident, $case:ident) => {
        #[tokio::test]
        async fn $single() {
            let (redis, keys) = redis();
            $case(redis, keys, false).await;
        }

        #[tokio::test]
        async fn $cluster() {
            let cluster = testkit::TestRedisCluster::start()
                .await
                .expect("a Redis Cluster");
            let (redis, keys) = on(&cluster.url);
            $case(redis, keys, true).await;
        }
    };
}

fn token<'a>(user: &'a str, family: Option<&'a str>, issued_at: i64) -> TokenRef<'a> {
    TokenRef {
        jti: "some-jti",
        family,
        user,
        issued_at,
    }
}

on_both!(
    a_users_cut_off_refuses_tokens_issued_before_it_and_its_sessions_within_its_second,
    on_a_cluster_a_users_cut_off_and_revoked_tokens_and_sessions_are_refused,
    revocation_case
);

async fn revocation_case(redis: cache::Redis, keys: Keys, _cluster: bool) {
    let revocations = Revocations::new(redis, keys, Duration::from_secs(2));
    let ttl = Duration::from_secs(60);
    assert!(!revocations
        .is_revoked(token("u1", Some("f1"), 999))
        .await
        .expect("redis"));
    revocations
        .revoke_user_before("u1", 1000, &["f1"], ttl)
        .await
        .expect("redis");
    // Before the cut-off: refused; from its second on: accepted (a login right after a
    // reset is not refused), unless the session itself was ended.
    assert!(revocations
        .is_revoked(token("u1", None, 999))
        .await
        .expect("redis"));
    assert!(!revocations
        .is_revoked(token("u1", None, 1000))
        .await
        .expect("redis"));
    assert!(!revocations
        .is_revoked(token("u1", Some("f2"), 1001))
        .await
        .expect("redis"));
    assert!(revocations
        .is_revoked(token("u1", Some("f1"), 1000))
        .await
        .expect("redis"));
    // Another user is untouched.
    assert!(!revocations
        .is_revoked(token("u2", Some("f3"), 1))
        .await
        .expect("redis"));
    // One token, and one session.
    revocations.revoke("jti-2", ttl).await.expect("redis");
    let one = TokenRef {
        jti: "jti-2",
        family: None,
        user: "u2",
        issued_at: 1,
    };
    assert!(revocations.is_revoked(one).await.expect("redis"));
    revocations
        .revoke_families(&["f3", "f4"], ttl)
        .await
        .expect("redis");
    assert!(revocations
        .is_revoked(token("u2", Some("f4"), 5))
        .await
        .expect("redis"));
}

on_both!(
    a_limit_allows_its_count_per_window_then_says_when_to_retry,
    on_a_cluster_a_limit_allows_its_count_per_window_then_says_when_to_retry,
    rate_limit_case
);

async fn rate_limit_case(redis: cache::Redis, keys: Keys, _cluster: bool) {
    let limiter = RateLimiter::new(redis, keys, Duration::from_secs(2));
    let limit: RateLimit = "3/1m".parse().expect("limit");
    for _ in 0..3 {
        assert_eq!(
            limiter.check("b1", limit).await.expect("redis"),
            RateDecision::Allowed
        );
    }
    match limiter.check("b1", limit).await.expect("redis") {
        RateDecision::Limited { retry_after } => {
            assert!(
                retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(60)
            );
        }
        other => panic!("not limited: {other:?}"),
    }
    // Buckets are separate.
    assert_eq!(
        limiter.check("b2", limit).await.expect("redis"),
        RateDecision::Allowed
    );
}

on_both!(
    a_broadcast_subscription_outlives_its_keepalive_pings,
    on_a_cluster_a_broadcast_reaches_a_subscriber_of_another_node,
    broadcast_case
);

async fn broadcast_case(redis: cache::Redis, keys: Keys, cluster: bool) {
    let channel = format!("t-{}", uuid::Uuid::new_v4().simple());
    let broadcast =
        cache::Broadcast::new(&redis, &keys, &channel).with_ping_every(Duration::from_millis(20));
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(broadcast.clone().listen(move |h| {
        let _ = heard.send(h);
    }));
    let first = tokio::time::timeout(Duration::from_secs(5), hearing.recv()).await;
    assert_eq!(first, Ok(Some(cache::Heard::Subscribed)));
    // Ten messages over about half a second, some twenty-five pings: each message
    // heard, and the subscription never made again in between.
    let mut ticks = tokio::time::interval(Duration::from_millis(50));
    for n in 0..10 {
        ticks.tick().await;
        let receivers = broadcast.publish(&n.to_string()).await.expect("publish");
        // A cluster node counts only its own subscribers (the message still reaches
        // every node's): the messages heard below are the proof there.
        if !cluster {
            assert_eq!(receivers, 1, "message {n}");
        }
    }
    for n in 0..10 {
        let next = tokio::time::timeout(Duration::from_secs(5), hearing.recv()).await;
        assert_eq!(next, Ok(Some(cache::Heard::Message(n.to_string()))));
    }
}

on_both!(
    a_one_time_value_is_taken_once_and_a_lock_is_held_by_one,
    on_a_cluster_a_one_time_value_is_taken_once_and_a_lock_is_held_by_one,
    one_time_case
);

async fn one_time_case(redis: cache::Redis, keys: Keys, _cluster: bool) {
    let one_time = cache::OneTime::new(redis, keys, Duration::from_secs(2));
    // SSO login state: kept until the callback takes it, once.
    for state in ["s1", "s2", "s3"] {
        assert!(one_time
            .put(
                "sso-state",
                state,
                &format!("value-{state}"),
                Duration::from_secs(60)
            )
            .await
            .expect("put"));
    }
    // The same state again is refused (a replay or a collision).
    assert!(!one_time
        .put("sso-state", "s1", "other", Duration::from_secs(60))
        .await
        .expect("put"));
    assert_eq!(
        one_time.get("sso-state", "s2").await.expect("get"),
        Some("value-s2".to_owned())
    );
    assert_eq!(
        one_time.take("sso-state", "s2").await.expect("take"),
        Some("value-s2".to_owned())
    );
    assert_eq!(one_time.take("sso-state", "s2").await.expect("take"), None);
    assert_eq!(
        one_time.take("sso-state", "s3").await.expect("take"),
        Some("value-s3".to_owned())
    );
    // A lock: one holder; released only by its token; then free again.
    let token = one_time
        .try_lock("refresh-job", Duration::from_secs(30))
        .await
        .expect("lock")
        .expect("free");
    assert_eq!(
        one_time
            .try_lock("refresh-job", Duration::from_secs(30))
            .await
            .expect("lock"),
        None
    );
    assert!(!one_time
        .unlock("refresh-job", "not-the-token")
        .await
        .expect("unlock"));
    assert!(one_time
        .unlock("refresh-job", &token)
        .await
        .expect("unlock"));
    assert!(one_time
        .try_lock("refresh-job", Duration::from_secs(30))
        .await
        .expect("lock")
        .is_some());
}
