//! From decoded stream entries to MySQL: building one [`Batch`] in stream order, and isolating the
//! entries that make a batch fail.
//!
//! A batch that fails for a reason other than connectivity (a foreign key, a conflicting message, a
//! value the column refuses) is split in halves and each half retried in its own transaction, down to
//! the single entry that cannot be stored, which is reported for the dead-letter stream. The halves run
//! in stream order, so the good entries around a poison one are stored as usual; a batch with one poison
//! entry costs about 2·log2(n) extra transactions.

use crate::metrics::Metrics;
use chat_bus::stream::{Envelope, Event};
use chat_store::batch::{is_entry_error, Batch, CursorUpdate, Delete, Edit};
use chat_store::messages::NewMessage;
use chat_store::{Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use uuid::Uuid;

/// A decoded entry waiting to be applied.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub raw: Vec<u8>,
    pub env: Envelope,
    /// When this process first read it (an edit of a message not stored yet is retried for a while).
    pub first_seen: Instant,
}

/// The result of applying a run of items.
#[derive(Debug, Default)]
pub struct Applied {
    pub rows: u64,
    /// Indexes (into the items) that can never be stored, with the reason.
    pub dead: Vec<(usize, String)>,
    /// Messages named by edits or deletes that do not exist.
    pub missing_targets: HashSet<Uuid>,
    /// Transactions committed.
    pub commits: usize,
}

fn time(ms: i64) -> DateTime<Utc> {
    // The envelope's validation bounds every time to what DATETIME holds.
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Builds the batch for `items` (in stream order): every new message; for each message the latest
/// edit unless it is deleted in the same batch; the first delete; the highest cursors; the latest
/// `last_seen`.
pub fn build_batch(items: &[Item]) -> Batch {
    let mut b = Batch::default();
    let mut edits: HashMap<Uuid, usize> = HashMap::new();
    let mut deleted: HashSet<Uuid> = HashSet::new();
    let mut cursors: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for item in items {
        match &item.env.event {
            Event::MessageCreated(m) => b.messages.push(NewMessage {
                id: m.id,
                room_id: m.room_id,
                seq: m.seq,
                sender_id: m.sender_id,
                kind: m.kind.clone(),
                content: m.content.clone(),
                client_msg_id: m.client_msg_id.clone(),
                created_at: time(m.created_at),
            }),
            Event::MessageEdited(e) => {
                let edit = Edit {
                    id: e.id,
                    room_id: e.room_id,
                    content: e.content.clone(),
                    edited_at: time(e.edited_at),
                };
                match edits.get(&e.id) {
                    Some(&i) if b.edits[i].edited_at > edit.edited_at => {}
                    Some(&i) => b.edits[i] = edit,
                    None => {
                        edits.insert(e.id, b.edits.len());
                        b.edits.push(edit);
                    }
                }
            }
            Event::MessageDeleted(d) => {
                if deleted.insert(d.id) {
                    b.deletes.push(Delete {
                        id: d.id,
                        room_id: d.room_id,
                        deleted_at: time(d.deleted_at),
                    });
                }
            }
            Event::ReadCursor(c) | Event::DeliveredCursor(c) => {
                let read = matches!(item.env.event, Event::ReadCursor(_));
                let i = *cursors.entry((c.room_id, c.user_id)).or_insert_with(|| {
                    b.cursors.push(CursorUpdate {
                        room_id: c.room_id,
                        user_id: c.user_id,
                        read_seq: 0,
                        delivered_seq: 0,
                    });
                    b.cursors.len() - 1
                });
                let cur = &mut b.cursors[i];
                if read {
                    cur.read_seq = cur.read_seq.max(c.seq);
                } else {
                    cur.delivered_seq = cur.delivered_seq.max(c.seq);
                }
            }
            Event::LastSeen(l) => {
                let at = time(l.at);
                match seen.get(&l.user_id) {
                    Some(&i) => b.last_seen[i].1 = b.last_seen[i].1.max(at),
                    None => {
                        seen.insert(l.user_id, b.last_seen.len());
                        b.last_seen.push((l.user_id, at));
                    }
                }
            }
        }
    }
    // A delete wins over any edit of the same message, whichever came first.
    b.edits.retain(|e| !deleted.contains(&e.id));
    // In index order: consecutive rows of a room land on the same pages of (room_id, seq).
    b.messages.sort_unstable_by_key(|m| (m.room_id, m.seq));
    b
}

/// Applies `items`, isolating the ones that can never be stored.
///
/// # Errors
/// An error no entry is to blame for (MySQL unreachable or busy, a missing table…): retry all of
/// `items` later; whatever was committed before is idempotent to replay.
pub async fn apply_isolating(
    store: &Store,
    metrics: &Metrics,
    items: &[Item],
) -> Result<Applied, StoreError> {
    let mut out = Applied::default();
    apply_range(store, metrics, items, 0, &mut out).await?;
    Ok(out)
}

fn apply_range<'a>(
    store: &'a Store,
    metrics: &'a Metrics,
    items: &'a [Item],
    base: usize,
    out: &'a mut Applied,
) -> Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>> {
    Box::pin(async move {
        if items.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = store.apply_batch(&build_batch(items)).await;
        metrics.observe_mysql_write(started.elapsed());
        match result {
            Ok(o) => {
                out.rows += o.rows;
                out.missing_targets.extend(o.missing_targets);
                out.commits += 1;
                Ok(())
            }
            Err(e) if !is_entry_error(&e) => Err(e),
            Err(e) if items.len() == 1 => {
                out.dead.push((base, describe(&e)));
                Ok(())
            }
            Err(e) => {
                tracing::debug!(error = %describe(&e), entries = items.len(), "batch refused; isolating");
                metrics.isolations.fetch_add(1, Relaxed);
                let mid = items.len() / 2;
                apply_range(store, metrics, &items[..mid], base, out).await?;
                apply_range(store, metrics, &items[mid..], base + mid, out).await
            }
        }
    })
}

/// A reason for the dead-letter stream: the server's message, or what it means where it is cryptic.
pub fn describe(e: &StoreError) -> String {
    if let StoreError::Database(sqlx_err) = e {
        if let Some(db) = sqlx_err.as_database_error() {
            if db.message().contains("'seq' cannot be null") {
                return "conflicts with a different message already stored (same room and seq, or \
                        same sender and client_msg_id)"
                    .into();
            }
            return format!("mysql refused the entry: {}", db.message());
        }
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_bus::stream::{Cursor, LastSeen, MessageCreated, MessageDeleted, MessageEdited};

    fn item(event: Event) -> Item {
        Item {
            id: "1-0".into(),
            raw: Vec::new(),
            env: Envelope::new(event),
            first_seen: Instant::now(),
        }
    }

    #[test]
    fn a_batch_collapses_changes_to_one_row_per_target() {
        let (room, user, msg) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let other = Uuid::now_v7();
        let edit = |id, content: &str, at| {
            item(Event::MessageEdited(MessageEdited {
                id,
                room_id: room,
                content: content.into(),
                edited_at: at,
            }))
        };
        let cursor = |seq| Cursor {
            room_id: room,
            user_id: user,
            seq,
            at: 1,
        };
        let items = vec![
            item(Event::MessageCreated(MessageCreated {
                id: msg,
                room_id: room,
                seq: 1,
                sender_id: user,
                kind: "text".into(),
                content: "a".into(),
                client_msg_id: None,
                created_at: 1,
            })),
            edit(msg, "b", 2),
            edit(msg, "c", 3),
            edit(other, "x", 5),
            edit(other, "older", 4),
            item(Event::MessageDeleted(MessageDeleted {
                id: msg,
                room_id: room,
                deleted_at: 4,
                by: user,
            })),
            item(Event::ReadCursor(cursor(5))),
            item(Event::ReadCursor(cursor(3))),
            item(Event::DeliveredCursor(cursor(7))),
            item(Event::LastSeen(LastSeen {
                user_id: user,
                at: 9,
            })),
            item(Event::LastSeen(LastSeen {
                user_id: user,
                at: 8,
            })),
        ];
        let b = build_batch(&items);
        assert_eq!(b.messages.len(), 1);
        assert_eq!(b.edits.len(), 1, "the deleted message's edits are dropped");
        assert_eq!((b.edits[0].id, b.edits[0].content.as_str()), (other, "x"));
        assert_eq!(b.deletes.len(), 1);
        assert_eq!(b.cursors.len(), 1);
        assert_eq!((b.cursors[0].read_seq, b.cursors[0].delivered_seq), (5, 7));
        assert_eq!(b.last_seen, vec![(user, time(9))]);
    }
}
