//! The `refresh_tokens` table: rotation on every use, family revocation on reuse.

use crate::{Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// (user_id, family_id, expires_at, used_at, revoked_at)
type TokenRow = (
    Uuid,
    Uuid,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// The outcome of presenting a refresh token.
#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The token was valid: it is now used up, and the new one (same family) is stored.
    Rotated { user_id: Uuid, family_id: Uuid },
    /// No such token, or it expired.
    Invalid,
    /// The token had already been used or revoked: its whole family is now revoked.
    Reused { user_id: Uuid, family_id: Uuid },
}

impl Store {
    /// Stores a new refresh token (the first of a family when `family_id` is new).
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_refresh_token(
        &self,
        user_id: Uuid,
        family_id: Uuid,
        hash: &[u8; 32],
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        insert_token(&self.pool, user_id, family_id, hash, expires_at).await
    }

    /// Uses the token with hash `old` and, if valid, stores `new` in its family — atomically, so two
    /// concurrent uses of one token cannot both succeed.
    ///
    /// # Errors
    /// Database errors.
    pub async fn rotate_refresh_token(
        &self,
        old: &[u8; 32],
        new: &[u8; 32],
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Rotation> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT user_id, family_id, expires_at, used_at, revoked_at FROM refresh_tokens \
             WHERE token_hash = ? FOR UPDATE",
        )
        .bind(&old[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, family_id, expires_at, used_at, revoked_at)) = row else {
            return Ok(Rotation::Invalid);
        };
        if used_at.is_some() || revoked_at.is_some() {
            sqlx::query("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(family_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused { user_id, family_id });
        }
        if expires_at <= now {
            return Ok(Rotation::Invalid);
        }
        sqlx::query("UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ?")
            .bind(now)
            .bind(&old[..])
            .execute(&mut *tx)
            .await?;
        insert_token(&mut *tx, user_id, family_id, new, new_expires_at).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated { user_id, family_id })
    }

    /// Revokes the family of the token with hash `hash`, if it belongs to `user_id`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the token is unknown or someone else's.
    pub async fn revoke_refresh_family(&self, user_id: Uuid, hash: &[u8; 32]) -> StoreResult<()> {
        let res = sqlx::query(
            "UPDATE refresh_tokens t JOIN refresh_tokens f ON f.family_id = t.family_id \
             SET f.revoked_at = COALESCE(f.revoked_at, ?) WHERE t.token_hash = ? AND t.user_id = ?",
        )
        .bind(Utc::now())
        .bind(&hash[..])
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if res.rows_affected() == 0 {
            // Either unknown, or every token of the family was already revoked: both end the session.
            let known: Option<(Uuid,)> = sqlx::query_as(
                "SELECT user_id FROM refresh_tokens WHERE token_hash = ? AND user_id = ?",
            )
            .bind(&hash[..])
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
            if known.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        Ok(())
    }

    /// Revokes every refresh token of a user (password change).
    ///
    /// # Errors
    /// Database errors.
    pub async fn revoke_all_refresh_tokens(&self, user_id: Uuid) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(Utc::now())
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn insert_token<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::MySql>,
    user_id: Uuid,
    family_id: Uuid,
    hash: &[u8; 32],
    expires_at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(family_id)
    .bind(&hash[..])
    .bind(Utc::now())
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}
