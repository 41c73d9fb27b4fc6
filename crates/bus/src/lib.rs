//! The Redis side of the system: the connection pool, every key name, and the Lua scripts.
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

use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Pool, Runtime};
use std::time::Duration;
use uuid::Uuid;

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("redis pool error")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis error")]
    Redis(#[from] redis::RedisError),
    #[error("invalid redis configuration: {0}")]
    Config(String),
}

pub type BusResult<T> = Result<T, BusError>;

/// A cheap-to-clone handle: the pool plus the key namer.
#[derive(Clone)]
pub struct Bus {
    pool: Pool,
    keys: Keys,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.keys.prefix())
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// Creates the pool (connections are opened lazily) for `url`, naming keys under `prefix`.
    ///
    /// # Errors
    /// An invalid URL.
    pub fn new(url: &str, prefix: &str, max_size: usize) -> BusResult<Self> {
        let mut cfg = deadpool_redis::Config::from_url(url);
        cfg.pool = Some(deadpool_redis::PoolConfig {
            max_size,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(Duration::from_secs(5)),
                create: Some(Duration::from_secs(5)),
                recycle: Some(Duration::from_secs(5)),
            },
            ..Default::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| BusError::Config(e.to_string()))?;
        Ok(Self {
            pool,
            keys: Keys::new(prefix),
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// A pooled connection.
    ///
    /// # Errors
    /// Redis unreachable or the pool exhausted for 5 s.
    pub async fn conn(&self) -> BusResult<deadpool_redis::Connection> {
        Ok(self.pool.get().await?)
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
