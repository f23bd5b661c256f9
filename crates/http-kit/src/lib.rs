//! What every service binary shares: settings helpers, tracing and request ids, the
//! error envelope (`ApiError`), JSON/path/query extractors that answer bad input with a
//! 400 naming the field, `/health`, `/ready`, `/metrics`, the OpenAPI route, and the
//! HTTP server wiring around a service's own routes.

pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod extract;
pub mod health;
pub mod identity;
pub mod kafka;
pub mod lifecycle;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod peers;
pub mod request_id;
pub mod server;
pub mod success;
pub mod telemetry;
pub mod time;
pub mod vault_env;

pub use client::{ClientIp, UserAgent};
pub use config::{CommonSettings, ConfigError, ConfigErrors, ConfigReader, EnvSource, Secret};
pub use error::{ApiError, ErrorBody, FieldErrors};
pub use extract::{Json, Query};
pub use health::{Readiness, ReadinessCheck};
pub use lifecycle::{Background, Running};
pub use pagination::Page;
pub use peers::Peers;
pub use request_id::RequestId;
pub use server::{ServiceHttp, ServiceInfo};
pub use success::success;
