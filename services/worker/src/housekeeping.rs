//! Periodic work over every shard: sample the stream length, pending count and undelivered count for
//! the metrics, and trim each stream below what every consumer group has acknowledged.
//!
//! The trim point of a group is its oldest pending entry, or, with nothing pending, its last delivered
//! id: everything older has been acknowledged. The stream is trimmed (`XTRIM MINID`) to the lowest trim
//! point over all groups, so a second group (an indexer, say) never loses entries it has not read. Each
//! replica does this; trims are idempotent and only ever remove acknowledged entries, because ids only
//! grow and an entry, once acknowledged, stays so. The dead-letter streams are capped by `MAXLEN ~` when
//! written instead.

use crate::shard::{pause, Shared};
use chat_bus::keys::PERSIST_GROUP;
use chat_bus::{Bus, BusResult};
use deadpool_redis::redis::{self, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::watch;

/// Runs until `stop` turns true.
pub async fn run(shared: Arc<Shared>, bus: Bus, shards: u16, mut stop: watch::Receiver<bool>) {
    loop {
        for shard in 0..shards {
            if let Err(e) = tidy(&shared, &bus, shard).await {
                tracing::debug!(shard, error = %e, "housekeeping failed; will try again");
            }
        }
        if pause(&mut stop, shared.settings.housekeeping_interval).await {
            break;
        }
    }
}

/// A stream id as (ms, seq), ordered as Redis orders them.
fn parse_id(s: &str) -> Option<(u64, u64)> {
    let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

struct Group {
    name: String,
    pending: i64,
    last_delivered: (u64, u64),
    lag: Option<i64>,
}

fn parse_groups(v: Value) -> Vec<Group> {
    let Value::Array(groups) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for g in groups {
        let pairs: Vec<(Value, Value)> = match g {
            Value::Array(flat) => {
                let mut it = flat.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                pairs
            }
            Value::Map(pairs) => pairs,
            _ => continue,
        };
        let mut grp = Group {
            name: String::new(),
            pending: 0,
            last_delivered: (0, 0),
            lag: None,
        };
        for (k, v) in pairs {
            let key = match &k {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => continue,
            };
            match (key.as_str(), v) {
                ("name", Value::BulkString(b)) => grp.name = String::from_utf8_lossy(&b).into(),
                ("pending", Value::Int(n)) => grp.pending = n,
                ("lag", Value::Int(n)) => grp.lag = Some(n),
                ("last-delivered-id", Value::BulkString(b)) => {
                    grp.last_delivered = parse_id(&String::from_utf8_lossy(&b)).unwrap_or((0, 0));
                }
                _ => {}
            }
        }
        out.push(grp);
    }
    out
}

async fn tidy(shared: &Shared, bus: &Bus, shard: u16) -> BusResult<()> {
    let key = shared.keys.stream(shard);
    let mut c = bus.conn().await?;
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut *c).await?;
    if !exists {
        return Ok(());
    }
    let groups = parse_groups(
        redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&key)
            .query_async(&mut *c)
            .await?,
    );
    let mut floor: Option<(u64, u64)> = None;
    let (mut pending, mut undelivered) = (0, 0);
    for g in &groups {
        let mut point = g.last_delivered;
        if g.pending > 0 {
            // XPENDING summary: [count, smallest id, greatest id, consumers]
            let summary: Value = redis::cmd("XPENDING")
                .arg(&key)
                .arg(&g.name)
                .query_async(&mut *c)
                .await?;
            if let Value::Array(parts) = summary {
                if let Some(Value::BulkString(b)) = parts.get(1) {
                    if let Some(id) = parse_id(&String::from_utf8_lossy(b)) {
                        point = point.min(id);
                    }
                }
            }
        }
        floor = Some(floor.map_or(point, |f: (u64, u64)| f.min(point)));
        if g.name == PERSIST_GROUP {
            pending = g.pending;
            undelivered = g.lag.unwrap_or(-1);
        }
    }
    if let Some((ms, seq)) = floor.filter(|f| *f > (0, 0)) {
        let trimmed: u64 = redis::cmd("XTRIM")
            .arg(&key)
            .arg("MINID")
            .arg(format!("{ms}-{seq}"))
            .query_async(&mut *c)
            .await?;
        shared.metrics.trimmed.fetch_add(trimmed, Relaxed);
    }
    let len: i64 = redis::cmd("XLEN").arg(&key).query_async(&mut *c).await?;
    shared.metrics.set_shard(shard, len, pending, undelivered);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_like_redis() {
        assert!(parse_id("10-2") < parse_id("10-10"));
        assert!(parse_id("9-99") < parse_id("10-0"));
        assert_eq!(parse_id("5"), Some((5, 0)));
        assert_eq!(parse_id("x-1"), None);
    }
}
