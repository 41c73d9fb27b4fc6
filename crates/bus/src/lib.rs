//! The Redis side of the system: the shared connection, every key name, and the Lua scripts.
//!
//! Every key starts with the configured prefix (`REDIS_PREFIX`, default `chat`) followed by a schema
//! version, so deployments — and tests — sharing one Redis never see each other's data. Scripts run
//! atomically in one round trip and read the clock with `TIME` on the Redis server, so every replica of
//! every service agrees on windows and expiries whatever its own clock says.

pub mod keys;
mod ratelimit;
pub mod stream;

pub use keys::{shard_of, Keys, PERSIST_GROUP};
pub use ratelimit::RateDecision;

use deadpool_redis::redis::{self, aio::ConnectionManager, AsyncCommands};
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

/// A cheap-to-clone handle: the process's Redis connection plus the key namer.
#[derive(Clone)]
pub struct Bus {
    client: redis::Client,
    shared: Arc<OnceCell<ConnectionManager>>,
    bulk: Arc<OnceCell<ConnectionManager>>,
    keys: Keys,
}

/// A handle on the process's one multiplexed Redis connection (clone-cheap; commands from every task are
/// pipelined on it). Derefs to the redis crate's `ConnectionManager`, which reconnects after a failure.
pub struct Conn(ConnectionManager);

impl std::ops::Deref for Conn {
    type Target = ConnectionManager;
    fn deref(&self) -> &ConnectionManager {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut ConnectionManager {
        &mut self.0
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// How long one command may wait for its reply, and one connection attempt.
const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// A handle for `url` (the connection is opened on first use), naming keys under `prefix`.
    ///
    /// Every command of the process goes over one multiplexed connection: no checkout, and none of the
    /// `PING` a pool sends to recycle a connection before each use (which doubled the round trips), and a
    /// burst of thousands of commands (a mass disconnect) queues on the socket instead of timing out on a
    /// pool. Blocking commands (`XREADGROUP … BLOCK`) must not use it: the worker opens its own.
    ///
    /// # Errors
    /// An invalid URL.
    pub fn new(url: &str, prefix: &str) -> BusResult<Self> {
        let client = redis::Client::open(url).map_err(|e| BusError::Config(e.to_string()))?;
        Ok(Self {
            client,
            shared: Arc::new(OnceCell::new()),
            bulk: Arc::new(OnceCell::new()),
            keys: Keys::new(prefix),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The shared connection (opened on first use; a failed open is tried again by the next call).
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn conn(&self) -> BusResult<Conn> {
        self.open(&self.shared).await
    }

    /// A second shared connection, for the large periodic pipelines (a gateway's heartbeat refreshes
    /// every socket's presence and session at once): on the main connection, every command behind
    /// such a pipeline — a send, a join — would wait for all of it (Redis answers one connection in
    /// order), where on its own connection Redis interleaves the two.
    ///
    /// # Errors
    /// Redis unreachable.
    pub async fn bulk_conn(&self) -> BusResult<Conn> {
        self.open(&self.bulk).await
    }

    async fn open(&self, cell: &OnceCell<ConnectionManager>) -> BusResult<Conn> {
        let m = cell
            .get_or_try_init(|| async {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(REDIS_TIMEOUT)
                    .set_number_of_retries(2)
                    .set_max_delay(1000);
                ConnectionManager::new_with_config(self.client.clone(), cfg).await
            })
            .await?;
        Ok(Conn(m.clone()))
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

    /// Marks an access token id as revoked for `ttl` (its remaining lifetime).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn revoke_jti(&self, user: Uuid, jti: Uuid, ttl: Duration) -> BusResult<()> {
        let secs = ttl.as_secs().max(1);
        let mut c = self.conn().await?;
        let _: () = c
            .set_ex(self.keys.revoked_jti(user, jti), 1u8, secs)
            .await?;
        Ok(())
    }

    /// Whether an access token id has been revoked.
    ///
    /// # Errors
    /// Redis failures.
    pub async fn is_jti_revoked(&self, user: Uuid, jti: Uuid) -> BusResult<bool> {
        let mut c = self.conn().await?;
        Ok(c.exists(self.keys.revoked_jti(user, jti)).await?)
    }

    /// Whether `user` has at least one live connection on any gateway (the presence set of the user holds
    /// connection ids scored by the time their heartbeat expires).
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

    /// [`Bus::is_online`] for many users in two round trips: Redis `TIME`, then one pipelined `ZCOUNT` per
    /// user (a single script could not touch users' keys across Redis Cluster slots).
    ///
    /// # Errors
    /// Redis failures.
    pub async fn online_many(&self, users: &[Uuid]) -> BusResult<Vec<bool>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let mut c = self.conn().await?;
        let (secs, _micros): (i64, i64) = redis::cmd("TIME").query_async(&mut *c).await?;
        let mut pipe = redis::pipe();
        for u in users {
            pipe.zcount(self.keys.presence_user(*u), secs * 1000, "+inf");
        }
        let counts: Vec<u64> = pipe.query_async(&mut *c).await?;
        Ok(counts.into_iter().map(|n| n > 0).collect())
    }
}
