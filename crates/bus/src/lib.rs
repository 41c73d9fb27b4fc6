//! The Redis side of the system: the shared connection, every key name, and the Lua scripts.
//!
//! Every key starts with the configured prefix (`REDIS_PREFIX`, default `chat`) followed by a schema
//! version, so deployments — and tests — sharing one Redis never see each other's data. Scripts run
//! atomically in one round trip and read the clock with `TIME` on the Redis server, so every replica of
//! every service agrees on windows and expiries whatever its own clock says.

mod conn;
pub mod keys;
pub mod pubsub;
mod ratelimit;
pub mod shards;
pub mod slot;
pub mod stream;

pub use conn::{Conn, Handle, Target, CLUSTER_RETRIES, CLUSTER_SCHEME};
pub use keys::{shard_of, Keys, PERSIST_GROUP};
pub use ratelimit::RateDecision;

use deadpool_redis::redis::{self, AsyncCommands};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use uuid::Uuid;

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    #[error("invalid redis configuration: {0}")]
    Config(String),
}

pub type BusResult<T> = Result<T, BusError>;

/// What a durable write waits for before it is acknowledged: `WAIT replicas timeout` after the
/// write, on the node that took it. `replicas` of 0 waits for nothing (a single Redis without
/// replicas, where AOF is the only protection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    pub replicas: u32,
    pub timeout: Duration,
}

impl Durability {
    /// The default of a mode: one replica on a cluster (every master has one), none on a single
    /// Redis; 500 ms.
    pub fn default_for(cluster: bool) -> Self {
        Self {
            replicas: u32::from(cluster),
            timeout: Duration::from_millis(500),
        }
    }
}

/// A cheap-to-clone handle: the process's Redis connections (single Redis or cluster) plus the key
/// namer.
#[derive(Clone)]
pub struct Bus {
    client: conn::Client,
    shared: Arc<OnceCell<Conn>>,
    bulk: Arc<OnceCell<Conn>>,
    durable: Arc<[OnceCell<Conn>; DURABLE_CONNS]>,
    next_durable: Arc<AtomicUsize>,
    keys: Keys,
    durability: Durability,
}

/// Connections that durable writes (those followed by `WAIT`) take turns on.
const DURABLE_CONNS: usize = 4;

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.keys.prefix())
            .field("cluster", &self.client.is_cluster())
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// A handle for `url` (`redis://…`, or a cluster's seed nodes as `redis+cluster://host:port,…`;
    /// connections are opened on first use), naming keys under `prefix`, with the mode's default
    /// [`Durability`].
    ///
    /// Every command of the process goes over one multiplexed connection (on a cluster, one per
    /// node): no checkout, and none of the `PING` a pool sends to recycle a connection before each
    /// use (which doubled the round trips), and a burst of thousands of commands (a mass disconnect)
    /// queues on the socket instead of timing out on a pool. Blocking commands (`XREADGROUP …
    /// BLOCK`) must not use it: they take [`Bus::dedicated`].
    ///
    /// # Errors
    /// An invalid URL.
    pub fn new(url: &str, prefix: &str) -> BusResult<Self> {
        let client = conn::Client::new(&Target::parse(url)?)?;
        let durability = Durability::default_for(client.is_cluster());
        Ok(Self {
            client,
            shared: Arc::new(OnceCell::new()),
            bulk: Arc::new(OnceCell::new()),
            durable: Arc::new(std::array::from_fn(|_| OnceCell::new())),
            next_durable: Arc::new(AtomicUsize::new(0)),
            keys: Keys::new(prefix),
            durability,
        })
    }

    /// The handle a service's configuration names (`REDIS_URL` or `REDIS_CLUSTER_NODES`,
    /// `REDIS_PREFIX`, `REDIS_WAIT_REPLICAS`, `REDIS_WAIT_TIMEOUT_MS`).
    ///
    /// # Errors
    /// An invalid URL.
    pub fn from_config(config: &chat_config::Config) -> BusResult<Self> {
        let bus = Self::new(config.redis_url.expose(), &config.redis_prefix)?;
        let mut d = bus.durability;
        if let Some(n) = config.redis_wait_replicas {
            d.replicas = n;
        }
        d.timeout = config.redis_wait_timeout;
        Ok(bus.with_durability(d))
    }

    /// The same handle with other durability settings.
    #[must_use]
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.client.is_cluster()
    }

    /// The publish command of the mode: `SPUBLISH` (sharded: the message crosses only the shard
    /// that owns the channel's slot) on a cluster, `PUBLISH` on a single Redis.
    pub fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// The shared connection (opened on first use; a failed open is tried again by the next call).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn conn(&self) -> BusResult<Conn> {
        self.open(&self.shared).await
    }

    /// A second shared connection, for the large periodic pipelines (a gateway's re-check of every
    /// socket): on the main connection, every command behind such a pipeline — a send, a join —
    /// would wait for all of it (Redis answers one connection in order), where on its own
    /// connection Redis interleaves the two.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn bulk_conn(&self) -> BusResult<Conn> {
        self.open(&self.bulk).await
    }

    /// A connection for a write followed by `WAIT`, which holds up everything behind it on its
    /// connection until the replicas answer: such writes take turns on [`DURABLE_CONNS`] connections
    /// of their own, so they neither stall the shared connection nor each other more than they must.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn durable_conn(&self) -> BusResult<Conn> {
        let i = self.next_durable.fetch_add(1, Relaxed) % DURABLE_CONNS;
        self.open(&self.durable[i]).await
    }

    /// A new connection of the caller's own, for blocking reads; each reply waits at most
    /// `response_timeout`. Not reconnecting: drop it after an error and ask again.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn dedicated(&self, response_timeout: Duration) -> BusResult<Conn> {
        self.client.dedicated(response_timeout).await
    }

    async fn open(&self, cell: &OnceCell<Conn>) -> BusResult<Conn> {
        let c = cell.get_or_try_init(|| self.client.shared()).await?;
        Ok(c.clone())
    }

    /// `PING`, for readiness probes.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn ping(&self) -> BusResult<()> {
        let mut c = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut *c).await?;
        Ok(())
    }

    /// Marks an access token id as revoked for `ttl` (its remaining lifetime), and logs it for the
    /// gateways (see [`Bus::revocations_since`]).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn revoke_jti(&self, user: Uuid, jti: Uuid, ttl: Duration) -> BusResult<()> {
        let secs = ttl.as_secs().max(1);
        let mut c = self.conn().await?;
        let _: () = c
            .set_ex(self.keys.revoked_jti(user, jti), 1u8, secs)
            .await?;
        let _: i64 = LOG_REVOCATION
            .key(self.keys.revocations())
            .arg(format!("{user}|{jti}"))
            .arg(REVOCATION_LOG_MS)
            .invoke_async(&mut *c)
            .await?;
        Ok(())
    }

    /// The tokens revoked at or after `since` (ms, Redis clock), and Redis's clock now (the `since`
    /// of the next call). One command, however many sockets the caller holds.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn revocations_since(&self, since: i64) -> BusResult<(i64, Vec<(Uuid, Uuid)>)> {
        let mut c = self.conn().await?;
        let (now, entries): (i64, Vec<String>) = READ_REVOCATIONS
            .key(self.keys.revocations())
            .arg(since)
            .invoke_async(&mut *c)
            .await?;
        let pairs = entries
            .iter()
            .filter_map(|e| {
                let (u, j) = e.split_once('|')?;
                Some((Uuid::parse_str(u).ok()?, Uuid::parse_str(j).ok()?))
            })
            .collect();
        Ok((now, pairs))
    }

    /// Whether an access token id has been revoked.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn is_jti_revoked(&self, user: Uuid, jti: Uuid) -> BusResult<bool> {
        let mut c = self.conn().await?;
        Ok(c.exists(self.keys.revoked_jti(user, jti)).await?)
    }

    /// Whether `user` has at least one connection on a live gateway.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn is_online(&self, user: Uuid) -> BusResult<bool> {
        Ok(self
            .online_many(&[user])
            .await?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// [`Bus::is_online`] for many users in two round trips: the live gateways (a script on their
    /// set: its clock and its range), then every user's connections, pipelined (one command per
    /// user: users' keys live in different Redis Cluster slots). A connection counts while its
    /// gateway is alive, so nothing is written per connection between connect and disconnect, and
    /// the connections of a gateway that died stop counting when its liveness expires, before a
    /// survivor has cleaned them up.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn online_many(&self, users: &[Uuid]) -> BusResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let live: Vec<String> = LIVE_GATEWAYS
            .key(self.keys.gateways_alive())
            .invoke_async(&mut *c)
            .await?;
        let live: std::collections::HashSet<&str> = live.iter().map(String::as_str).collect();
        let mut pipe = redis::pipe();
        for u in users {
            pipe.cmd("ZRANGE")
                .arg(self.keys.presence_user(*u))
                .arg(0)
                .arg(-1);
        }
        let members: Vec<Vec<String>> = c.spread(&pipe).await?;
        Ok(members
            .iter()
            .map(|conns| {
                conns
                    .iter()
                    .any(|m| m.rsplit_once('|').is_some_and(|(gw, _)| live.contains(gw)))
            })
            .collect())
    }
}

/// How long revocations stay in the log (longer than any access token lives).
const REVOCATION_LOG_MS: u64 = 24 * 3600 * 1000;

/// KEYS: the revocation log. ARGV: entry, how long entries stay (ms). Returns now (ms).
static LOG_REVOCATION: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return now
",
    )
});

/// KEYS: the revocation log. ARGV: since (ms). Returns `{now, entries since}`.
static READ_REVOCATIONS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {now, redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')}
",
    )
});

/// KEYS: the gateways' liveness set. Returns the gateways whose liveness has not expired.
static LIVE_GATEWAYS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
",
    )
});
