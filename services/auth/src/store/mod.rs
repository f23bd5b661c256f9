//! The SQL of the tables auth alone owns: sessions (`user_sessions`), their refresh
//! tokens (`refresh_tokens`) and the single-use tokens of emailed links
//! (`user_email_tokens`). `users` stays in `main-db`: the tenant service reads it too.

pub mod email_tokens;
pub mod refresh_tokens;
pub mod sessions;
