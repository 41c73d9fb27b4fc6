//! The shared state of the API: cheap to clone (every field is a handle around an `Arc`).

use chat_auth::{PasswordHasher, TokenKeys};
use chat_bus::Bus;
use chat_config::Config;
use chat_realtime::{Control, Realtime};
use chat_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a password check waits for a hashing slot before the request is refused with 503.
const HASH_SLOT_WAIT: Duration = Duration::from_secs(5);

/// Every hashing slot stayed busy for [`HASH_SLOT_WAIT`]: the API is saturated with password work.
#[derive(Debug, thiserror::Error)]
#[error("password hashing capacity exhausted")]
pub struct HashingBusy;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub bus: Bus,
    /// The room path shared with the gateway: sending, editing, deleting, receipts, read-your-writes
    /// history, control messages.
    pub rt: Realtime,
    pub tokens: TokenKeys,
    pub hasher: Arc<PasswordHasher>,
    /// Caps concurrent argon2 runs (each allocates 19 MiB): without it a burst of logins could exhaust
    /// the process's memory; with it, hashing memory is bounded by slots × 19 MiB.
    pub hash_slots: Arc<Semaphore>,
    /// Request counts and latencies by route, dependency errors (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// Tells every gateway about a membership or token change, so live sockets follow at once. MySQL
    /// is the truth and the gateways' caches expire anyway, so a failure is logged and the request it
    /// belongs to still succeeds.
    pub async fn announce(&self, c: Control) {
        if let Err(e) = self.rt.publish_control(&c).await {
            tracing::warn!(error = ?e, control = ?c, "control message not published");
        }
    }

    /// Hashes a password on the blocking pool (argon2 takes tens of milliseconds of CPU on purpose).
    ///
    /// # Errors
    /// [`HashingBusy`] when no hashing slot frees up in time; argon2 failures.
    pub async fn hash_password(&self, password: String) -> anyhow::Result<String> {
        let _slot = self.hash_slot().await?;
        let hasher = self.hasher.clone();
        Ok(tokio::task::spawn_blocking(move || hasher.hash(&password)).await??)
    }

    /// Verifies a password on the blocking pool; `None` (unknown user) takes as long and fails.
    ///
    /// # Errors
    /// [`HashingBusy`] when no hashing slot frees up in time.
    pub async fn verify_password(
        &self,
        password: String,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let _slot = self.hash_slot().await?;
        let hasher = self.hasher.clone();
        Ok(tokio::task::spawn_blocking(move || hasher.verify(&password, hash.as_deref())).await?)
    }

    async fn hash_slot(&self) -> anyhow::Result<OwnedSemaphorePermit> {
        match tokio::time::timeout(HASH_SLOT_WAIT, self.hash_slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(HashingBusy.into()),
        }
    }
}
