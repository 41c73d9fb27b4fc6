//! Storage errors. MySQL reports unique violations by error code (1062), not by constraint name through
//! sqlx, so [`StoreError::Conflict`] carries the key name parsed from the server's message.

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A unique key was violated; the field is the key's name (e.g. `uq_users_email`).
    #[error("duplicate value for {0}")]
    Conflict(String),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::RowNotFound = e {
            return StoreError::NotFound;
        }
        if let Some(db) = e.as_database_error() {
            // ER_DUP_ENTRY: "Duplicate entry 'x' for key 'uq_users_email'" (MySQL 8 prefixes the table).
            if db.code().as_deref() == Some("23000") && db.message().contains("Duplicate entry") {
                let key = db
                    .message()
                    .rsplit("for key '")
                    .next()
                    .map(|k| {
                        k.trim_end_matches('\'')
                            .rsplit('.')
                            .next()
                            .unwrap_or(k)
                            .to_owned()
                    })
                    .unwrap_or_default();
                return StoreError::Conflict(key);
            }
        }
        StoreError::Database(e)
    }
}

impl StoreError {
    /// True when the error is transient — connectivity, or a deadlock / lock wait timeout that a retry
    /// resolves — so an API answers 503 (retry) rather than 500.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            // ER_LOCK_DEADLOCK 1213, ER_LOCK_WAIT_TIMEOUT 1205.
            StoreError::Database(e) => e
                .as_database_error()
                .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
                .is_some_and(|m| matches!(m.number(), 1205 | 1213)),
            _ => false,
        }
    }
}
