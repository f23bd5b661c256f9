//! Tenant databases: one PostgreSQL database per tenant.
//!
//! - [`TenantDatabaseManager`] creates a tenant database from the template database
//!   (`CREATE DATABASE … TEMPLATE`), drops one (terminating its connections), checks
//!   existence and keeps the template at the latest tenant migration.
//! - [`TenantPoolCache`] holds one small pool per tenant database, with a hard bound on
//!   pools and connections, idle eviction, and wait/create/recycle timeouts.
//! - [`migrations`] applies `migrations/tenant` to one tenant, the template, or all
//!   tenants with bounded parallelism, with a read-only dry-run and history.

pub mod documents;
mod error;
mod manager;
pub mod migrations;
mod outbox;
mod pool_cache;
pub mod servers;
#[rustfmt::skip]
pub mod schema;
mod settings;

pub use error::{connection_lost, read_only, TenantDbError};
pub use manager::TenantDatabaseManager;
pub use outbox::{TenantDatabaseList, TenantOutboxes};
pub use pool_cache::{PoolCacheStats, TenantConnection, TenantPoolCache};
pub use servers::{ServerUrls, MAIN_SERVER_ID};
pub use settings::{quote_identifier, TenantDbSettings};
