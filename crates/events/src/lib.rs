//! Domain events: the topic catalog, the envelope of ARCHITECTURE.md, and the
//! transactional outbox that records an event in the same transaction as the change it
//! reports (main database or a tenant database). The relay to Kafka and the consumer
//! loop arrive with the event-worker.

mod envelope;
pub mod outbox;
mod topic;

pub use envelope::EventEnvelope;
pub use outbox::{enqueue, OutboxError};
pub use topic::Topic;
