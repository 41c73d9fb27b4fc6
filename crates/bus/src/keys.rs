//! Every Redis key, channel and stream of the system, in one place.
//!
//! `P` is the configured prefix; `v1` is the schema version of the key layout (bump it to change a
//! value's format without migrating in place).
//!
//! | key | type | what for |
//! |---|---|---|
//! | `P:v1:rl:<scope>:<id>` | sorted set | sliding-window rate limits: one member per hit, scored by time (ms); scopes `api:ip`, `login:acct`, `login:ip` |
//! | `P:v1:{u:<user>}:rl:api` | sorted set | the REST rate limit of a signed-in user (same format) |
//! | `P:v1:{u:<user>}:revoked:<jti>` | string, TTL | an access token revoked by logout, kept until the token would expire |
//!
//! The user's REST rate limit and revoked tokens share the hash tag `{u:<user>}`, so one script checks both
//! in a single round trip (and stays legal on Redis Cluster).
//! | `P:v1:revoked` | sorted set | the revocation log: `<user>\|<jti>` scored by when it was revoked (ms, Redis clock), the last 24 h; gateways read what is new since their last look instead of checking every socket's token |
//! | `P:v1:{u:<user>}:presence` | sorted set | the user's connections: `<gateway>\|<connection>` scored by when they connected (ms); written only at connect and disconnect; a member counts while its gateway is alive |
//! | `P:v1:{u:<user>}:lastseen` | string | when the user's last connection closed (ms); also persisted to `users.last_seen` through the stream |
//! | `P:v1:gw:alive` | sorted set | gateway id → heartbeat expiry (ms): a gateway whose expiry passed is dead, and another one cleans up its connections |
//! | `P:v1:gw:<id>:conns` | hash | a gateway's connections: connection id → `<user>\|<session pid>` (the pid empty when none) |
//! | `P:v1:gw:<id>:reaper` | string | the gateway cleaning up after dead gateway `<id>` (a lease: `SET NX PX`) |
//! | `P:v1:sio:<pid>` | string, TTL | a Socket.IO session that may be recovered (JSON): 24 h while its socket is connected (saved again after 12 h), the recovery window once it is gone |
//! | `P:v1:mid:<message>` | string, 24 h | the room of a recent message (edits and deletes find it before MySQL has it) |
//! | `P:v1:ctl` | channel | control messages from the API to every gateway (membership and token changes) |
//! | `P:v1:{s}:room:<room>:…` | | a room's counters, logs and channel: see `chat_realtime::RoomKeys` |
//! | `P:v1:{s}:room:<room>:persisted` | string, 24 h | the room's persisted watermark: every message of the room up to this `seq` is in MySQL (or dead-lettered); raised only by the worker, never lowered; the send script trims the room's recent messages only up to it |
//! | `P:v1:{s}:stream` | stream | shard `s`'s persistence stream: one msgpack envelope per entry in field `e` (see [`crate::stream`]); consumer group `persist` ([`PERSIST_GROUP`]); trimmed only by the worker, below what every group has acknowledged |
//! | `P:v1:{s}:dead` | stream | shard `s`'s dead letters: entries the worker could not decode or store, with fields `e` (the original bytes), `reason`, `id` (the original entry id), `consumer`; capped at about 100,000 entries |
//!
//! Shards: `s = shard_of(room_id, SHARDS)` ([`shard_of`]: FNV-1a 64 over the 16 bytes of the UUID, modulo
//! `SHARDS`; stable across processes and languages). Keys of one shard share the hash tag `{s}`, so they
//! live in one Redis Cluster slot and one script or `MULTI` may touch them all; the gateway's room keys
//! go under [`Keys::shard_prefix`] to join them.

use uuid::Uuid;

/// Names keys under a prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: format!("{prefix}:v1"),
        }
    }

    /// The versioned prefix, `P:v1`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A rate-limit window; `scope` is a fixed name such as `api:user`, `id` the limited subject.
    pub fn rate_limit(&self, scope: &str, id: &str) -> String {
        format!("{}:rl:{scope}:{id}", self.prefix)
    }

    pub fn revoked_jti(&self, user: Uuid, jti: Uuid) -> String {
        format!("{}:{{u:{user}}}:revoked:{jti}", self.prefix)
    }

    /// The REST rate-limit window of a signed-in user.
    pub fn api_user_rate(&self, user: Uuid) -> String {
        format!("{}:{{u:{user}}}:rl:api", self.prefix)
    }

    pub fn presence_user(&self, user: Uuid) -> String {
        format!("{}:{{u:{user}}}:presence", self.prefix)
    }

    /// When the user was last seen (ms), kept next to their presence set (same hash tag).
    pub fn last_seen(&self, user: Uuid) -> String {
        format!("{}:{{u:{user}}}:lastseen", self.prefix)
    }

    /// The revocation log: `<user>|<jti>` → when (ms).
    pub fn revocations(&self) -> String {
        format!("{}:revoked", self.prefix)
    }

    /// Gateway id → heartbeat expiry (ms).
    pub fn gateways_alive(&self) -> String {
        format!("{}:gw:alive", self.prefix)
    }

    /// A gateway's connections: connection id → `<user>|<pid>`.
    pub fn gateway_conns(&self, gateway: &str) -> String {
        format!("{}:gw:{gateway}:conns", self.prefix)
    }

    /// The lease of the gateway cleaning up after dead gateway `gateway`.
    pub fn gateway_reaper(&self, gateway: &str) -> String {
        format!("{}:gw:{gateway}:reaper", self.prefix)
    }

    /// `P:v1:{s}`: the prefix of every key of shard `s` (the braces are the Redis Cluster hash tag).
    pub fn shard_prefix(&self, shard: u16) -> String {
        format!("{}:{{{shard}}}", self.prefix)
    }

    /// `P:v1:{s}:room:<room>`: the prefix of every key of a room on shard `s` (the room's shard; see
    /// `chat_realtime::RoomKeys`).
    pub fn room(&self, shard: u16, room: Uuid) -> String {
        format!("{}:room:{room}", self.shard_prefix(shard))
    }

    /// `P:v1:{s}:room:<room>:persisted`: the highest `seq` of the room below which every message is
    /// in MySQL or dead-lettered (written by the worker, read by the send script's trim).
    pub fn room_persisted(&self, shard: u16, room: Uuid) -> String {
        format!("{}:persisted", self.room(shard, room))
    }

    /// `P:v1:{s}:stream`: the persistence stream of shard `s`.
    pub fn stream(&self, shard: u16) -> String {
        format!("{}:stream", self.shard_prefix(shard))
    }

    /// `P:v1:{s}:dead`: the dead-letter stream of shard `s`.
    pub fn dead_letter(&self, shard: u16) -> String {
        format!("{}:dead", self.shard_prefix(shard))
    }
}

/// How long a room's recent logs (and its persisted watermark) stay in Redis after their last write.
pub const ROOM_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The consumer group of the persistence worker on every shard stream.
pub const PERSIST_GROUP: &str = "persist";

/// The shard of a room (or, for events without a room, a user) among `shards`: FNV-1a 64 over the 16
/// bytes of the UUID, modulo `shards`. `shards` of 0 is treated as 1.
pub fn shard_of(id: Uuid, shards: u16) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    // The remainder is below `shards`, so it fits.
    u16::try_from(h % u64::from(shards.max(1))).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_share_a_hash_tag() {
        let k = Keys::new("chat");
        assert_eq!(k.stream(3), "chat:v1:{3}:stream");
        assert_eq!(k.dead_letter(3), "chat:v1:{3}:dead");
        assert_eq!(k.shard_prefix(12), "chat:v1:{12}");
        assert_eq!(
            k.room_persisted(3, Uuid::nil()),
            "chat:v1:{3}:room:00000000-0000-0000-0000-000000000000:persisted"
        );
    }

    /// Pinned values: other processes (and other languages) must compute the same shards.
    #[test]
    fn shard_of_is_fnv1a_64_of_the_uuid_bytes() {
        let nil = Uuid::nil();
        // Computed independently (Python): FNV-1a 64 of the nil UUID's bytes is 0x88201fb960ff6465, of
        // the max UUID 0xd6607508f5a1e855, of `fixed` 0x2299cdf660aedf27.
        let max = Uuid::max();
        let fixed = Uuid::parse_str("0192f7a2-3c4d-7e5f-8a9b-0c1d2e3f4a5b").expect("valid");
        let pinned: Vec<u16> = [nil, max, fixed]
            .iter()
            .flat_map(|u| [shard_of(*u, 8), shard_of(*u, 1024), shard_of(*u, u16::MAX)])
            .collect();
        assert_eq!(pinned, PINNED);
        assert_eq!(shard_of(fixed, 1), 0);
        assert_eq!(shard_of(fixed, 0), 0);
    }

    const PINNED: [u16; 9] = [5, 101, 27966, 5, 85, 10593, 7, 807, 12390];
}
