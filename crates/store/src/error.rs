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
    /// True when the error is a transient connectivity problem worth retrying.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}
