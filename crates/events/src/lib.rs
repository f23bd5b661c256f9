//! Domain events: the topic catalog, the envelope of ARCHITECTURE.md, and the
//! transactional outbox that records an event in the same transaction as the change it
//! reports (main database or a tenant database), and the relay that publishes
//! committed outbox rows to Kafka. The consumer loop arrives with the event-worker.

mod envelope;
pub mod outbox;
pub mod relay;
mod topic;

pub use envelope::EventEnvelope;
pub use outbox::{enqueue, OutboxError};
pub use relay::{KafkaSettings, Relay, RelayError};
pub use topic::Topic;
