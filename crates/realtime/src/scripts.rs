//! The Redis scripts of the room path. Each runs atomically in one round trip and touches only keys of
//! one room, which all share the hash tag of the room's shard (see [`crate::RoomKeys`]), so each is legal
//! on Redis Cluster.
//!
//! Every durable room event (a message, an edit, a delete, a receipt) is, in the same script:
//! appended to the shard's persistence stream (the worker's input; msgpack envelope, see
//! `chat_bus::stream`), given a **position** `pos` (Redis `TIME` in microseconds, forced strictly
//! increasing per room), added to the room's capped **event log** (a sorted set scored by `pos`), and
//! **published** on the room channel. The published text and the log member are the same JSON:
//! `{"e":<event name>,"pos":<pos>,"prev":<previous pos of the room, 0 if none>,"d":<payload>}`, plus
//! `,"tp":<W3C traceparent>` at the end when the caller passed one (tracing on), so the gateways' fan-out
//! continues the sender's trace. Gateways use `prev` to notice a message pub/sub lost (and refill from
//! the log), and clients use `pos` as their connection-state-recovery offset.

use deadpool_redis::redis::Script;
use std::sync::LazyLock;

/// Helpers shared by the scripts (prepended to each).
const PRELUDE: &str = r#"
local function room_event(pos_key, log_key, channel, cap, ttl, name, data, now_us, tp)
  local prev = tonumber(redis.call('GET', pos_key) or '0')
  local pos = now_us
  if pos <= prev then pos = prev + 1 end
  local ps = string.format('%.0f', pos)
  redis.call('SET', pos_key, ps, 'PX', ttl)
  local tail = '}'
  if tp ~= '' then tail = ',"tp":"' .. tp .. '"}' end
  local ev = '{"e":"' .. name .. '","pos":' .. ps .. ',"prev":' .. string.format('%.0f', prev) .. ',"d":' .. data .. tail
  redis.call('ZADD', log_key, ps, ev)
  local n = redis.call('ZCARD', log_key)
  if n > cap then redis.call('ZREMRANGEBYRANK', log_key, 0, n - cap - 1) end
  redis.call('PEXPIRE', log_key, ttl)
  redis.call('__PUBLISH__', channel, ev)
  return ps
end

-- Removes the `old` entries, which are the lowest of the message log, and their ids.
local function drop_msgs(msgs, ids, old)
  for _, m in ipairs(old) do
    local ok, d = pcall(cjson.decode, m)
    if ok and type(d) == 'table' and d.id then redis.call('HDEL', ids, d.id) end
  end
  redis.call('ZREMRANGEBYRANK', msgs, 0, #old - 1)
end

-- Trims a room's message log. Beyond `cap` entries only messages the worker has stored go (seq at or
-- below the persisted watermark; a missing watermark counts as 0, so nothing is known to be stored),
-- at most 100 per call, so a log grown while the worker was behind shrinks back over a few sends
-- instead of in one long script. Beyond `hard` entries the oldest go whether stored or not. Returns
-- how many of those were not stored.
local function trim_msgs(msgs, ids, cap, mark_key, hard)
  local n = redis.call('ZCARD', msgs)
  if n <= cap then return 0 end
  local mark = tonumber(redis.call('GET', mark_key) or '0') or 0
  local extra = n - cap
  if extra > 100 then extra = 100 end
  local saved = redis.call('ZRANGEBYSCORE', msgs, '-inf', mark, 'LIMIT', 0, extra)
  if #saved > 0 then
    drop_msgs(msgs, ids, saved)
    n = n - #saved
  end
  if n <= hard then return 0 end
  local old = redis.call('ZRANGE', msgs, 0, n - hard - 1, 'WITHSCORES')
  local texts, unsaved = {}, 0
  for i = 1, #old, 2 do
    texts[#texts + 1] = old[i]
    if tonumber(old[i + 1]) > mark then unsaved = unsaved + 1 end
  end
  drop_msgs(msgs, ids, texts)
  return unsaved
end
"#;

/// Send one message.
///
/// KEYS: 1 seq, 2 pos, 3 log, 4 msgs, 5 ids, 6 rate window of (room, sender), 7 dedupe key of
/// (room, sender, clientMsgId), 8 shard stream, 9 room channel, 10 persisted watermark.
/// ARGV: 1 limit, 2 window ms, 3 message id, 4 JSON head (up to `"seq":`), 5 JSON tail (after the
/// seq), 6 room id, 7 sender id, 8 kind, 9 content, 10 clientMsgId or '', 11 created_at ms,
/// 12 traceparent or '', 13 log cap, 14 dedupe TTL s, 15 key TTL ms, 16 hard cap of `msgs`.
///
/// The message log `msgs` keeps the last `log cap` messages plus every message the worker has not
/// stored yet (seq above the watermark), up to the hard cap (see `trim_msgs`).
///
/// Returns `{'ok', message JSON, pos, unsaved messages the hard cap trimmed}`, `{'dup', original
/// message JSON}`, `{'rl', retry ms}`, or `{'noseq'}` when the room's counter is missing (the caller seeds it from MySQL and retries).
const SEND: &str = r#"
local t = redis.call('TIME')
local sec, usec = tonumber(t[1]), tonumber(t[2])
local now_ms = sec * 1000 + math.floor(usec / 1000)
if ARGV[10] ~= '' then
  local orig = redis.call('GET', KEYS[7])
  if orig then
    -- a write, so that the caller's WAIT covers the original too (it waits for this connection's
    -- last write, and the original may have gone out on another connection)
    redis.call('EXPIRE', KEYS[7], ARGV[14])
    return {'dup', orig}
  end
end
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now_ms - window)
if redis.call('ZCARD', KEYS[6]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
  local retry = tonumber(oldest[2]) + window - now_ms
  if retry < 1 then retry = 1 end
  return {'rl', string.format('%.0f', retry)}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'noseq'} end
redis.call('ZADD', KEYS[6], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[6], window)
local seq = redis.call('INCR', KEYS[1])
local msg = ARGV[4] .. seq .. ARGV[5]
local cap, ttl = tonumber(ARGV[13]), tonumber(ARGV[15])
redis.call('ZADD', KEYS[4], seq, msg)
redis.call('HSET', KEYS[5], ARGV[3], seq)
local forced = trim_msgs(KEYS[4], KEYS[5], cap, KEYS[10], tonumber(ARGV[16]))
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
redis.call('PEXPIRE', KEYS[10], ttl)
if ARGV[10] ~= '' then redis.call('SET', KEYS[7], msg, 'EX', ARGV[14]) end
local env = {v = 1, t = 'message_created', id = ARGV[3], room_id = ARGV[6], seq = seq,
  sender_id = ARGV[7], kind = ARGV[8], content = ARGV[9], created_at = tonumber(ARGV[11])}
if ARGV[10] ~= '' then env.client_msg_id = ARGV[10] end
if ARGV[12] ~= '' then env.traceparent = ARGV[12] end
redis.call('XADD', KEYS[8], '*', 'e', cmsgpack.pack(env))
local pos = room_event(KEYS[2], KEYS[3], KEYS[9], cap, ttl, 'receive_message', msg, sec * 1000000 + usec, ARGV[12])
return {'ok', msg, pos, forced}
"#;

/// Edit or delete a message.
///
/// KEYS: 1 pos, 2 log, 3 msgs, 4 shard stream, 5 room channel.
/// ARGV: 1 `edit`|`delete`, 2 message id, 3 seq, 4 room id, 5 actor id, 6 new content (edit),
/// 7 time ms, 8 time ISO-8601, 9 event payload JSON, 10 traceparent or '', 11 log cap, 12 key TTL ms.
///
/// Returns `{'ok', pos}`, or `{'gone'}` when the recent copy of the message is already deleted.
const MUTATE: &str = r#"
local t = redis.call('TIME')
local sec, usec = tonumber(t[1]), tonumber(t[2])
local edit = ARGV[1] == 'edit'
local seq = ARGV[3]
local cur = redis.call('ZRANGEBYSCORE', KEYS[3], seq, seq)
if cur[1] then
  local ok, m = pcall(cjson.decode, cur[1])
  if ok and type(m) == 'table' then
    if m.deletedAt then return {'gone'} end
    if edit then
      m.content = ARGV[6]
      m.editedAt = ARGV[8]
    else
      m.content = cjson.null
      m.deletedAt = ARGV[8]
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[3], seq, seq)
    redis.call('ZADD', KEYS[3], seq, cjson.encode(m))
  end
end
local env
if edit then
  env = {v = 1, t = 'message_edited', id = ARGV[2], room_id = ARGV[4], content = ARGV[6], edited_at = tonumber(ARGV[7])}
else
  env = {v = 1, t = 'message_deleted', id = ARGV[2], room_id = ARGV[4], deleted_at = tonumber(ARGV[7]), by = ARGV[5]}
end
if ARGV[10] ~= '' then env.traceparent = ARGV[10] end
redis.call('XADD', KEYS[4], '*', 'e', cmsgpack.pack(env))
local name = 'message_deleted'
if edit then name = 'message_edited' end
local pos = room_event(KEYS[1], KEYS[2], KEYS[5], tonumber(ARGV[11]), tonumber(ARGV[12]), name, ARGV[9], sec * 1000000 + usec, ARGV[10])
return {'ok', pos}
"#;

/// Move a member's read or delivered cursor forward.
///
/// KEYS: 1 cursor hash (user → seq), 2 seq, 3 msgs, 4 pos, 5 log, 6 shard stream, 7 room channel.
/// ARGV: 1 user id, 2 wanted seq, 3 floor (the cursor MySQL has), 4 `read`|`delivered`, 5 time ms,
/// 6 time ISO-8601, 7 room id, 8 traceparent or '', 9 log cap, 10 payload JSON head (up to
/// `"seq":`), 11 key TTL ms.
///
/// The cursor never moves backwards and never past the room's last message. Returns `{'ok', seq}`
/// when it moved (and the receipt was broadcast), `{'same', seq}` when it was already there, or
/// `{'noseq'}` when the room's counter is missing (the caller seeds it from MySQL and retries: without
/// it, "the last message" of a room whose history is only in MySQL would be 0).
const CURSOR: &str = r#"
local t = redis.call('TIME')
local sec, usec = tonumber(t[1]), tonumber(t[2])
local topv = redis.call('GET', KEYS[2])
if not topv then return {'noseq'} end
local top = tonumber(topv)
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local floor = tonumber(ARGV[3])
if floor > cur then cur = floor end
local want = tonumber(ARGV[2])
if want > top then want = top end
if want <= cur then return {'same', string.format('%.0f', cur)} end
local ttl = tonumber(ARGV[11])
redis.call('HSET', KEYS[1], ARGV[1], want)
redis.call('PEXPIRE', KEYS[1], ttl)
local mid = 'null'
local e = redis.call('ZRANGEBYSCORE', KEYS[3], want, want)
if e[1] then
  local ok, d = pcall(cjson.decode, e[1])
  if ok and type(d) == 'table' and d.id then mid = '"' .. d.id .. '"' end
end
local read = ARGV[4] == 'read'
local ws = string.format('%.0f', want)
local at_field, name, kind = 'deliveredAt', 'delivered', 'delivered_cursor'
if read then at_field, name, kind = 'readAt', 'message_read', 'read_cursor' end
local data = ARGV[10] .. ws .. ',"messageId":' .. mid .. ',"' .. at_field .. '":"' .. ARGV[6] .. '"}'
local env = {v = 1, t = kind, room_id = ARGV[7], user_id = ARGV[1], seq = want, at = tonumber(ARGV[5])}
if ARGV[8] ~= '' then env.traceparent = ARGV[8] end
redis.call('XADD', KEYS[6], '*', 'e', cmsgpack.pack(env))
room_event(KEYS[4], KEYS[5], KEYS[7], tonumber(ARGV[9]), ttl, name, data, sec * 1000000 + usec, ARGV[8])
return {'ok', ws}
"#;

/// The three scripts, for one mode: on a cluster they publish with `SPUBLISH` (sharded pub/sub: the
/// channel is in `KEYS`, in the same slot as the room's other keys), on a single Redis with `PUBLISH`.
pub(crate) struct Scripts {
    pub send: Script,
    pub mutate: Script,
    pub cursor: Script,
}

impl Scripts {
    fn new(publish: &str) -> Self {
        let prelude = PRELUDE.replace("__PUBLISH__", publish);
        Self {
            send: Script::new(&format!("{prelude}{SEND}")),
            mutate: Script::new(&format!("{prelude}{MUTATE}")),
            cursor: Script::new(&format!("{prelude}{CURSOR}")),
        }
    }
}

static SINGLE: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("PUBLISH"));
static CLUSTER: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("SPUBLISH"));

/// The scripts of the mode `publish` names (`PUBLISH` or `SPUBLISH`).
pub(crate) fn scripts(publish: &str) -> &'static Scripts {
    if publish == "SPUBLISH" {
        &CLUSTER
    } else {
        &SINGLE
    }
}
