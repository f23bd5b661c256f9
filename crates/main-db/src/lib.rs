//! The main database: diesel schema, models and queries, the connection pool, and the
//! embedded migrations of `migrations/main` (applied by the `migrate` subcommand, never
//! at server start).
//!
//! Queries are functions that take a connection, so the caller decides the transaction.

mod migrations;
mod outbox;
mod pool;
#[rustfmt::skip]
pub mod schema;
mod tx;
pub mod users;

pub use migrations::{
    applied_migrations, migrate_command, revert_all_migrations, run_migrations, MIGRATIONS,
};
pub use outbox::{start_relay, MainOutbox};
pub use pool::{
    build_pool, connect, database_checks, ping, probe, service_pool, ConnectionBudget,
    DbConnection, DbError, DbPool, PoolSettings,
};
pub use tx::{enqueue, TxError};
