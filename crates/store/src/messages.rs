//! The `messages` table: history pages by `seq` cursor, and idempotent multi-row inserts.
//!
//! The history queries name their index: without `FORCE INDEX`, MariaDB 10.11 estimates a deep page
//! (`seq < X` in the middle of a 1M-message room) as half the table and picks a `ref` scan on `room_id`
//! alone, walking down from the newest row — 1.2 s instead of well under a millisecond
//! (see docs/BENCHMARKS.md).
//!
//! History is always returned in ascending `seq` order whatever the direction of the page, so a caller
//! can merge it with messages that are accepted but not yet persisted (the Redis recent log) by `seq`.

use crate::{Message, Store, StoreResult};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Which part of a room's history to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only messages with `seq < before`.
    pub before: Option<i64>,
    /// Only messages with `seq > after`.
    pub after: Option<i64>,
    /// At most this many (the caller bounds it).
    pub limit: i64,
}

/// A page of history, ascending by `seq`. `has_more` says whether more exist past the page in the
/// direction read (older for `before`/latest pages, newer for `after` pages).
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// A message to insert (the worker's batches; tests seeding history).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    pub kind: String,
    pub content: String,
    pub client_msg_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Reads one page of a room's history.
    ///
    /// With `after` the page starts just after it and goes forward; otherwise it ends just before
    /// `before` (or at the newest message) and goes back.
    ///
    /// # Errors
    /// Database errors.
    pub async fn history(&self, room: Uuid, q: HistoryQuery) -> StoreResult<HistoryPage> {
        let fetch = q.limit + 1;
        let mut rows: Vec<Message> = match (q.after, q.before) {
            (Some(after), before) => {
                sqlx::query_as(
                    "SELECT id, room_id, seq, sender_id, type, content, client_msg_id, created_at, edited_at, \
                     deleted_at FROM messages FORCE INDEX (uq_messages_room_seq) WHERE room_id = ? AND seq > ? AND seq < ? \
                     ORDER BY seq ASC LIMIT ?",
                )
                .bind(room)
                .bind(after)
                .bind(before.unwrap_or(i64::MAX))
                .bind(fetch)
                .fetch_all(&self.pool)
                .await?
            }
            (None, before) => {
                sqlx::query_as(
                    "SELECT id, room_id, seq, sender_id, type, content, client_msg_id, created_at, edited_at, \
                     deleted_at FROM messages FORCE INDEX (uq_messages_room_seq) WHERE room_id = ? AND seq < ? \
                     ORDER BY seq DESC LIMIT ?",
                )
                .bind(room)
                .bind(before.unwrap_or(i64::MAX))
                .bind(fetch)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let has_more = rows.len() as i64 > q.limit;
        rows.truncate(usize::try_from(q.limit).unwrap_or(0));
        if q.after.is_none() {
            rows.reverse();
        }
        Ok(HistoryPage {
            messages: rows,
            has_more,
        })
    }

    /// One message by id.
    ///
    /// # Errors
    /// Database errors; an unknown id is `Ok(None)`.
    pub async fn message(&self, id: Uuid) -> StoreResult<Option<Message>> {
        Ok(sqlx::query_as(
            "SELECT id, room_id, seq, sender_id, type, content, client_msg_id, created_at, edited_at, deleted_at \
             FROM messages WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The highest `seq` stored for `room` (0 for none): where the room's Redis counter starts when
    /// Redis has lost it (a fresh Redis, or history written straight to MySQL).
    ///
    /// # Errors
    /// Database errors.
    pub async fn max_seq(&self, room: Uuid) -> StoreResult<i64> {
        let max: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM messages WHERE room_id = ?")
                .bind(room)
                .fetch_one(&self.pool)
                .await?;
        Ok(max.unwrap_or(0))
    }

    /// Inserts messages (history seeding, tests) through the worker's batch path
    /// ([`Store::apply_batch`]): multi-row statements in one transaction; the same message again is a
    /// no-op, a different message in an occupied `(room_id, seq)` slot is an error. Returns the number of
    /// rows written.
    ///
    /// # Errors
    /// Database errors (e.g. an unknown room or sender, a conflicting message).
    pub async fn insert_messages(&self, msgs: &[NewMessage]) -> StoreResult<u64> {
        let batch = crate::batch::Batch {
            messages: msgs.to_vec(),
            ..Default::default()
        };
        Ok(self.apply_batch(&batch).await?.rows)
    }
}
