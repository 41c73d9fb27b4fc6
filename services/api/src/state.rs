//! The shared state of the API: cheap to clone (every field is a handle around an `Arc`).

use chat_auth::{PasswordHasher, TokenKeys};
use chat_bus::Bus;
use chat_config::Config;
use chat_store::Store;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub bus: Bus,
    pub tokens: TokenKeys,
    pub hasher: Arc<PasswordHasher>,
}

impl AppState {
    /// Hashes a password on the blocking pool (argon2 takes tens of milliseconds of CPU on purpose).
    pub async fn hash_password(&self, password: String) -> anyhow::Result<String> {
        let hasher = self.hasher.clone();
        Ok(tokio::task::spawn_blocking(move || hasher.hash(&password)).await??)
    }

    /// Verifies a password on the blocking pool; `None` (unknown user) takes as long and fails.
    pub async fn verify_password(
        &self,
        password: String,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let hasher = self.hasher.clone();
        Ok(tokio::task::spawn_blocking(move || hasher.verify(&password, hash.as_deref())).await?)
    }
}
