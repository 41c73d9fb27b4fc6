//! The persistence worker's batch writes: everything one batch of stream entries changes, applied with
//! one multi-row statement per kind of change, in one transaction.
//!
//! Every statement is idempotent and order-insensitive where it can be, so replaying a batch (after a
//! crash between commit and `XACK`) or applying two replicas' batches in either order is harmless:
//!
//! - new messages: `INSERT … ON DUPLICATE KEY UPDATE`; the same message again (same id) changes nothing.
//!   A message whose `clientMsgId` another message already holds (a retry after the gateway's dedupe
//!   window) is stored without it. A *different* message that collides on `(room_id, seq)`
//!   makes the statement fail (it sets the NOT NULL `seq` to NULL, which strict mode refuses — the
//!   transaction turns strict mode on), so the worker can isolate and dead-letter it instead of losing
//!   it silently. (`INSERT IGNORE` would also silently drop rows that break a foreign key.)
//! - edits: applied only to a message not deleted and not already edited later (`edited_at`);
//! - deletes: content cleared, the first `deleted_at` kept;
//! - cursors and `last_seen`: `GREATEST`, never backwards.
//!
//! The caller collapses several changes to one row into one (last edit, first delete, highest cursor) and
//! orders them as the stream does; see `services/worker`.

use crate::messages::NewMessage;
use crate::{Store, StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::{MySql, QueryBuilder};
use std::collections::HashSet;
use uuid::Uuid;

/// New content for a message.
#[derive(Debug, Clone)]
pub struct Edit {
    pub id: Uuid,
    pub room_id: Uuid,
    pub content: String,
    pub edited_at: DateTime<Utc>,
}

/// A soft delete.
#[derive(Debug, Clone)]
pub struct Delete {
    pub id: Uuid,
    pub room_id: Uuid,
    pub deleted_at: DateTime<Utc>,
}

/// A member's cursors; 0 leaves a cursor as it is. A read cursor moves the delivered one too.
#[derive(Debug, Clone)]
pub struct CursorUpdate {
    pub room_id: Uuid,
    pub user_id: Uuid,
    pub read_seq: i64,
    pub delivered_seq: i64,
}

/// Everything one batch changes.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub messages: Vec<NewMessage>,
    pub edits: Vec<Edit>,
    pub deletes: Vec<Delete>,
    pub cursors: Vec<CursorUpdate>,
    /// (user, seen at)
    pub last_seen: Vec<(Uuid, DateTime<Utc>)>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.edits.is_empty()
            && self.deletes.is_empty()
            && self.cursors.is_empty()
            && self.last_seen.is_empty()
    }
}

/// What a committed batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows the statements touched (as MySQL counts them).
    pub rows: u64,
    /// Messages that edits or deletes of the batch named but that do not exist (in that room): their
    /// changes did nothing.
    pub missing_targets: HashSet<Uuid>,
}

/// Rows per statement: well under the 65,535 placeholders MySQL allows.
const CHUNK: usize = 2_000;

/// Text bytes per statement carrying message content. A statement must fit `max_allowed_packet`
/// (16 MiB on MariaDB, 64 MiB on MySQL 8 by default); 2,000 messages of 4,000 four-byte characters would
/// be 32 MB, fail every time and stall the shard, so content-carrying statements are also split by size.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// Splits `items` into runs of at most [`CHUNK`] items and about [`CHUNK_BYTES`] bytes (a single item
/// larger than that gets a run of its own).
fn sized_chunks<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let n = size(item) + 64; // the row's other columns and placeholders
        if i > start && (i - start >= CHUNK || bytes + n > CHUNK_BYTES) {
            out.push(&items[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += n;
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// The batch's messages, with the `client_msg_id` dropped from any whose `(room, sender, clientMsgId)`
/// already belongs to another message (in MySQL, or earlier in the batch). That happens when a client
/// retries after the gateway's dedupe entry expired (24 h): the retry was accepted and acked as a new
/// message, so it must be stored, not refused by the unique key and dead-lettered. The column compares
/// case-insensitively (the table's collation) while the gateway's dedupe does not, so ids differing
/// only by case count as the same here. One query per batch.
async fn without_stale_client_ids(
    tx: &mut sqlx::Transaction<'_, MySql>,
    messages: &[NewMessage],
) -> StoreResult<Vec<NewMessage>> {
    let keyed: Vec<&NewMessage> = messages
        .iter()
        .filter(|m| m.client_msg_id.is_some())
        .collect();
    if keyed.is_empty() {
        return Ok(messages.to_vec());
    }
    let mut taken: std::collections::HashMap<(Uuid, Uuid, String), Uuid> =
        std::collections::HashMap::new();
    for chunk in keyed.chunks(CHUNK / 3) {
        let mut qb = QueryBuilder::<MySql>::new(
            "SELECT room_id, sender_id, client_msg_id, id FROM messages \
             WHERE (room_id, sender_id, client_msg_id) IN ",
        );
        qb.push_tuples(chunk, |mut t, m| {
            t.push_bind(m.room_id)
                .push_bind(m.sender_id)
                .push_bind(m.client_msg_id.as_deref());
        });
        let rows: Vec<(Uuid, Uuid, String, Uuid)> =
            qb.build_query_as().fetch_all(&mut **tx).await?;
        for (room, sender, cmid, id) in rows {
            taken.insert((room, sender, cmid.to_ascii_lowercase()), id);
        }
    }
    Ok(messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(cmid) = m.client_msg_id.as_deref().map(str::to_ascii_lowercase) {
                let owner = taken.entry((m.room_id, m.sender_id, cmid)).or_insert(m.id);
                if *owner != m.id {
                    m.client_msg_id = None;
                }
            }
            m
        })
        .collect())
}

impl Store {
    /// Applies a batch in one transaction: messages, then edits, then deletes, then cursors, then
    /// `last_seen`.
    ///
    /// # Errors
    /// Database errors; nothing of the batch is applied then. [`is_entry_error`] tells a connectivity
    /// problem (retry the same batch later) from a batch that can never succeed (isolate the culprit).
    pub async fn apply_batch(&self, b: &Batch) -> StoreResult<BatchOutcome> {
        let mut out = BatchOutcome::default();
        if b.is_empty() {
            return Ok(out);
        }
        let mut tx = self.pool.begin().await?;
        // The conflict detection below relies on strict mode; servers default to it, make sure.
        sqlx::query("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',STRICT_ALL_TABLES')")
            .execute(&mut *tx)
            .await?;

        let messages = without_stale_client_ids(&mut tx, &b.messages).await?;
        for chunk in sized_chunks(&messages, |m| m.content.len()) {
            let mut qb = QueryBuilder::<MySql>::new(
                "INSERT INTO messages (id, room_id, seq, sender_id, type, content, client_msg_id, created_at) ",
            );
            qb.push_values(chunk, |mut r, m| {
                r.push_bind(m.id)
                    .push_bind(m.room_id)
                    .push_bind(m.seq)
                    .push_bind(m.sender_id)
                    .push_bind(&m.kind)
                    .push_bind(&m.content)
                    .push_bind(&m.client_msg_id)
                    .push_bind(m.created_at);
            });
            // Same id: a replay, nothing changes. Another id in the same slot: fail loudly (NULL into a
            // NOT NULL column under strict mode).
            qb.push(" ON DUPLICATE KEY UPDATE seq = IF(id = VALUES(id), seq, NULL)");
            out.rows += qb.build().execute(&mut *tx).await?.rows_affected();
        }

        for chunk in sized_chunks(&b.edits, |e| e.content.len()) {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE messages m JOIN (");
            for (i, e) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push("SELECT ")
                    .push_bind(e.id)
                    .push(" AS id, ")
                    .push_bind(e.room_id)
                    .push(" AS room_id, ")
                    .push_bind(&e.content)
                    .push(" AS content, ")
                    .push_bind(e.edited_at)
                    .push(" AS at");
            }
            qb.push(
                ") e ON m.id = e.id AND m.room_id = e.room_id \
                 SET m.content = e.content, m.edited_at = e.at \
                 WHERE m.deleted_at IS NULL AND (m.edited_at IS NULL OR m.edited_at <= e.at)",
            );
            out.rows += qb.build().execute(&mut *tx).await?.rows_affected();
        }

        for chunk in b.deletes.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE messages m JOIN (");
            for (i, d) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push("SELECT ")
                    .push_bind(d.id)
                    .push(" AS id, ")
                    .push_bind(d.room_id)
                    .push(" AS room_id, ")
                    .push_bind(d.deleted_at)
                    .push(" AS at");
            }
            qb.push(
                ") d ON m.id = d.id AND m.room_id = d.room_id \
                 SET m.content = NULL, m.deleted_at = COALESCE(m.deleted_at, d.at)",
            );
            out.rows += qb.build().execute(&mut *tx).await?.rows_affected();
        }

        let targets: Vec<(Uuid, Uuid)> = b
            .edits
            .iter()
            .map(|e| (e.id, e.room_id))
            .chain(b.deletes.iter().map(|d| (d.id, d.room_id)))
            .collect();
        for chunk in targets.chunks(CHUNK) {
            let mut qb =
                QueryBuilder::<MySql>::new("SELECT id, room_id FROM messages WHERE id IN (");
            let mut ids = qb.separated(", ");
            for (id, _) in chunk {
                ids.push_bind(*id);
            }
            qb.push(")");
            let found: HashSet<(Uuid, Uuid)> = qb
                .build_query_as::<(Uuid, Uuid)>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
            out.missing_targets.extend(
                chunk
                    .iter()
                    .filter(|t| !found.contains(t))
                    .map(|(id, _)| *id),
            );
        }

        for chunk in b.cursors.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE room_members m JOIN (");
            for (i, c) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push("SELECT ")
                    .push_bind(c.room_id)
                    .push(" AS room_id, ")
                    .push_bind(c.user_id)
                    .push(" AS user_id, ")
                    .push_bind(c.read_seq)
                    .push(" AS r, ")
                    .push_bind(c.delivered_seq)
                    .push(" AS d");
            }
            qb.push(
                ") c ON m.room_id = c.room_id AND m.user_id = c.user_id \
                 SET m.read_seq = GREATEST(m.read_seq, c.r), \
                 m.delivered_seq = GREATEST(m.delivered_seq, c.d, c.r)",
            );
            out.rows += qb.build().execute(&mut *tx).await?.rows_affected();
        }

        for chunk in b.last_seen.chunks(CHUNK) {
            let mut qb = QueryBuilder::<MySql>::new("UPDATE users u JOIN (");
            for (i, (user, at)) in chunk.iter().enumerate() {
                if i > 0 {
                    qb.push(" UNION ALL ");
                }
                qb.push("SELECT ")
                    .push_bind(*user)
                    .push(" AS id, ")
                    .push_bind(*at)
                    .push(" AS at");
            }
            qb.push(
                ") s ON u.id = s.id SET u.last_seen = GREATEST(COALESCE(u.last_seen, s.at), s.at)",
            );
            out.rows += qb.build().execute(&mut *tx).await?.rows_affected();
        }

        tx.commit().await?;
        Ok(out)
    }

    /// The naive path the benchmark compares against: one autocommitted `INSERT` per message.
    ///
    /// # Errors
    /// Database errors.
    pub async fn insert_message_naive(&self, m: &NewMessage) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO messages (id, room_id, seq, sender_id, type, content, client_msg_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.id)
        .bind(m.room_id)
        .bind(m.seq)
        .bind(m.sender_id)
        .bind(&m.kind)
        .bind(&m.content)
        .bind(&m.client_msg_id)
        .bind(m.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Whether a failed batch was refused because of what one of its entries holds — a broken foreign key,
/// a conflicting unique key, a value the column refuses — so that splitting the batch finds the entry.
///
/// Everything else is worth retrying as it is: connectivity, pool timeouts, deadlocks, lock waits, a
/// read-only server during a fail-over, but also a missing table or privilege after a bad deploy. A
/// broken environment thus stalls the stream (visibly: retries and lag grow) instead of sending every
/// entry to the dead-letter stream.
pub fn is_entry_error(e: &StoreError) -> bool {
    match e {
        StoreError::Conflict(_) => true,
        StoreError::Database(sqlx::Error::Database(db)) => {
            let number = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number());
            matches!(
                number,
                // NULL into NOT NULL; duplicate key; foreign keys (parent missing or child exists)
                Some(1048 | 1062 | 1169 | 1216 | 1217 | 1451 | 1452)
                // out of range, truncated, wrong value, bad string, too long, out of range (BIGINT)
                | Some(1264 | 1265 | 1292 | 1300 | 1366 | 1406 | 1690)
                // CHECK constraint (MySQL, MariaDB)
                | Some(3819 | 4025)
            )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_split_by_rows_and_by_bytes() {
        let small = vec![10usize; 4_500];
        let runs = sized_chunks(&small, |n| *n);
        assert_eq!(
            runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [2_000, 2_000, 500]
        );
        // 16,000-byte contents (4,000 four-byte characters): about 260 per 4 MiB statement.
        let big = vec![16_000usize; 2_000];
        let runs = sized_chunks(&big, |n| *n);
        assert!(runs.len() >= 7, "{}", runs.len());
        assert!(runs
            .iter()
            .all(|r| r.iter().map(|n| n + 64).sum::<usize>() <= CHUNK_BYTES));
        assert_eq!(runs.iter().map(|r| r.len()).sum::<usize>(), 2_000);
        let huge = vec![CHUNK_BYTES * 2, 1];
        assert_eq!(
            sized_chunks(&huge, |n| *n).len(),
            2,
            "an oversized item stands alone"
        );
        assert!(sized_chunks::<usize>(&[], |n| *n).is_empty());
    }
}
