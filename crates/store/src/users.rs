//! The `users` table.

use crate::{PublicUser, Store, StoreError, StoreResult, User};
use chrono::Utc;
use uuid::Uuid;

/// The fields of a new account, already validated.
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub full_name: Option<&'a str>,
}

/// Profile fields to change; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProfileUpdate<'a> {
    pub username: Option<&'a str>,
    pub email: Option<&'a str>,
    pub full_name: Option<&'a str>,
    pub password_hash: Option<&'a str>,
}

impl Store {
    /// Creates a user.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] with `uq_users_username` or `uq_users_email` when taken.
    pub async fn create_user(&self, new: NewUser<'_>) -> StoreResult<User> {
        let id = Uuid::now_v7();
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO users (id, username, email, password_hash, full_name, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(new.username)
        .bind(new.email)
        .bind(new.password_hash)
        .bind(new.full_name)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.user_by_id(id).await
    }

    /// # Errors
    /// [`StoreError::NotFound`] when there is no such user.
    pub async fn user_by_id(&self, id: Uuid) -> StoreResult<User> {
        sqlx::query_as::<_, User>(
            "SELECT id, username, email, password_hash, full_name, last_seen, created_at, updated_at \
             FROM users WHERE id = ?",
        )
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Finds a user by e-mail (case-insensitive) or username.
    ///
    /// # Errors
    /// Database errors only; an unknown login is `Ok(None)`.
    pub async fn user_by_login(&self, login: &str) -> StoreResult<Option<User>> {
        Ok(sqlx::query_as::<_, User>(
            "SELECT id, username, email, password_hash, full_name, last_seen, created_at, updated_at \
             FROM users WHERE email = ? OR username = ? LIMIT 1",
        )
            .bind(login.trim().to_lowercase())
            .bind(login.trim())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// # Errors
    /// [`StoreError::NotFound`] when there is no such user.
    pub async fn public_user(&self, id: Uuid) -> StoreResult<PublicUser> {
        sqlx::query_as::<_, PublicUser>(
            "SELECT id, username, full_name, last_seen FROM users WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Updates the given profile fields.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the new username or e-mail is taken; `NotFound` for no such user.
    pub async fn update_user(&self, id: Uuid, upd: ProfileUpdate<'_>) -> StoreResult<User> {
        let res = sqlx::query(
            "UPDATE users SET username = COALESCE(?, username), email = COALESCE(?, email), \
             full_name = COALESCE(?, full_name), password_hash = COALESCE(?, password_hash), updated_at = ? \
             WHERE id = ?",
        )
        .bind(upd.username)
        .bind(upd.email)
        .bind(upd.full_name)
        .bind(upd.password_hash)
        .bind(Utc::now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.user_by_id(id).await
    }
}
