//! The Redis keys and channel of one room. All share the hash tag of the room's shard, `{s}`, with the
//! shard's persistence stream, so one script may touch them all on Redis Cluster.
//!
//! | key | type | what for |
//! |---|---|---|
//! | `P:v1:{s}:room:<r>:seq` | string | the last `seq` given out (never expires; seeded from MySQL when missing) |
//! | `P:v1:{s}:room:<r>:pos` | string | the position of the room's last durable event (µs, Redis clock) |
//! | `P:v1:{s}:room:<r>:log` | sorted set | the last `RECENT_LOG_SIZE` durable events, scored by position (recovery, gap refill) |
//! | `P:v1:{s}:room:<r>:msgs` | sorted set | recent messages in their current state, scored by `seq` (read-your-writes history, `sinceSeq` replay): the last `RECENT_LOG_SIZE`, plus every message MySQL does not have yet (up to 10 × `RECENT_LOG_SIZE` in all) |
//! | `P:v1:{s}:room:<r>:ids` | hash | message id → `seq` for the messages in `msgs` |
//! | `P:v1:{s}:room:<r>:persisted` | string | the persisted watermark: every message up to this `seq` is in MySQL or dead-lettered (set by the worker, only raised; `msgs` is trimmed only up to it) |
//! | `P:v1:{s}:room:<r>:rl:<user>` | sorted set | the sender's sliding rate-limit window in the room |
//! | `P:v1:{s}:room:<r>:d:<user>:<clientMsgId>` | string, 24 h | the message a `clientMsgId` produced (dedupe) |
//! | `P:v1:{s}:room:<r>:read` / `:dlv` | hash | user → read / delivered cursor |
//! | `P:v1:{s}:room:<r>:ch` | channel | the room's events (durable and volatile) |
//!
//! The logs, cursors, `ids` and `persisted` expire 24 hours after the room's last event (`persisted`
//! also 24 hours after the worker last wrote the room); `seq` never does.

use chat_bus::{shard_of, Keys};
use uuid::Uuid;

/// The keys of one room.
#[derive(Debug, Clone)]
pub struct RoomKeys {
    base: String,
    shard: u16,
    stream: String,
}

impl RoomKeys {
    pub fn new(keys: &Keys, room: Uuid, shards: u16) -> Self {
        let shard = shard_of(room, shards);
        Self {
            base: keys.room(shard, room),
            shard,
            stream: keys.stream(shard),
        }
    }

    pub fn shard(&self) -> u16 {
        self.shard
    }

    pub fn seq(&self) -> String {
        format!("{}:seq", self.base)
    }

    pub fn pos(&self) -> String {
        format!("{}:pos", self.base)
    }

    pub fn log(&self) -> String {
        format!("{}:log", self.base)
    }

    pub fn msgs(&self) -> String {
        format!("{}:msgs", self.base)
    }

    pub fn ids(&self) -> String {
        format!("{}:ids", self.base)
    }

    /// The persisted watermark (see `chat_bus::Keys::room_persisted`).
    pub fn persisted(&self) -> String {
        format!("{}:persisted", self.base)
    }

    pub fn rate(&self, user: Uuid) -> String {
        format!("{}:rl:{user}", self.base)
    }

    pub fn dedupe(&self, user: Uuid, client_msg_id: &str) -> String {
        format!("{}:d:{user}:{client_msg_id}", self.base)
    }

    pub fn read(&self) -> String {
        format!("{}:read", self.base)
    }

    pub fn delivered(&self) -> String {
        format!("{}:dlv", self.base)
    }

    /// The room's pub/sub channel.
    pub fn channel(&self) -> String {
        format!("{}:ch", self.base)
    }

    /// The persistence stream of the room's shard.
    pub fn stream(&self) -> &str {
        &self.stream
    }
}

/// The key mapping a recent message id to its room (`P:v1:mid:<id>`, 24 h), so an edit or delete that
/// names only the message finds it before the worker has written it to MySQL.
pub(crate) fn message_room(keys: &Keys, id: Uuid) -> String {
    format!("{}:mid:{id}", keys.prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rooms_keys_share_the_shard_tag_of_its_stream() {
        let keys = Keys::new("chat");
        let room = Uuid::nil();
        let k = RoomKeys::new(&keys, room, 8);
        let tag = format!("{{{}}}", shard_of(room, 8));
        for key in [
            k.seq(),
            k.pos(),
            k.log(),
            k.msgs(),
            k.ids(),
            k.persisted(),
            k.read(),
            k.delivered(),
            k.channel(),
            k.rate(room),
            k.dedupe(room, "abc"),
            k.stream().to_owned(),
        ] {
            assert!(key.contains(&tag), "{key}");
        }
        assert_eq!(k.persisted(), keys.room_persisted(k.shard(), room));
    }
}
