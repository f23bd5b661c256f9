//! The SQL of the tables the tenant service owns: `database_servers`, `tenants`, memberships
//! (`user_tenant_associations`) and invitations (`tenant_invitations`). Other services
//! learn tenants and roles through the internal API (docs/ARCHITECTURE.md), never by
//! reading these tables.
//!
//! Queries are functions that take a connection, so the caller decides the transaction.

pub mod invitations;
pub mod memberships;
pub mod moves;
pub mod servers;
pub mod tenants;
