//! The state of the event-worker's API: the main database (the audit log and the
//! webhook endpoints), whether private webhook targets may be registered, and the
//! keyring that seals webhook signing secrets at rest. The consumers get what each
//! needs from `consumers.rs`.

use std::sync::Arc;

use http_kit::ApiError;
use main_db::{DbConnection, DbPool};

pub struct App {
    pub db: DbPool,
    /// Whether `http://` and private targets may be registered (development and tests).
    pub allow_private_targets: bool,
    /// Seals webhook signing secrets at rest.
    pub keyring: Arc<secrets::Keyring>,
}

impl App {
    pub async fn conn(&self) -> Result<DbConnection, ApiError> {
        Ok(self.db.get().await?)
    }
}
