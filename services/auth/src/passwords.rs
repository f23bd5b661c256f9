//! bcrypt, always on the blocking pool. An unknown email is checked against a dummy hash
//! of the same cost, so it takes as long as a wrong password.

use std::sync::Arc;

use http_kit::ApiError;

/// Longest password bcrypt hashes without silently truncating.
pub const MAX_PASSWORD_BYTES: usize = 72;

#[derive(Clone)]
pub struct Passwords {
    cost: u32,
    /// Made on first use, on the blocking pool.
    dummy_hash: Arc<tokio::sync::OnceCell<String>>,
}

impl Passwords {
    pub fn new(cost: u32) -> Self {
        Self {
            cost,
            dummy_hash: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    async fn dummy(&self) -> Result<String, ApiError> {
        self.dummy_hash
            .get_or_try_init(|| self.hash("not-a-real-password-0".to_owned()))
            .await
            .cloned()
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let cost = self.cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::internal)
    }

    /// Whether `password` matches `hash`; with no hash (unknown user, SSO-only user)
    /// the dummy is checked and the answer is false.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        let known = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => self.dummy().await?,
        };
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .map_err(ApiError::internal)?
            .unwrap_or(false);
        Ok(known && matches)
    }
}
