//! Revocation and rate limits on a real Redis (`TEST_REDIS_URL`, else the machine's),
//! each test under its own key prefix.

use std::time::Duration;

use cache::{Keys, RateDecision, RateLimit, RateLimiter, Revocations, TokenRef};

fn redis() -> (cache::Redis, Keys) {
    let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis = cache::connect(&url, Duration::from_secs(2)).expect("redis url");
    let prefix = format!("test:cache:{}:", uuid::Uuid::new_v4());
    (redis, Keys::new(prefix))
}

fn token<'a>(user: &'a str, family: Option<&'a str>, issued_at: i64) -> TokenRef<'a> {
    TokenRef {
        jti: "some-jti",
        family,
        user,
        issued_at,
    }
}

#[tokio::test]
async fn a_users_cut_off_refuses_tokens_issued_before_it_and_its_sessions_within_its_second() {
    let (redis, keys) = redis();
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

#[tokio::test]
async fn a_limit_allows_its_count_per_window_then_says_when_to_retry() {
    let (redis, keys) = redis();
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

#[tokio::test]
async fn a_broadcast_subscription_outlives_its_keepalive_pings() {
    let (redis, keys) = redis();
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
        assert_eq!(
            broadcast.publish(&n.to_string()).await.expect("publish"),
            1,
            "message {n}"
        );
    }
    for n in 0..10 {
        let next = tokio::time::timeout(Duration::from_secs(5), hearing.recv()).await;
        assert_eq!(next, Ok(Some(cache::Heard::Message(n.to_string()))));
    }
}
