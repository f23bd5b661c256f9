//! Cross-service end-to-end tests (in `tests/`). The gateway-level suite arrives with
//! the platform issue; today they start every service together, as the local runner
//! does, against one database and Redis.
