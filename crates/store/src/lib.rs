//! MySQL storage: the connection pool, the embedded migrations and one repository module per table.
//!
//! All SQL of the project lives here, written as static strings with bound parameters (never built from
//! input). Queries are checked at run time by the integration tests against a real MariaDB; the same
//! statements run on MySQL 8. Times are UTC (`DATETIME(3)`, the session time zone is `+00:00`), ids are
//! UUIDv7 in `BINARY(16)`.

pub mod batch;
mod error;
pub mod messages;
pub mod models;
pub mod refresh_tokens;
pub mod rooms;
pub mod users;

pub use error::{StoreError, StoreResult};
pub use models::*;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::MySqlPool;
use std::str::FromStr;
use std::time::Duration;

/// The project's migrations, embedded at compile time from `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// A cheap-to-clone handle to the MySQL pool with the repositories as methods (see the modules).
#[derive(Clone, Debug)]
pub struct Store {
    pool: MySqlPool,
}

impl Store {
    /// Connects a pool to `url`.
    ///
    /// # Errors
    /// An invalid URL or an unreachable server.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = MySqlConnectOptions::from_str(url)?
            .timezone(Some("+00:00".into()))
            .charset("utf8mb4");
        let pool = MySqlPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Applies pending migrations.
    ///
    /// # Errors
    /// A migration that fails or a changed, already-applied migration.
    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// `SELECT 1`, for readiness probes.
    ///
    /// # Errors
    /// The database is unreachable.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
