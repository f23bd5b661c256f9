//! Cross-service end-to-end tests: services started in-process on real PostgreSQL and
//! Redis, talking to each other over HTTP. One test binary (`e2e`), a module per area.

mod account;
mod auth;
mod browser;
mod budget;
mod contract;
mod documents;
mod edge;
mod events;
mod faults;
mod gateway;
mod invitations;
mod platform;
mod servers;
mod sso;
mod tenants;
mod webhooks;
