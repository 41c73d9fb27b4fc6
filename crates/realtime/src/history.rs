//! Read-your-writes history: MySQL's page merged with the room's recent messages in Redis, which hold
//! every acked message (and its latest edit or delete) that the worker has not written yet: the send
//! script trims them only up to the room's persisted watermark (up to a hard cap, see `crate::scripts`).
//! Both sides are read with `LIMIT limit + 1` around the page's bound, so the cost does not depend on
//! how long the Redis log has grown while the worker was behind.

use crate::{Realtime, RtResult};
use chat_store::messages::{HistoryPage, HistoryQuery};
use chat_store::Message;
use deadpool_redis::redis;
use std::collections::BTreeMap;
use uuid::Uuid;

impl Realtime {
    /// Up to `limit + 1` recent messages of `room` in the page `q` asks for, ascending by `seq`.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn recent_messages(&self, room: Uuid, q: HistoryQuery) -> RtResult<Vec<Message>> {
        let k = self.room(room);
        let lo = q
            .after
            .map_or_else(|| "-inf".to_owned(), |a| format!("({a}"));
        let hi = q
            .before
            .map_or_else(|| "+inf".to_owned(), |b| format!("({b}"));
        let n = q.limit + 1;
        let mut conn = self.bus.conn().await?;
        let texts: Vec<String> = if q.after.is_some() {
            redis::cmd("ZRANGEBYSCORE")
                .arg(k.msgs())
                .arg(&lo)
                .arg(&hi)
                .arg("LIMIT")
                .arg(0)
                .arg(n)
                .query_async(&mut *conn)
                .await?
        } else {
            let mut v: Vec<String> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(k.msgs())
                .arg(&hi)
                .arg(&lo)
                .arg("LIMIT")
                .arg(0)
                .arg(n)
                .query_async(&mut *conn)
                .await?;
            v.reverse();
            v
        };
        Ok(texts
            .iter()
            .filter_map(|t| match serde_json::from_str::<Message>(t) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::warn!(room = %room, error = %e, "skipping a malformed recent message");
                    None
                }
            })
            .collect())
    }

    /// A page of history as clients must see it: MySQL's page and the recent messages merged by `seq`
    /// (the Redis copy wins: it is never older), ascending.
    ///
    /// # Errors
    /// MySQL or Redis failures.
    pub async fn history(&self, room: Uuid, q: HistoryQuery) -> RtResult<HistoryPage> {
        let (stored, recent) =
            tokio::join!(self.store.history(room, q), self.recent_messages(room, q));
        let stored = stored?;
        let recent = match recent {
            Ok(r) => r,
            // Redis down: MySQL's page is still the best answer there is.
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "recent messages unavailable; history from MySQL only");
                Vec::new()
            }
        };
        let mut by_seq: BTreeMap<i64, Message> =
            stored.messages.into_iter().map(|m| (m.seq, m)).collect();
        for m in recent {
            by_seq.insert(m.seq, m);
        }
        let limit = usize::try_from(q.limit).unwrap_or(0);
        let more = by_seq.len() > limit;
        let mut messages: Vec<Message> = by_seq.into_values().collect();
        if messages.len() > limit {
            if q.after.is_some() {
                messages.truncate(limit);
            } else {
                messages.drain(..messages.len() - limit);
            }
        }
        Ok(HistoryPage {
            messages,
            has_more: stored.has_more || more,
        })
    }
}
