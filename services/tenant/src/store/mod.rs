//! The SQL of the tables the tenant service alone owns and the other services never
//! read: invitations (`tenant_invitations`). `tenants` and memberships stay in
//! `main-db` for now (their queries are next to move).

pub mod invitations;
