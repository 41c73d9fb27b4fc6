//! Sharded pub/sub on a Redis Cluster, by hand: one RESP3 connection per master, each channel
//! subscribed with `SSUBSCRIBE` on the master that owns its slot, and an exact account of which
//! channel is subscribed on which connection.
//!
//! Why not the redis crate's cluster connection: it re-subscribes by itself after a slot refresh
//! or a reconnect and drops the results, and it replaces a node connection that misses a ping, so
//! after a failover subscriptions vanished without a trace (the failover test caught it: a gateway
//! stopped receiving the rooms of the killed shard, and even some of the healthy ones). Here
//! nothing is subscribed behind the caller's back, and every way a subscription can be lost is
//! reported as [`Incoming::Lost`] with the channels it took, so the gateway subscribes them again
//! and refills their rooms from the logs:
//!
//! * a node connection closes (its master was killed, the link broke): its channels;
//! * the server drops a channel we did not unsubscribe (its slot moved, its master became a
//!   replica): every channel of that connection, and the connection is closed — the redis crate
//!   would take that push for the reply of the next command on it;
//! * [`Shards::check`] (the gateway's keepalive): a node that does not answer a ping, or a channel
//!   whose slot is now served by another master.
//!
//! The slot map comes from `CLUSTER SLOTS` (asked of a connected node, else of the seeds), refreshed
//! at every check and whenever something above went wrong; channels are routed by it with the same
//! CRC16 the cluster uses ([`crate::slot`]).

use crate::conn::REDIS_TIMEOUT;
use crate::pubsub::Incoming;
use crate::slot::hash_slot;
use crate::{BusError, BusResult};
use deadpool_redis::redis::{
    self, aio::MultiplexedConnection, AsyncConnectionConfig, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, Msg, ProtocolVersion, PushInfo, PushKind, Value,
};
use futures_util::future::join_all;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// A node's address as the cluster announces it.
type Addr = (String, u16);

/// The sharded subscriber's connections and subscriptions (clones share them).
#[derive(Clone)]
pub struct Shards(Arc<Shared>);

struct Shared {
    seeds: Vec<ConnectionInfo>,
    /// Every node connection pushes here, tagged with its id.
    tx: mpsc::UnboundedSender<(u64, PushInfo)>,
    /// Never held across an await.
    state: Mutex<State>,
    /// One slot-map refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Slot ranges and their masters, sorted by first slot.
    slots: Vec<(u16, u16, Addr)>,
    /// The slot map may be out of date.
    stale: bool,
    nodes: HashMap<Addr, Node>,
    /// Which node connection each subscribed channel is on.
    owner: HashMap<String, u64>,
    /// Channels whose `SUNSUBSCRIBE` we sent (on that node connection) and whose confirmation has
    /// not arrived.
    leaving: HashMap<String, u64>,
    next_id: u64,
}

#[derive(Clone)]
struct Node {
    id: u64,
    conn: MultiplexedConnection,
}

impl State {
    fn master_of(&self, slot: u16) -> Option<&Addr> {
        let i = self.slots.partition_point(|(start, _, _)| *start <= slot);
        let (start, end, addr) = self.slots.get(i.checked_sub(1)?)?;
        (*start <= slot && slot <= *end).then_some(addr)
    }

    fn addr_of(&self, id: u64) -> Option<&Addr> {
        self.nodes.iter().find(|(_, n)| n.id == id).map(|(a, _)| a)
    }

    /// Forgets a node connection; returns the channels that were subscribed on it.
    fn drop_node(&mut self, id: u64) -> Vec<String> {
        self.nodes.retain(|_, n| n.id != id);
        self.stale = true;
        let lost: Vec<String> = self
            .owner
            .iter()
            .filter(|(_, n)| **n == id)
            .map(|(ch, _)| ch.clone())
            .collect();
        for ch in &lost {
            self.owner.remove(ch);
        }
        self.leaving.retain(|_, n| *n != id);
        lost
    }
}

impl Shards {
    /// A subscriber over the cluster named by its seed nodes (`redis://` URLs). Nothing is
    /// connected until the first subscription.
    ///
    /// # Errors
    /// A seed that is not a Redis URL.
    pub fn new(seeds: &[String]) -> BusResult<(Self, mpsc::UnboundedReceiver<(u64, PushInfo)>)> {
        let seeds = seeds
            .iter()
            .map(|s| s.as_str().into_connection_info())
            .collect::<Result<Vec<_>, _>>()?;
        if seeds.is_empty() {
            return Err(BusError::Config(
                "a cluster needs at least one seed node".into(),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let state = State {
            stale: true,
            ..State::default()
        };
        let shared = Shared {
            seeds,
            tx,
            state: Mutex::new(state),
            refreshing: tokio::sync::Mutex::new(()),
        };
        Ok((Self(Arc::new(shared)), rx))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Subscribes `channels`, each on its slot's master. Returns those that could not be
    /// subscribed (their master is unknown or unreachable, mid-failover), with the first error.
    pub async fn subscribe(&self, channels: &[String]) -> (Vec<String>, Option<BusError>) {
        let mut first: Option<BusError> = None;
        if self.state().stale {
            if let Err(e) = self.refresh().await {
                first = Some(e);
            }
        }
        // Route every channel, and connect the masters we have no connection to yet.
        let routes: Vec<(String, Option<Addr>)> = {
            let st = self.state();
            channels
                .iter()
                .map(|ch| (ch.clone(), st.master_of(hash_slot(ch)).cloned()))
                .collect()
        };
        let missing: HashSet<Addr> = {
            let st = self.state();
            routes
                .iter()
                .filter_map(|(_, a)| a.as_ref())
                .filter(|a| !st.nodes.contains_key(*a))
                .cloned()
                .collect()
        };
        for r in join_all(missing.into_iter().map(|a| self.connect(a))).await {
            if let Err(e) = r {
                self.state().stale = true;
                first.get_or_insert(e);
            }
        }
        // One SSUBSCRIBE per channel: each reply is one push, matched to its command.
        let calls = routes.into_iter().map(|(ch, addr)| async move {
            let node = addr.and_then(|a| self.state().nodes.get(&a).cloned());
            let Some(mut node) = node else {
                return (ch, None);
            };
            let r = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("SSUBSCRIBE").arg(&ch).exec_async(&mut node.conn),
            )
            .await;
            (ch, Some((node.id, r)))
        });
        let mut failed = Vec::new();
        for (ch, outcome) in join_all(calls).await {
            let mut st = self.state();
            match outcome {
                Some((id, Ok(Ok(())))) if st.addr_of(id).is_some() => {
                    st.owner.insert(ch, id);
                }
                Some((_, Ok(Err(e)))) => {
                    st.stale = true;
                    first.get_or_insert(e.into());
                    failed.push(ch);
                }
                _ => {
                    st.stale = true;
                    failed.push(ch);
                }
            }
        }
        if !failed.is_empty() && first.is_none() {
            first = Some(BusError::Config(
                "no reachable master for some channels".into(),
            ));
        }
        (failed, first)
    }

    /// Unsubscribes one channel (nothing to do if it is not subscribed).
    ///
    /// # Errors
    /// Its node did not answer.
    pub async fn unsubscribe(&self, channel: &str) -> BusResult<()> {
        let node = {
            let mut st = self.state();
            let Some(id) = st.owner.remove(channel) else {
                return Ok(());
            };
            let node = st.nodes.values().find(|n| n.id == id).cloned();
            if node.is_some() {
                st.leaving.insert(channel.to_owned(), id);
            }
            node
        };
        let Some(mut node) = node else { return Ok(()) };
        let r = tokio::time::timeout(
            REDIS_TIMEOUT,
            redis::cmd("SUNSUBSCRIBE")
                .arg(channel)
                .exec_async(&mut node.conn),
        )
        .await;
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.state().leaving.remove(channel);
                Err(e.into())
            }
            // Its confirmation may still come.
            Err(_) => Err(timeout_error()),
        }
    }

    /// The keepalive: refreshes the slot map, pings every node connection, and returns the
    /// channels that are no longer subscribed where they should be (their node did not answer,
    /// or their slot is served by another master now). They are forgotten: subscribe them again.
    pub async fn check(&self) -> Vec<String> {
        let refreshed = self.refresh().await;
        let nodes: Vec<Node> = self.state().nodes.values().cloned().collect();
        let pings = nodes.into_iter().map(|mut n| async move {
            let r = tokio::time::timeout(
                REDIS_TIMEOUT,
                redis::cmd("PING").query_async::<Value>(&mut n.conn),
            )
            .await;
            (n.id, matches!(r, Ok(Ok(_))))
        });
        let results = join_all(pings).await;
        let mut st = self.state();
        let mut lost = Vec::new();
        for (id, ok) in results {
            if !ok {
                lost.extend(st.drop_node(id));
            }
        }
        if refreshed.is_ok() {
            let moved: Vec<String> = st
                .owner
                .iter()
                .filter(|(ch, id)| st.master_of(hash_slot(ch)) != st.addr_of(**id))
                .map(|(ch, _)| ch.clone())
                .collect();
            for ch in &moved {
                st.owner.remove(ch);
            }
            lost.extend(moved);
            // Connections to nodes that are no longer masters and carry nothing are closed.
            let used: HashSet<u64> = st.owner.values().copied().collect();
            let masters: HashSet<Addr> = st.slots.iter().map(|(_, _, a)| a.clone()).collect();
            st.nodes
                .retain(|addr, n| used.contains(&n.id) || masters.contains(addr));
        }
        lost
    }

    /// Turns a push of node connection `id` into what the subscriber must see, if anything.
    pub(crate) fn on_push(&self, id: u64, push: PushInfo) -> Option<Incoming> {
        match push.kind {
            PushKind::SMessage => Msg::from_push_info(push).map(Incoming::Message),
            PushKind::SUnsubscribe => {
                let Some(Value::BulkString(ch)) = push.data.first() else {
                    return None;
                };
                let ch = String::from_utf8_lossy(ch).into_owned();
                let mut st = self.state();
                if st.leaving.get(&ch) == Some(&id) {
                    st.leaving.remove(&ch);
                    return Some(Incoming::Unsubscribed(ch));
                }
                if st.owner.get(&ch) != Some(&id) {
                    return None;
                }
                // The server dropped a channel we hold (its slot moved): this connection's
                // replies can no longer be trusted to match its commands.
                Some(Incoming::Lost(st.drop_node(id)))
            }
            PushKind::Disconnection => {
                let lost = self.state().drop_node(id);
                (!lost.is_empty()).then_some(Incoming::Lost(lost))
            }
            _ => None,
        }
    }

    /// Opens the RESP3 connection to a master, its pushes tagged with a new id.
    async fn connect(&self, addr: Addr) -> BusResult<()> {
        let id = {
            let mut st = self.state();
            st.next_id += 1;
            st.next_id
        };
        let tx = self.0.tx.clone();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT)
            .set_push_sender(move |push: PushInfo| tx.send((id, push)).map_err(drop));
        let mut info = self.node_info(&addr);
        info.redis.protocol = ProtocolVersion::RESP3;
        let conn = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let mut st = self.state();
        // Another subscription may have connected it meanwhile: keep one.
        st.nodes.entry(addr).or_insert(Node { id, conn });
        Ok(())
    }

    /// The connection settings of a node: the first seed's (password, TLS), at another address.
    fn node_info(&self, (host, port): &Addr) -> ConnectionInfo {
        let mut info = self.0.seeds[0].clone();
        info.addr = match info.addr {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure,
                tls_params,
            },
            _ => ConnectionAddr::Tcp(host.clone(), *port),
        };
        info
    }

    /// Reads the slot map from a connected node, else from the seeds.
    async fn refresh(&self) -> BusResult<()> {
        let _one = self.0.refreshing.lock().await;
        let connected: Vec<(Addr, Node)> = self
            .state()
            .nodes
            .iter()
            .map(|(a, n)| (a.clone(), n.clone()))
            .collect();
        let mut last = None;
        for (addr, mut node) in connected {
            match cluster_slots(&mut node.conn, &addr.0).await {
                Ok(slots) => return self.set_slots(slots),
                Err(e) => last = Some(e),
            }
        }
        for seed in &self.0.seeds {
            let host = match &seed.addr {
                ConnectionAddr::Tcp(h, _) | ConnectionAddr::TcpTls { host: h, .. } => h.clone(),
                ConnectionAddr::Unix(_) => String::new(),
            };
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(REDIS_TIMEOUT)
                .set_response_timeout(REDIS_TIMEOUT);
            let conn = match redis::Client::open(seed.clone()) {
                Ok(c) => {
                    c.get_multiplexed_async_connection_with_config(&config)
                        .await
                }
                Err(e) => Err(e),
            };
            match conn {
                Ok(mut conn) => match cluster_slots(&mut conn, &host).await {
                    Ok(slots) => return self.set_slots(slots),
                    Err(e) => last = Some(e),
                },
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| BusError::Config("no cluster node answered".into())))
    }

    fn set_slots(&self, mut slots: Vec<(u16, u16, Addr)>) -> BusResult<()> {
        slots.sort_unstable_by_key(|(start, _, _)| *start);
        let mut st = self.state();
        st.slots = slots;
        st.stale = false;
        Ok(())
    }
}

/// `CLUSTER SLOTS` of one node: `[start, end, [endpoint, port, id, …], replicas…]` per range. An
/// unknown endpoint (`?`, empty, null) is the host we asked.
async fn cluster_slots(
    conn: &mut MultiplexedConnection,
    asked: &str,
) -> BusResult<Vec<(u16, u16, Addr)>> {
    let reply = tokio::time::timeout(
        REDIS_TIMEOUT,
        redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Value>(conn),
    )
    .await
    .map_err(|_| timeout_error())??;
    let Value::Array(ranges) = reply else {
        return Err(BusError::Config("CLUSTER SLOTS: not an array".into()));
    };
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let Value::Array(items) = range else { continue };
        let (Some(start), Some(end), Some(Value::Array(master))) =
            (items.first(), items.get(1), items.get(2))
        else {
            continue;
        };
        let (Some(start), Some(end)) = (as_u16(start), as_u16(end)) else {
            continue;
        };
        let Some(port) = master.get(1).and_then(as_u16) else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(b)) if !b.is_empty() && b != b"?" => {
                String::from_utf8_lossy(b).into_owned()
            }
            Some(Value::SimpleString(s)) if !s.is_empty() && s != "?" => s.clone(),
            _ => asked.to_owned(),
        };
        out.push((start, end, (host, port)));
    }
    if out.is_empty() {
        return Err(BusError::Config("CLUSTER SLOTS: no slot is served".into()));
    }
    Ok(out)
}

fn as_u16(v: &Value) -> Option<u16> {
    match v {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    }
}

fn timeout_error() -> BusError {
    BusError::Redis(redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis did not answer in time",
    )))
}
