//! The rooms' persisted watermarks: `P:v1:{s}:room:<r>:persisted`, the highest `seq` of a room such
//! that every message of the room up to it is in MySQL or in the dead-letter stream. The send script
//! trims a room's recent-message log in Redis only up to it, so history (MySQL merged with that log)
//! never has a hole while the worker is behind.
//!
//! **Why "stored in a committed batch" is not enough.** Replicas share a shard's stream: replica A may
//! hold seqs 1–500 of a room (read, not yet committed: MySQL failing for it, or A dead and its entries
//! waiting for `XAUTOCLAIM`) while replica B commits 501–1000. Raising the mark to 1000 then would let
//! the send script trim 1–500 from Redis before anyone stored them. So after a batch is acknowledged,
//! one script (atomic, on the shard's keys) reads the smallest id still pending in the group
//! (`XPENDING` summary) and raises a room's mark only to the `seq` of a message whose stream entry lies
//! **below** it:
//!
//! - every entry below the smallest pending id has been delivered (the group delivers in id order) and
//!   acknowledged, and an entry is acknowledged only once committed to MySQL or dead-lettered;
//! - one room's messages are appended in `seq` order (the send script takes the `seq` and `XADD`s in
//!   one step), so all of its lower `seq`s lie below that entry too.
//!
//! Candidates held back by an older pending entry are kept here and offered again with every later
//! batch, and every half second while the shard is idle, so a room's mark catches up without waiting
//! for its next message. Pending entries of any kind hold the marks back (an edit waiting for its
//! message, an entry of a newer envelope version): conservative, it only keeps more in Redis.
//!
//! **Dead letters** count as handled: MySQL will never take them without an operator replaying them,
//! and waiting for them would pin the room's log at the hard cap for good. Their Redis copy goes at the
//! next trims like any stored message; the dead-letter stream keeps them.
//!
//! The mark only rises (`SET` only above the current value, in the script), expires with the room's
//! other keys (`ROOM_KEY_TTL`, refreshed by every batch of the room and every send), and a missing one
//! reads as 0 to the send script: nothing is trimmed below the hard cap until the worker sets it.

use chat_bus::keys::ROOM_KEY_TTL;
use chat_bus::Keys;
use deadpool_redis::redis::{RedisResult, Script};
use std::collections::HashMap;
use std::sync::LazyLock;
use uuid::Uuid;

/// KEYS: 1 the shard stream, 2… the rooms' marks. ARGV: 1 group, 2 TTL ms, then triples (index of
/// the room's key in KEYS, stream entry id, seq). Returns the smallest pending id ('' when none is
/// pending) and each room's mark afterwards.
static RAISE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local function parse(id)
  local ms, sq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(sq)
end
local function below(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
local minp = p[2]
local ttl = tonumber(ARGV[2])
local best = {}
for i = 3, #ARGV, 3 do
  local k, id, seq = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2])
  if (not minp) or below(id, minp) then
    if (best[k] or 0) < seq then best[k] = seq end
  end
end
local out = {minp or ''}
for k = 2, #KEYS do
  local cur = tonumber(redis.call('GET', KEYS[k]) or '0') or 0
  local s = best[k]
  if s and s > cur then
    redis.call('SET', KEYS[k], string.format('%.0f', s), 'PX', ttl)
    cur = s
  elseif cur > 0 then
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
  out[#out + 1] = string.format('%.0f', cur)
end
return out
",
    )
});

/// Rooms whose candidates one shard loop keeps at most (each is a key of every script call).
const MAX_HELD: usize = 10_000;

/// A stream entry id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryId(u64, u64);

impl EntryId {
    pub fn parse(id: &str) -> Option<Self> {
        let (ms, seq) = id.split_once('-')?;
        Some(Self(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// One shard's marks waiting to be raised: per room, the highest `seq` handled (stored or
/// dead-lettered) and its entry id.
#[derive(Debug, Default)]
pub struct Watermarks {
    held: HashMap<Uuid, (EntryId, i64)>,
}

impl Watermarks {
    /// Notes a handled message (its batch is acknowledged, or about to be).
    pub fn handled(&mut self, room: Uuid, entry: &str, seq: i64) {
        let Some(id) = EntryId::parse(entry) else {
            return;
        };
        if self.held.len() >= MAX_HELD && !self.held.contains_key(&room) {
            // A pending entry has held the shard's marks back for long (a stalled replica, an entry
            // of a newer envelope version): stop collecting rooms, so each script call stays small.
            // Such a room's mark only lags until its next message's batch.
            return;
        }
        let e = self.held.entry(room).or_insert((id, seq));
        if seq > e.1 {
            *e = (id, seq);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Raises the marks of the rooms whose candidate lies below every pending entry; keeps the others
    /// for the next call. Returns the rooms' marks afterwards.
    ///
    /// # Errors
    /// Redis failures; the candidates are kept.
    pub async fn raise(
        &mut self,
        conn: &mut chat_bus::Conn,
        keys: &Keys,
        shard: u16,
        group: &str,
    ) -> RedisResult<HashMap<Uuid, i64>> {
        if self.held.is_empty() {
            return Ok(HashMap::new());
        }
        let rooms: Vec<(Uuid, EntryId, i64)> =
            self.held.iter().map(|(r, (id, s))| (*r, *id, *s)).collect();
        let mut inv = RAISE.prepare_invoke();
        inv.key(keys.stream(shard));
        for (room, _, _) in &rooms {
            inv.key(keys.room_persisted(shard, *room));
        }
        inv.arg(group)
            .arg(u64::try_from(ROOM_KEY_TTL.as_millis()).unwrap_or(u64::MAX));
        for (i, (_, id, seq)) in rooms.iter().enumerate() {
            inv.arg(i + 2).arg(id.to_string()).arg(*seq);
        }
        let reply: Vec<String> = inv.invoke_async(conn).await?;
        let min_pending = reply.first().and_then(|s| EntryId::parse(s));
        let mut marks = HashMap::new();
        for ((room, id, _), mark) in rooms.iter().zip(reply.iter().skip(1)) {
            if min_pending.is_none_or(|p| *id < p) {
                self.held.remove(room);
            }
            marks.insert(*room, mark.parse().unwrap_or(0));
        }
        Ok(marks)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_as_redis_orders_them() {
        let a = EntryId::parse("1700000000000-9").unwrap();
        let b = EntryId::parse("1700000000000-10").unwrap();
        let c = EntryId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-10");
        assert!(EntryId::parse("x-1").is_none() && EntryId::parse("12").is_none());
    }

    #[test]
    fn a_room_keeps_its_highest_candidate() {
        let mut w = Watermarks::default();
        let room = Uuid::now_v7();
        w.handled(room, "5-0", 7);
        w.handled(room, "4-0", 3);
        w.handled(room, "not-an-id", 99);
        assert_eq!(w.held[&room], (EntryId(5, 0), 7));
    }
}
