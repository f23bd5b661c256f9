//! Domain events: the topic catalog, the envelope of docs/ARCHITECTURE.md, and the
//! transactional outbox that records an event in the same transaction as the change it
//! reports (main database or a tenant database), and the relay that publishes
//! committed outbox rows to Kafka; the consumer loop of the event consumers.

pub mod account;
pub mod closing;
pub mod connection;
pub mod consumer;
mod envelope;
pub mod invitation;
pub mod metrics;
pub mod outbox;
pub mod payloads;
pub mod relay;
pub mod runner;
pub mod schema;
mod topic;
pub mod topics;

pub use account::AccountEvent;
pub use closing::ClosedOffExecutor;
pub use connection::Connection;
pub use consumer::{claim, ConsumerSettings, Handler, HandlerError, Shutdown};
pub use envelope::EventEnvelope;
pub use invitation::InvitationEvent;
pub use outbox::{enqueue, transfer, OutboxError};
pub use payloads::{
    AddedBy, AuditRecord, DecodeError, DocumentDeleted, DocumentUploaded, Event, FileProcess,
    MembershipAction, MembershipChanged, RegistrationSource, TenantCreated, TenantDeleted,
    UserRegistered,
};
pub use relay::{KafkaSettings, Relay, RelayError};
pub use runner::{
    spawn_relay, start_relay, OutboxConnection, OutboxDatabases, OutboxDb, RelayHandle,
    RelaySchedule,
};
pub use topic::Topic;
pub use topics::{TopicPlan, TopicState, Topics};
