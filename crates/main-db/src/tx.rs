//! The one error type of a transaction's work (docs/ARCHITECTURE.md, "Errors"): an
//! answer for the client decided inside the transaction, or a database error, which
//! becomes an answer through `From<diesel::result::Error> for ApiError` once the
//! transaction has rolled back. Nothing is turned into a string on the way.

use events::{EventEnvelope, OutboxError};
use http_kit::ApiError;

/// The error of a transaction's work.
#[derive(Debug)]
pub enum TxError {
    /// What to answer (a 404, a 409 the handler chose, …).
    Api(ApiError),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e)
    }
}

impl From<ApiError> for TxError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<OutboxError> for TxError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Database(e) => Self::Db(e),
            other => Self::Api(ApiError::internal(other)),
        }
    }
}

impl From<TxError> for ApiError {
    fn from(e: TxError) -> Self {
        match e {
            TxError::Api(e) => e,
            TxError::Db(e) => e.into(),
        }
    }
}

/// Writes `event` to the outbox of the database `tx` is a transaction of.
pub async fn enqueue(
    tx: &mut diesel_async::AsyncPgConnection,
    event: &EventEnvelope,
) -> Result<(), TxError> {
    events::enqueue(tx, event).await.map_err(TxError::from)
}
