//! Durable writes: a script on the node of its keys, then `WAIT` for that node's replicas.
//!
//! A write is acknowledged once `REDIS_WAIT_REPLICAS` replicas confirmed it (`WAIT` in the same round
//! trip, on the same connection: it covers the script's writes). When fewer confirm in time, the node
//! is asked how many replicas it has at all (`INFO replication`, from a script on the same key so the
//! cluster routes it to the same master):
//!
//! * as many as asked for, or more: a replica is slow or its link is down, and the write is **not**
//!   acknowledged (`NOT_REPLICATED`; the client retries with the same `clientMsgId`);
//! * fewer — typically none, right after a failover promoted the master's only replica — then there
//!   is nobody to wait for until a replacement replica has synced (a restarted node, a new pod). The
//!   write is acknowledged with what the node has: it is in its AOF (written before the reply, so a
//!   crash of the Redis process loses nothing; a crash of the machine can lose up to a second with
//!   `appendfsync everysec`). This is counted ([`unreplicated_acks_total`]) and logged, and the node's
//!   replica count is remembered for [`KNOWN_FOR`] so that the writes meanwhile do not each wait out
//!   the timeout; then it is asked again.
//!
//! Refusing every write of the shard until a replica is back would turn one lost master into an outage
//! of its rooms as long as the replacement takes (minutes on Kubernetes, forever on a machine that
//! lost a node); a chat system keeps going there, as Redis itself does (`min-replicas-to-write` is off
//! by default).

use crate::{Realtime, RtError, RtResult};
use chat_bus::slot::hash_tag;
use deadpool_redis::redis::{self, Script, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

/// How long a node's replica count, once found short, is trusted before it is asked again.
pub const KNOWN_FOR: Duration = Duration::from_secs(1);

static UNREPLICATED_ACKS: AtomicU64 = AtomicU64::new(0);
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

/// Writes this process acknowledged with fewer replicas than `REDIS_WAIT_REPLICAS` because their
/// master had fewer (after a failover, until a replacement replica synced).
pub fn unreplicated_acks_total() -> u64 {
    UNREPLICATED_ACKS.load(Relaxed)
}

/// The replica count of a master, by the hash tag of the keys it serves.
#[derive(Debug, Default)]
pub(crate) struct Replicas {
    short: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Replicas {
    /// The replicas to wait for on the node of `tag`: `wanted`, or fewer while the node is known to
    /// have fewer.
    fn to_wait_for(&self, tag: &str, wanted: u32) -> u32 {
        if wanted == 0 {
            return 0; // a single Redis: nothing to look up on every write
        }
        let mut short = self
            .short
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match short.get(tag) {
            Some(&(n, at)) if at.elapsed() < KNOWN_FOR => n.min(wanted),
            Some(_) => {
                short.remove(tag);
                wanted
            }
            None => wanted,
        }
    }

    fn note_short(&self, tag: &str, n: u32) {
        let mut short = self
            .short
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        short.insert(tag.to_owned(), (n, Instant::now()));
    }
}

/// KEYS: any key of the node to ask. Returns the master's connected replicas.
static CONNECTED_REPLICAS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local info = redis.call('INFO', 'replication')
return tonumber(string.match(info, 'connected_slaves:(%d+)')) or 0
",
    )
});

impl Realtime {
    /// Runs `script` on the node of its keys, loading it once if Redis does not know it yet, then
    /// waits for the replicas (see the module docs). `pre`, a command on another key, rides along:
    /// in the same round trip on a single Redis, at the same time on a cluster (where its key lives
    /// in another slot). Returns the script's reply and whether the write may be acknowledged.
    pub(crate) async fn eval_durable(
        &self,
        conn: &mut chat_bus::Conn,
        pre: Option<&redis::Cmd>,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> RtResult<(Value, bool)> {
        let d = self.bus.durability();
        let key = keys.first().copied().unwrap_or_default();
        let wait = self.replicas.to_wait_for(hash_tag(key), d.replicas);
        let cluster = conn.is_cluster();
        let mut pipe = redis::pipe();
        if let (Some(p), false) = (pre, cluster) {
            pipe.add_command(p.clone()).ignore();
        }
        pipe.cmd("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        if wait > 0 {
            pipe.cmd("WAIT")
                .arg(wait)
                .arg(u64::try_from(d.timeout.as_millis()).unwrap_or(u64::MAX));
        }
        // WAIT holds up the rest of its connection until the replicas answer: durable writes take
        // turns on a few connections of their own instead of stalling everything else.
        let mut durable = if wait > 0 {
            self.bus.durable_conn().await?
        } else {
            conn.clone()
        };
        for attempt in 0..2 {
            let res = match (pre, cluster) {
                (Some(p), true) => {
                    let mut side = conn.clone();
                    let (main, side) = futures_util::future::join(
                        pipe.query_async::<Vec<Value>>(&mut *durable),
                        p.query_async::<Value>(&mut *side),
                    )
                    .await;
                    side?;
                    main
                }
                _ => pipe.query_async::<Vec<Value>>(&mut *durable).await,
            };
            match res {
                Ok(mut replies) => {
                    let mut ok = true;
                    if wait > 0 {
                        let confirmed = match replies.pop() {
                            Some(Value::Int(n)) => u32::try_from(n).unwrap_or(0),
                            _ => 0,
                        };
                        ok = confirmed >= wait || self.fewer_replicas_than(conn, key, wait).await;
                    }
                    return Ok((replies.pop().unwrap_or(Value::Nil), ok));
                }
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError && attempt == 0 => {
                    let _: String = script.prepare_invoke().load_async(&mut *durable).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RtError::Unavailable(anyhow::anyhow!(
            "script could not be loaded"
        )))
    }

    /// After a short `WAIT`: whether the node of `key` has fewer than `wanted` replicas at all
    /// (then the write stands on the node's AOF, is counted and remembered); false when it has
    /// them (a replica is slow: not acknowledged) or could not be asked.
    async fn fewer_replicas_than(&self, conn: &mut chat_bus::Conn, key: &str, wanted: u32) -> bool {
        let n: u32 = match CONNECTED_REPLICAS.key(key).invoke_async(&mut **conn).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not ask a Redis master for its replicas");
                return false;
            }
        };
        if n >= wanted {
            return false;
        }
        let tag = hash_tag(key);
        self.replicas.note_short(tag, n);
        let total = UNREPLICATED_ACKS.fetch_add(1, Relaxed) + 1;
        if crate::warning_due(&LAST_WARNING) {
            tracing::warn!(
                shard = tag,
                replicas = n,
                wanted,
                total,
                "a Redis master has fewer replicas than REDIS_WAIT_REPLICAS (after a failover, until \
                 a replacement replica has synced): writes are acknowledged on its AOF alone"
            );
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_replica_count_is_remembered_for_a_while() {
        let r = Replicas::default();
        assert_eq!(r.to_wait_for("3", 1), 1);
        r.note_short("3", 0);
        assert_eq!(r.to_wait_for("3", 1), 0);
        assert_eq!(r.to_wait_for("4", 1), 1, "other shards are unaffected");
        r.note_short("5", 1);
        assert_eq!(r.to_wait_for("5", 2), 1);
    }
}
