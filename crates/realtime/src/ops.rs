//! Send, edit, delete and receipts: each one script call (see [`crate::scripts`]).

use crate::keys::message_room;
use crate::wire::{message_parts, LogEvent};
use crate::{now_stamp, Realtime, RtError, RtResult, DEDUPE_TTL, ROOM_KEY_TTL};
use chat_domain::{ClientMsgId, MessageContent, MessageType};
use chat_store::Message;
use deadpool_redis::redis::{self, Value};
use std::time::Duration;
use uuid::Uuid;

/// A traceparent as a script argument: the W3C text (`00-<32 hex>-<16 hex>-<2 hex>`, lower case), or
/// `''` for none. Anything else is dropped, since the scripts paste it into JSON and msgpack as is.
pub(crate) fn traceparent_arg(tp: Option<&str>) -> String {
    let valid = |tp: &str| {
        let parts: Vec<&str> = tp.split('-').collect();
        parts.len() == 4
            && parts.iter().zip([2, 32, 16, 2]).all(|(p, len)| {
                p.len() == len && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
    };
    match tp {
        Some(tp) if valid(tp) => tp.to_owned(),
        _ => String::new(),
    }
}

/// A message to send. The caller has checked that `sender` is a member of `room`.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub room: Uuid,
    pub sender: Uuid,
    pub kind: MessageType,
    pub content: MessageContent,
    pub client_msg_id: Option<ClientMsgId>,
    /// W3C trace context to carry to the worker (the stream envelope) and the gateways' fan-out (the
    /// published event's `tp`). Ignored unless it is a well-formed `traceparent`.
    pub traceparent: Option<String>,
}

/// An accepted message.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The message as clients see it (`receive_message`'s payload).
    pub json: String,
    pub message: Message,
    /// True when this was a retry: `message` is the original, nothing new was sent.
    pub duplicate: bool,
}

/// Which cursor a receipt moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Read,
    Delivered,
}

/// What an edit or delete needs to know about its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub id: Uuid,
    pub room: Uuid,
    pub seq: i64,
    pub sender: Uuid,
    pub deleted: bool,
}

impl From<&Message> for MessageRef {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            room: m.room_id,
            seq: m.seq,
            sender: m.sender_id,
            deleted: m.deleted_at.is_some(),
        }
    }
}

fn status(v: &Value) -> (String, Vec<String>) {
    let mut parts = Vec::new();
    if let Value::Array(items) = v {
        for it in items {
            match it {
                Value::BulkString(b) => parts.push(String::from_utf8_lossy(b).into_owned()),
                Value::SimpleString(s) => parts.push(s.clone()),
                Value::Int(i) => parts.push(i.to_string()),
                _ => parts.push(String::new()),
            }
        }
    }
    if parts.is_empty() {
        return (String::new(), parts);
    }
    let head = parts.remove(0);
    (head, parts)
}

fn unexpected(what: &str, v: &Value) -> RtError {
    RtError::Unavailable(anyhow::anyhow!(
        "unexpected reply from the {what} script: {v:?}"
    ))
}

fn parse_message(json: &str) -> RtResult<Message> {
    serde_json::from_str(json)
        .map_err(|e| RtError::Unavailable(anyhow::anyhow!("malformed recent message: {e}")))
}

impl Realtime {
    /// Sends a message: one script call (rate limit, dedupe, `seq`, stream, logs, publish).
    ///
    /// # Errors
    /// [`RtError::RateLimited`] with the wait; [`RtError::Unavailable`] when Redis (or, to seed a
    /// room's counter, MySQL) fails.
    pub async fn send(&self, req: &SendRequest) -> RtResult<Sent> {
        let k = self.room(req.room);
        let id = Uuid::now_v7();
        let (created_ms, created_at, created_iso) = now_stamp();
        let cmid = req.client_msg_id.as_ref().map(ClientMsgId::as_str);
        let (head, tail) = message_parts(
            id,
            req.room,
            req.sender,
            req.kind.as_str(),
            req.content.as_str(),
            cmid,
            &created_iso,
        );
        let (head_len, tail_len) = (head.len(), tail.len());
        let keys_owned = [
            k.seq(),
            k.pos(),
            k.log(),
            k.msgs(),
            k.ids(),
            k.rate(req.sender),
            k.dedupe(req.sender, cmid.unwrap_or("-")),
            k.stream().to_owned(),
            k.channel(),
            k.persisted(),
        ];
        let keys: Vec<&str> = keys_owned.iter().map(String::as_str).collect();
        let strings = [
            self.cfg.rate_limit.to_string(),
            self.cfg.rate_window.as_millis().to_string(),
            id.to_string(),
            head,
            tail,
            req.room.to_string(),
            req.sender.to_string(),
            req.kind.as_str().to_owned(),
            req.content.as_str().to_owned(),
            cmid.unwrap_or("").to_owned(),
            created_ms.to_string(),
            traceparent_arg(req.traceparent.as_deref()),
            self.cfg.log_cap.to_string(),
            DEDUPE_TTL.as_secs().to_string(),
            ROOM_KEY_TTL.as_millis().to_string(),
            self.cfg.hard_cap.to_string(),
        ];
        let args: Vec<&[u8]> = strings.iter().map(String::as_bytes).collect();
        let pointer = message_room(self.bus.keys(), id);
        let mut conn = self.bus.conn().await?;
        for _ in 0..2 {
            // The id → room pointer goes first in the same round trip (so an edit or delete that names
            // the message finds it as soon as anyone has seen it); when the script refuses, it is
            // removed again below, so refused sends leave no keys behind.
            let mut pre = redis::cmd("SET");
            pre.arg(&pointer)
                .arg(req.room.to_string())
                .arg("EX")
                .arg(DEDUPE_TTL.as_secs());
            let (reply, replicated) = self
                .eval_durable(&mut conn, Some(&pre), &self.scripts().send, &keys, &args)
                .await?;
            let (st, rest) = status(&reply);
            if !replicated && (st == "ok" || st == "dup") {
                return Err(RtError::NotReplicated);
            }
            if st != "ok" {
                // A rate-limited flood must not leave a 24-hour key per attempt. Best effort: a
                // leftover pointer names a room without that message, which lookups treat as unknown.
                let del: redis::RedisResult<()> = redis::cmd("DEL")
                    .arg(&pointer)
                    .query_async(&mut *conn)
                    .await;
                if let Err(e) = del {
                    tracing::debug!(error = %e, "could not remove a refused send's pointer");
                }
            }
            match st.as_str() {
                "ok" | "dup" => {
                    if let Some(n) = rest.get(2).and_then(|n| n.parse::<u64>().ok()) {
                        if n > 0 {
                            crate::note_unsaved_trimmed(req.room, n, self.cfg.hard_cap);
                        }
                    }
                    let json = rest
                        .into_iter()
                        .next()
                        .ok_or_else(|| unexpected("send", &reply))?;
                    let message = if st == "ok" {
                        // The script only put the seq between the parts rendered here: read it back
                        // instead of parsing the whole message again.
                        let seq = json
                            .get(head_len..json.len().saturating_sub(tail_len))
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| unexpected("send", &reply))?;
                        Message {
                            id,
                            room_id: req.room,
                            seq,
                            sender_id: req.sender,
                            kind: req.kind.as_str().to_owned(),
                            content: Some(req.content.as_str().to_owned()),
                            client_msg_id: cmid.map(str::to_owned),
                            created_at,
                            edited_at: None,
                            deleted_at: None,
                        }
                    } else {
                        parse_message(&json)?
                    };
                    return Ok(Sent {
                        json,
                        message,
                        duplicate: st == "dup",
                    });
                }
                "rl" => {
                    let ms: u64 = rest.first().and_then(|s| s.parse().ok()).unwrap_or(1000);
                    return Err(RtError::RateLimited {
                        retry_after: Duration::from_millis(ms),
                    });
                }
                "noseq" => self.seed_seq(&mut conn, req.room).await?,
                _ => return Err(unexpected("send", &reply)),
            }
        }
        Err(RtError::Unavailable(anyhow::anyhow!(
            "room sequence could not be seeded"
        )))
    }

    /// Starts a room's missing counter (new room, or Redis lost it) after the highest `seq` MySQL has.
    /// `NX`: a concurrent seeder's value, or a counter that appeared meanwhile, stands.
    ///
    /// When this call did seed it, the room's persisted watermark goes too: Redis lost the room's
    /// state, the `seq`s above MySQL's are given out again, and a watermark that survived would let the
    /// send script trim those new messages before the worker stored them. A missing watermark only
    /// keeps more in Redis until the worker sets it again.
    async fn seed_seq(&self, conn: &mut chat_bus::Conn, room: Uuid) -> RtResult<()> {
        let max = self.store.max_seq(room).await?;
        let k = self.room(room);
        let set: Value = redis::cmd("SET")
            .arg(k.seq())
            .arg(max)
            .arg("NX")
            .query_async(&mut **conn)
            .await?;
        if !matches!(set, Value::Nil) {
            let _: Value = redis::cmd("DEL")
                .arg(k.persisted())
                .query_async(&mut **conn)
                .await?;
        }
        Ok(())
    }

    /// Finds a message by id: the recent copy in Redis first (newest state, and present before the
    /// worker has written it), then MySQL.
    ///
    /// # Errors
    /// Redis or MySQL failures.
    pub async fn resolve_message(&self, id: Uuid) -> RtResult<Option<MessageRef>> {
        let mut conn = self.bus.conn().await?;
        let room: Option<String> = redis::cmd("GET")
            .arg(message_room(self.bus.keys(), id))
            .query_async(&mut *conn)
            .await?;
        if let Some(room) = room.and_then(|r| Uuid::parse_str(&r).ok()) {
            let k = self.room(room);
            let seq: Option<i64> = redis::cmd("HGET")
                .arg(k.ids())
                .arg(id.to_string())
                .query_async(&mut *conn)
                .await?;
            if let Some(seq) = seq {
                let found: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                    .arg(k.msgs())
                    .arg(seq)
                    .arg(seq)
                    .query_async(&mut *conn)
                    .await?;
                if let Some(m) = found
                    .first()
                    .and_then(|j| serde_json::from_str::<Message>(j).ok())
                {
                    if m.id == id {
                        return Ok(Some(MessageRef::from(&m)));
                    }
                }
            }
        }
        drop(conn);
        Ok(self.store.message(id).await?.as_ref().map(MessageRef::from))
    }

    /// Finds a message the actor may change: it exists, is not deleted, and the actor is still a
    /// member of its room. Private rooms' messages are reported as not found to non-members.
    async fn target(&self, actor: Uuid, id: Uuid) -> RtResult<(MessageRef, bool)> {
        let not_found = || RtError::NotFound("message not found".into());
        let m = self.resolve_message(id).await?.ok_or_else(not_found)?;
        let membership = self.store.membership(m.room, actor).await?;
        let Some(membership) = membership else {
            return Err(not_found());
        };
        if m.deleted {
            return Err(not_found());
        }
        Ok((m, membership.is_admin()))
    }

    /// Edits a message: only its sender may.
    ///
    /// # Errors
    /// [`RtError::NotFound`] (unknown, deleted, or in a room the actor is not in),
    /// [`RtError::Forbidden`] (someone else's message), [`RtError::Unavailable`].
    pub async fn edit(
        &self,
        actor: Uuid,
        id: Uuid,
        content: &MessageContent,
        traceparent: Option<&str>,
    ) -> RtResult<serde_json::Value> {
        let (m, _) = self.target(actor, id).await?;
        if m.sender != actor {
            return Err(RtError::Forbidden(
                "only the sender may edit a message".into(),
            ));
        }
        let (ms, _, iso) = now_stamp();
        let data = serde_json::json!({
            "id": m.id, "roomId": m.room, "seq": m.seq, "content": content.as_str(), "editedAt": iso,
        });
        self.mutate(
            "edit",
            &m,
            actor,
            content.as_str(),
            ms,
            &iso,
            &data,
            traceparent,
        )
        .await?;
        Ok(data)
    }

    /// Deletes a message (soft): its sender or an admin of its room may.
    ///
    /// # Errors
    /// As for [`Realtime::edit`].
    pub async fn delete(
        &self,
        actor: Uuid,
        id: Uuid,
        traceparent: Option<&str>,
    ) -> RtResult<serde_json::Value> {
        let (m, is_admin) = self.target(actor, id).await?;
        if m.sender != actor && !is_admin {
            return Err(RtError::Forbidden(
                "only the sender or a room admin may delete a message".into(),
            ));
        }
        let (ms, _, iso) = now_stamp();
        let data = serde_json::json!({
            "messageId": m.id, "id": m.id, "roomId": m.room, "seq": m.seq, "deletedAt": iso, "deletedBy": actor,
        });
        self.mutate("delete", &m, actor, "", ms, &iso, &data, traceparent)
            .await?;
        Ok(data)
    }

    #[allow(clippy::too_many_arguments)]
    async fn mutate(
        &self,
        mode: &str,
        m: &MessageRef,
        actor: Uuid,
        content: &str,
        at_ms: i64,
        at_iso: &str,
        data: &serde_json::Value,
        traceparent: Option<&str>,
    ) -> RtResult<()> {
        let k = self.room(m.room);
        let keys_owned = [
            k.pos(),
            k.log(),
            k.msgs(),
            k.stream().to_owned(),
            k.channel(),
        ];
        let keys: Vec<&str> = keys_owned.iter().map(String::as_str).collect();
        let strings = [
            mode.to_owned(),
            m.id.to_string(),
            m.seq.to_string(),
            m.room.to_string(),
            actor.to_string(),
            content.to_owned(),
            at_ms.to_string(),
            at_iso.to_owned(),
            data.to_string(),
            traceparent_arg(traceparent),
            self.cfg.log_cap.to_string(),
            ROOM_KEY_TTL.as_millis().to_string(),
        ];
        let args: Vec<&[u8]> = strings.iter().map(String::as_bytes).collect();
        let mut conn = self.bus.conn().await?;
        let (reply, replicated) = self
            .eval_durable(&mut conn, None, &self.scripts().mutate, &keys, &args)
            .await?;
        match status(&reply).0.as_str() {
            "ok" if !replicated => Err(RtError::NotReplicated),
            "ok" => Ok(()),
            "gone" => Err(RtError::NotFound("message not found".into())),
            _ => Err(unexpected("mutate", &reply)),
        }
    }

    /// Moves `user`'s read or delivered cursor in `room` forward to `seq` (clamped to the room's last
    /// message), broadcasting the receipt when it moved. `floor` is the cursor MySQL has (from the
    /// membership row). Returns the cursor afterwards and whether it moved. The caller has checked
    /// membership. A room whose counter Redis lacks has it seeded from MySQL first, as for a send.
    ///
    /// # Errors
    /// Redis failures (or MySQL's, to seed the counter).
    pub async fn cursor(
        &self,
        user: Uuid,
        room: Uuid,
        kind: CursorKind,
        seq: i64,
        floor: i64,
        traceparent: Option<&str>,
    ) -> RtResult<(i64, bool)> {
        let k = self.room(room);
        let hash = match kind {
            CursorKind::Read => k.read(),
            CursorKind::Delivered => k.delivered(),
        };
        let keys_owned = [
            hash,
            k.seq(),
            k.msgs(),
            k.pos(),
            k.log(),
            k.stream().to_owned(),
            k.channel(),
        ];
        let keys: Vec<&str> = keys_owned.iter().map(String::as_str).collect();
        let (ms, _, iso) = now_stamp();
        let strings = [
            user.to_string(),
            seq.to_string(),
            floor.to_string(),
            match kind {
                CursorKind::Read => "read",
                CursorKind::Delivered => "delivered",
            }
            .to_owned(),
            ms.to_string(),
            iso,
            room.to_string(),
            traceparent_arg(traceparent),
            self.cfg.log_cap.to_string(),
            format!(r#"{{"roomId":"{room}","userId":"{user}","seq":"#),
            ROOM_KEY_TTL.as_millis().to_string(),
        ];
        let args: Vec<&[u8]> = strings.iter().map(String::as_bytes).collect();
        let mut conn = self.bus.conn().await?;
        for _ in 0..2 {
            let (reply, replicated) = self
                .eval_durable(&mut conn, None, &self.scripts().cursor, &keys, &args)
                .await?;
            let (st, rest) = status(&reply);
            let moved = match st.as_str() {
                "ok" if !replicated => return Err(RtError::NotReplicated),
                "ok" => true,
                "same" => false,
                "noseq" => {
                    self.seed_seq(&mut conn, room).await?;
                    continue;
                }
                _ => return Err(unexpected("cursor", &reply)),
            };
            let at: i64 = rest
                .first()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unexpected("cursor", &reply))?;
            return Ok((at, moved));
        }
        Err(RtError::Unavailable(anyhow::anyhow!(
            "room sequence could not be seeded"
        )))
    }

    /// The room's last `seq` as Redis has it (0 when Redis has none; MySQL may know better).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn last_seq(&self, room: Uuid) -> RtResult<i64> {
        let mut conn = self.bus.conn().await?;
        let v: Option<i64> = redis::cmd("GET")
            .arg(self.room(room).seq())
            .query_async(&mut *conn)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// The `seq` of the message `id` in `room`, if it is a recent or stored message of that room.
    ///
    /// # Errors
    /// Redis or MySQL failures.
    pub async fn seq_of(&self, room: Uuid, id: Uuid) -> RtResult<Option<i64>> {
        Ok(self
            .resolve_message(id)
            .await?
            .filter(|m| m.room == room)
            .map(|m| m.seq))
    }

    /// The durable events of each room after position `after` (exclusive), from the rooms' logs,
    /// merged in position order: what a recovering socket missed, or a gap pub/sub lost.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn log_after(&self, rooms: &[Uuid], after: u64) -> RtResult<Vec<LogEvent>> {
        self.log_range(rooms, after, None).await
    }

    /// The durable events of each room with `after < pos < before`, in position order.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn log_range(
        &self,
        rooms: &[Uuid],
        after: u64,
        before: Option<u64>,
    ) -> RtResult<Vec<LogEvent>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        let upper = before.map_or_else(|| "+inf".to_owned(), |b| format!("({b}"));
        for r in rooms {
            pipe.cmd("ZRANGEBYSCORE")
                .arg(self.room(*r).log())
                .arg(format!("({after}"))
                .arg(&upper)
                .arg("WITHSCORES");
        }
        let mut conn = self.bus.conn().await?;
        let replies: Vec<Vec<(String, f64)>> = conn.spread(&pipe).await?;
        let mut out: Vec<LogEvent> = rooms
            .iter()
            .zip(replies)
            .flat_map(|(room, entries)| {
                entries.into_iter().map(move |(text, score)| LogEvent {
                    room: *room,
                    // Positions are integers below 2^53: exact in an f64.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    pos: score as u64,
                    text,
                })
            })
            .collect();
        out.sort_by_key(|e| e.pos);
        Ok(out)
    }
}

impl Realtime {
    /// The position of the room's last durable event (0 when it has none in Redis).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn room_pos(&self, room: Uuid) -> RtResult<u64> {
        let mut conn = self.bus.conn().await?;
        let v: Option<u64> = redis::cmd("GET")
            .arg(self.room(room).pos())
            .query_async(&mut *conn)
            .await?;
        Ok(v.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::traceparent_arg;

    #[test]
    fn only_well_formed_traceparents_reach_the_scripts() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        assert_eq!(traceparent_arg(Some(tp)), tp);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-02",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c8031\"c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0\"}",
        ] {
            assert_eq!(traceparent_arg(Some(bad)), "", "{bad}");
        }
        assert_eq!(traceparent_arg(None), "");
    }
}
