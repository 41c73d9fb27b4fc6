//! The persistence stream: the one envelope every producer writes and the worker reads.
//!
//! Every durable event (a new message, an edit, a delete, a read or delivered cursor, a `last_seen`) is
//! appended to the stream of its shard, `P:v1:{s}:stream` ([`crate::Keys::stream`]), with
//! `s = shard_of(room_id, SHARDS)` ([`crate::keys::shard_of`]; `LastSeen`, which has no room, uses the
//! user id). The persistence worker reads every shard stream in the consumer group `persist` and writes
//! the events to MySQL in batches; whatever it cannot decode or store goes, with the reason, to the
//! shard's dead-letter stream `P:v1:{s}:dead`.
//!
//! # Entry format (version 1)
//!
//! One stream entry = one event, in a single field named **`e`** ([`ENTRY_FIELD`]) whose value is a
//! **MessagePack map with string keys** (order irrelevant; unknown keys are ignored):
//!
//! | key | type | |
//! |---|---|---|
//! | `v` | int | envelope version, `1` ([`ENVELOPE_VERSION`]) |
//! | `t` | str | event type: `message_created`, `message_edited`, `message_deleted`, `read_cursor`, `delivered_cursor`, `last_seen` |
//! | `traceparent` | str, optional | W3C trace context of the request that produced the event |
//! | … | | the event's fields, below |
//!
//! Ids are UUIDs as **36-character hyphenated strings** (a 16-byte `bin` is accepted too); times are
//! **integers, milliseconds since the Unix epoch (UTC)**; `seq` is an integer. Optional fields may be
//! absent or `nil`.
//!
//! | `t` | fields |
//! |---|---|
//! | `message_created` | `id`, `room_id`, `seq`, `sender_id`, `kind` (`text`\|`image`\|`file`), `content`, `client_msg_id`?, `created_at` |
//! | `message_edited` | `id`, `room_id`, `content`, `edited_at` |
//! | `message_deleted` | `id`, `room_id`, `deleted_at`, `by` |
//! | `read_cursor` | `room_id`, `user_id`, `seq`, `at` |
//! | `delivered_cursor` | `room_id`, `user_id`, `seq`, `at` |
//! | `last_seen` | `user_id`, `at` |
//!
//! A Redis Lua script can build exactly this with `cmsgpack.pack({v=1, t='message_created', id=…,
//! room_id=…, seq=seq, …})` (Lua numbers with integral values are packed as integers) and append it with
//! `redis.call('XADD', KEYS[n], '*', 'e', payload)`. Producers must **never trim** the stream
//! (`MAXLEN`/`MINID`): only the worker does, below what every consumer group has acknowledged.
//!
//! A worker that meets a newer `v` leaves the entry pending for a newer worker (which takes it over
//! with `XAUTOCLAIM`) and goes on with the rest; a new version should still be rolled out to the workers
//! before the producers. A new event type `t` within version 1 is refused as malformed (dead-lettered)
//! by workers that predate it: deploy the workers first.

use crate::keys::{shard_of, PERSIST_GROUP};
use crate::{Bus, BusResult};
use deadpool_redis::redis;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The current envelope version, the `v` field.
pub const ENVELOPE_VERSION: u32 = 1;

/// The name of the stream entry field that holds the msgpack envelope.
pub const ENTRY_FIELD: &str = "e";

/// One event on the persistence stream, with its version and optional trace context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(flatten)]
    pub event: Event,
}

/// The events of the stream, tagged by `t`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Event {
    MessageCreated(MessageCreated),
    MessageEdited(MessageEdited),
    MessageDeleted(MessageDeleted),
    ReadCursor(Cursor),
    DeliveredCursor(Cursor),
    LastSeen(LastSeen),
}

/// A new message, with the `seq` the send script allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCreated {
    #[serde(with = "uuid_text")]
    pub id: Uuid,
    #[serde(with = "uuid_text")]
    pub room_id: Uuid,
    pub seq: i64,
    #[serde(with = "uuid_text")]
    pub sender_id: Uuid,
    /// `text`, `image` or `file`.
    pub kind: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
}

/// New content for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdited {
    #[serde(with = "uuid_text")]
    pub id: Uuid,
    #[serde(with = "uuid_text")]
    pub room_id: Uuid,
    pub content: String,
    pub edited_at: i64,
}

/// A soft delete: the row keeps its `seq`, its content is cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    #[serde(with = "uuid_text")]
    pub id: Uuid,
    #[serde(with = "uuid_text")]
    pub room_id: Uuid,
    pub deleted_at: i64,
    /// Who deleted it (the sender or a room admin).
    #[serde(with = "uuid_text")]
    pub by: Uuid,
}

/// A member's read or delivered cursor: every message up to `seq` is read (delivered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(with = "uuid_text")]
    pub room_id: Uuid,
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub seq: i64,
    pub at: i64,
}

/// A user was last seen online at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSeen {
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub at: i64,
}

impl Event {
    /// The id whose shard the event belongs to: the room, or the user for `LastSeen`.
    pub fn shard_key(&self) -> Uuid {
        match self {
            Event::MessageCreated(m) => m.room_id,
            Event::MessageEdited(m) => m.room_id,
            Event::MessageDeleted(m) => m.room_id,
            Event::ReadCursor(c) | Event::DeliveredCursor(c) => c.room_id,
            Event::LastSeen(l) => l.user_id,
        }
    }

    /// The `t` tag, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Event::MessageCreated(_) => "message_created",
            Event::MessageEdited(_) => "message_edited",
            Event::MessageDeleted(_) => "message_deleted",
            Event::ReadCursor(_) => "read_cursor",
            Event::DeliveredCursor(_) => "delivered_cursor",
            Event::LastSeen(_) => "last_seen",
        }
    }
}

impl Envelope {
    /// A version-1 envelope without trace context.
    pub fn new(event: Event) -> Self {
        Self {
            v: ENVELOPE_VERSION,
            traceparent: None,
            event,
        }
    }

    /// The shard of the event among `shards`.
    pub fn shard(&self, shards: u16) -> u16 {
        shard_of(self.event.shard_key(), shards)
    }
}

/// Why an entry could not be decoded. The text is what the dead-letter stream records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported envelope version {0}")]
    Version(u64),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("invalid event: {0}")]
    Invalid(String),
}

/// Encodes an envelope to the bytes of the `e` field.
pub fn encode(env: &Envelope) -> Vec<u8> {
    // A struct with a flattened enum serializes as a map with string keys; encoding into a Vec only
    // fails for types serde cannot represent, which this one is not.
    rmp_serde::to_vec_named(env).unwrap_or_default()
}

/// Decodes and validates the bytes of the `e` field.
///
/// # Errors
/// Not msgpack, not a known envelope version, missing or mistyped fields, or values the schema would
/// refuse (unknown `kind`, `seq` < 1, `client_msg_id` over 64 bytes).
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    #[derive(Deserialize)]
    struct Probe {
        v: u64,
    }
    let env: Envelope = match rmp_serde::from_slice(bytes) {
        Ok(env) => env,
        Err(e) => {
            // Report an unknown version as such rather than as whatever field it changed.
            if let Ok(p) = rmp_serde::from_slice::<Probe>(bytes) {
                if p.v != u64::from(ENVELOPE_VERSION) {
                    return Err(DecodeError::Version(p.v));
                }
            }
            return Err(DecodeError::Malformed(e.to_string()));
        }
    };
    if env.v != ENVELOPE_VERSION {
        return Err(DecodeError::Version(u64::from(env.v)));
    }
    validate(&env.event)?;
    Ok(env)
}

/// The latest time MySQL's `DATETIME` holds, 9999-12-31 23:59:59.999, in ms since the epoch.
const MAX_TIME_MS: i64 = 253_402_300_799_999;

fn validate(event: &Event) -> Result<(), DecodeError> {
    let invalid = |s: &str| Err(DecodeError::Invalid(s.to_owned()));
    let at = match event {
        Event::MessageCreated(m) => m.created_at,
        Event::MessageEdited(m) => m.edited_at,
        Event::MessageDeleted(m) => m.deleted_at,
        Event::ReadCursor(c) | Event::DeliveredCursor(c) => c.at,
        Event::LastSeen(l) => l.at,
    };
    if !(0..=MAX_TIME_MS).contains(&at) {
        return invalid("time out of range");
    }
    match event {
        Event::MessageCreated(m) => {
            if !matches!(m.kind.as_str(), "text" | "image" | "file") {
                return invalid("kind must be text, image or file");
            }
            if m.seq < 1 {
                return invalid("seq must be at least 1");
            }
            if m.client_msg_id.as_ref().is_some_and(|c| c.len() > 64) {
                return invalid("client_msg_id over 64 bytes");
            }
        }
        Event::ReadCursor(c) | Event::DeliveredCursor(c) if c.seq < 0 => {
            return invalid("seq must not be negative");
        }
        _ => {}
    }
    Ok(())
}

/// UUIDs as hyphenated text on the wire (what a Lua producer has at hand); 16 raw bytes are accepted.
mod uuid_text {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Uuid;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a UUID string or 16 bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Uuid, E> {
                Uuid::parse_str(v).map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Uuid, E> {
                match std::str::from_utf8(v) {
                    Ok(s) if s.len() == 36 => Uuid::parse_str(s).map_err(E::custom),
                    _ => Uuid::from_slice(v).map_err(E::custom),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Bus {
    /// Creates the `persist` consumer group on the shard's stream (and the stream), reading from the
    /// beginning, so entries appended before any worker ever ran are persisted too. Idempotent.
    ///
    /// # Errors
    /// Redis failures other than "the group exists".
    pub async fn ensure_persist_group(&self, shard: u16) -> BusResult<()> {
        let mut c = self.conn().await?;
        let res: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.keys().stream(shard))
            .arg(PERSIST_GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut *c)
            .await;
        match res {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => Ok(other?),
        }
    }

    /// Appends envelopes to their shards' streams (`XADD P:v1:{s}:stream * e <msgpack>`), in order, in
    /// one pipelined round trip. Returns the entry ids. This is what tests and tools use; the gateway's
    /// send script writes the same bytes itself.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn append_events(&self, shards: u16, events: &[Envelope]) -> BusResult<Vec<String>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for env in events {
            pipe.cmd("XADD")
                .arg(self.keys().stream(env.shard(shards)))
                .arg("*")
                .arg(ENTRY_FIELD)
                .arg(encode(env));
        }
        let mut c = self.conn().await?;
        Ok(c.spread(&pipe).await?)
    }

    /// Appends raw `e` payloads to one shard's stream, pipelined (for tests that need undecodable
    /// entries, and for benchmarks that pre-encode).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn append_raw(&self, shard: u16, payloads: &[Vec<u8>]) -> BusResult<Vec<String>> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.keys().stream(shard);
        let mut pipe = redis::pipe();
        for p in payloads {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg(ENTRY_FIELD)
                .arg(p.as_slice());
        }
        let mut c = self.conn().await?;
        Ok(pipe.query_async(&mut *c).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn created() -> Envelope {
        Envelope::new(Event::MessageCreated(MessageCreated {
            id: Uuid::now_v7(),
            room_id: Uuid::now_v7(),
            seq: 7,
            sender_id: Uuid::now_v7(),
            kind: "text".into(),
            content: "hello".into(),
            client_msg_id: Some("c-1".into()),
            created_at: 1_763_700_000_123,
        }))
    }

    #[test]
    fn every_event_round_trips() {
        let room = Uuid::now_v7();
        let user = Uuid::now_v7();
        let cursor = Cursor {
            room_id: room,
            user_id: user,
            seq: 3,
            at: 5,
        };
        let mut traced = created();
        traced.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        for env in [
            created(),
            traced,
            Envelope::new(Event::MessageEdited(MessageEdited {
                id: user,
                room_id: room,
                content: "x".into(),
                edited_at: 1,
            })),
            Envelope::new(Event::MessageDeleted(MessageDeleted {
                id: user,
                room_id: room,
                deleted_at: 2,
                by: user,
            })),
            Envelope::new(Event::ReadCursor(cursor.clone())),
            Envelope::new(Event::DeliveredCursor(cursor)),
            Envelope::new(Event::LastSeen(LastSeen {
                user_id: user,
                at: 9,
            })),
        ] {
            assert_eq!(decode(&encode(&env)).unwrap(), env);
        }
    }

    /// What a Lua script writes with `cmsgpack.pack`: a map with string keys in any order, ids as text,
    /// optional fields absent.
    #[test]
    fn a_map_built_like_a_lua_producer_decodes() {
        let id = Uuid::now_v7();
        let room = Uuid::now_v7();
        let sender = Uuid::now_v7();
        let lua_like = json!({
            "content": "hi", "created_at": 1_763_700_000_000_i64, "t": "message_created",
            "room_id": room.to_string(), "kind": "image", "seq": 1, "v": 1,
            "sender_id": sender.to_string(), "id": id.to_string(), "extra": "ignored",
        });
        let bytes = rmp_serde::to_vec(&lua_like).unwrap();
        let env = decode(&bytes).unwrap();
        let Event::MessageCreated(m) = env.event else {
            panic!("wrong event")
        };
        assert_eq!((m.id, m.room_id, m.sender_id), (id, room, sender));
        assert_eq!(
            (m.seq, m.kind.as_str(), m.client_msg_id),
            (1, "image", None)
        );
        assert_eq!(env.traceparent, None);
    }

    #[test]
    fn the_envelope_is_a_map_with_the_documented_keys() {
        let bytes = encode(&created());
        let v: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "v",
            "t",
            "id",
            "room_id",
            "seq",
            "sender_id",
            "kind",
            "content",
            "client_msg_id",
            "created_at",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        assert_eq!(v["t"], "message_created");
        assert_eq!(v["v"], 1);
        assert!(v["id"].as_str().unwrap().len() == 36);
    }

    #[test]
    fn bad_entries_are_refused_with_a_reason() {
        assert!(matches!(decode(b"\xc1"), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode(&rmp_serde::to_vec(&json!({"v": 2, "t": "hologram"})).unwrap()),
            Err(DecodeError::Version(2))
        ));
        assert!(matches!(
            decode(&rmp_serde::to_vec(&json!({"v": 1, "t": "hologram"})).unwrap()),
            Err(DecodeError::Malformed(_))
        ));
        let mut env = created();
        if let Event::MessageCreated(m) = &mut env.event {
            m.kind = "video".into();
        }
        assert!(matches!(
            decode(&encode(&env)),
            Err(DecodeError::Invalid(_))
        ));
        let mut bad_id = serde_json::to_value(created()).unwrap();
        bad_id["room_id"] = json!("not-a-uuid");
        assert!(matches!(
            decode(&rmp_serde::to_vec(&bad_id).unwrap()),
            Err(DecodeError::Malformed(_))
        ));
    }
}
