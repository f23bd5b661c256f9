//! Prometheus metrics of the event pipeline, registered once per process in the
//! default registry (which every service's `/metrics` serves next to its own):
//!
//! - `events_handled_total{consumer}`: events a consumer applied;
//! - `events_failed_total{consumer}`: failed handling attempts (each retry counts);
//! - `events_dead_lettered_total{consumer,topic}`: events given up and sent to the
//!   topic's `.dlq`;
//! - `events_outbox_backlog{service}` and `events_outbox_oldest_age_seconds{service}`:
//!   unpublished outbox rows of a producing service and the age of the oldest, as its
//!   relay last saw them (every sweep, `OUTBOX_SWEEP_SECS`, and after each publication);
//! - `kafka_consumer_lag{group,topic,partition}`: messages not yet committed by a
//!   consumer group, sampled by the event-worker.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

fn register<C: prometheus::core::Collector + Clone + 'static>(collector: C) -> C {
    // A name registered twice in one process is a programming error caught by the
    // tests; the metric still counts, unexported.
    if let Err(e) = prometheus::register(Box::new(collector.clone())) {
        tracing::error!(error = %e, "metric not registered");
    }
    collector
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric"))
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric"))
}

pub(crate) static HANDLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "events_handled_total",
        "Events a consumer applied",
        &["consumer"],
    )
});

pub(crate) static FAILED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "events_failed_total",
        "Failed attempts at handling events (each retry counts)",
        &["consumer"],
    )
});

pub(crate) static DEAD_LETTERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "events_dead_lettered_total",
        "Events given up and sent to the dead-letter topic",
        &["consumer", "topic"],
    )
});

pub(crate) static OUTBOX_BACKLOG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "events_outbox_backlog",
        "Unpublished outbox rows of a producing service",
        &["service"],
    )
});

pub(crate) static OUTBOX_OLDEST_AGE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "events_outbox_oldest_age_seconds",
        "Age of the oldest unpublished outbox row of a producing service (0: none)",
        &["service"],
    )
});

/// `kafka_consumer_lag{group,topic,partition}`.
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "kafka_consumer_lag",
        "Messages of a partition not yet committed by a consumer group",
        &["group", "topic", "partition"],
    )
});
