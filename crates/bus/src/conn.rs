//! One Redis handle, two modes: a single Redis (`redis://…`) or a Redis Cluster
//! (`redis+cluster://host:port,host:port`, or `REDIS_CLUSTER_NODES`). Callers ask for a [`Conn`] and send
//! commands, scripts and pipelines on it without knowing which; the few places where the two differ
//! (a pipeline over keys of many slots, `PUBLISH` vs `SPUBLISH`) ask [`Conn::is_cluster`] or use
//! [`Conn::spread`].
//!
//! On a cluster the redis crate's `cluster-async` connection routes each command by its key's slot,
//! follows `MOVED`/`ASK`, and refreshes its slot map when a node fails or a slot moves, retrying the
//! command (bounded: [`CLUSTER_RETRIES`] attempts, 50–500 ms apart, so a failover of a few seconds is
//! ridden out and a longer outage is an error rather than a hang).

use crate::{BusError, BusResult};
use deadpool_redis::redis::{
    self,
    aio::{ConnectionLike, ConnectionManager, MultiplexedConnection},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value,
};
use std::time::Duration;

/// The URL scheme naming a cluster by its seed nodes: `redis+cluster://host:port,host:port`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// How long one command may wait for its reply, and one connection attempt.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts per command on a cluster while a node fails over or a slot moves.
pub const CLUSTER_RETRIES: u32 = 10;

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Redis server (`redis://` or `rediss://`).
    Single(String),
    /// Seed nodes of a Redis Cluster, each a `redis://` URL (a bare `host:port` gets the scheme).
    Cluster(Vec<String>),
}

impl Target {
    /// Parses `redis://…`, `rediss://…` or `redis+cluster://node,node,…` (each node `host:port` or a
    /// `redis://`/`rediss://` URL, which may carry a password).
    ///
    /// # Errors
    /// Another scheme, or a cluster without nodes.
    pub fn parse(url: &str) -> BusResult<Self> {
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            let nodes: Vec<String> = rest
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    if n.starts_with("redis://") || n.starts_with("rediss://") {
                        n.to_owned()
                    } else {
                        format!("redis://{n}")
                    }
                })
                .collect();
            if nodes.is_empty() {
                return Err(BusError::Config(
                    "a redis+cluster:// URL needs at least one host:port".into(),
                ));
            }
            return Ok(Self::Cluster(nodes));
        }
        if url.starts_with("redis://") || url.starts_with("rediss://") {
            return Ok(Self::Single(url.to_owned()));
        }
        Err(BusError::Config(
            "a Redis URL starts with redis://, rediss:// or redis+cluster://".into(),
        ))
    }

    /// The URL form of a cluster's seed nodes (`REDIS_CLUSTER_NODES` → `redis+cluster://…`).
    pub fn cluster_url(nodes: &str) -> String {
        format!("{CLUSTER_SCHEME}{nodes}")
    }
}

/// The configured client of either mode.
#[derive(Clone)]
pub(crate) enum Client {
    Single(redis::Client),
    Cluster(Vec<String>),
}

impl Client {
    pub(crate) fn new(target: &Target) -> BusResult<Self> {
        match target {
            Target::Single(url) => Ok(Self::Single(
                redis::Client::open(url.as_str()).map_err(|e| BusError::Config(e.to_string()))?,
            )),
            Target::Cluster(nodes) => {
                // Validate the node URLs now, so a typo fails at start-up, not at first use.
                cluster_builder(nodes)
                    .build()
                    .map_err(|e| BusError::Config(e.to_string()))?;
                Ok(Self::Cluster(nodes.clone()))
            }
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A shared, reconnecting connection: the process's main one (and its bulk one).
    pub(crate) async fn shared(&self) -> BusResult<Conn> {
        match self {
            Self::Single(client) => {
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(REDIS_TIMEOUT)
                    .set_number_of_retries(2)
                    .set_max_delay(1000);
                let m = ConnectionManager::new_with_config(client.clone(), cfg).await?;
                Ok(Conn(Handle::Manager(m)))
            }
            Self::Cluster(nodes) => {
                let c = cluster_client(nodes, REDIS_TIMEOUT)?
                    .get_async_connection()
                    .await?;
                Ok(Conn(Handle::Cluster(c)))
            }
        }
    }

    /// A connection of its own, for blocking commands (`XREADGROUP … BLOCK`) that would hold up every
    /// other command queued behind them on a shared one. `response_timeout` bounds each reply (a
    /// node that vanished without closing the socket).
    pub(crate) async fn dedicated(&self, response_timeout: Duration) -> BusResult<Conn> {
        match self {
            Self::Single(client) => {
                let cfg = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(REDIS_TIMEOUT)
                    .set_response_timeout(response_timeout);
                let c = client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await?;
                Ok(Conn(Handle::Plain(c)))
            }
            Self::Cluster(nodes) => {
                let c = cluster_client(nodes, response_timeout)?
                    .get_async_connection()
                    .await?;
                Ok(Conn(Handle::Cluster(c)))
            }
        }
    }
}

/// The builder every cluster connection of the process starts from: bounded retries, so a failover
/// (a few seconds with `cluster-node-timeout` 2000) is ridden out and a dead cluster is an error.
pub(crate) fn cluster_builder(nodes: &[String]) -> ClusterClientBuilder {
    ClusterClientBuilder::new(nodes.to_vec())
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(50)
        .max_retry_wait(500)
        .retry_wait_formula(50, 2)
        .connection_timeout(REDIS_TIMEOUT)
}

fn cluster_client(nodes: &[String], response_timeout: Duration) -> BusResult<ClusterClient> {
    Ok(cluster_builder(nodes)
        .response_timeout(response_timeout)
        .build()?)
}

/// A connection of either mode (clone-cheap: each is multiplexed).
#[derive(Clone)]
pub enum Handle {
    /// The single Redis's shared connection (reconnects by itself).
    Manager(ConnectionManager),
    /// A single Redis's dedicated connection (the caller drops it after a failure).
    Plain(MultiplexedConnection),
    /// A cluster: one connection per node, commands routed by slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Plain(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Manager(c) => c.req_packed_commands(cmd, offset, count),
            Self::Plain(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(c) => c.get_db(),
            Self::Plain(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A handle on one of the process's Redis connections. Derefs to the [`Handle`], which is what
/// commands run on (`cmd.query_async(&mut *conn)`).
#[derive(Clone)]
pub struct Conn(pub(crate) Handle);

impl std::ops::Deref for Conn {
    type Target = Handle;
    fn deref(&self) -> &Handle {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Handle {
        &mut self.0
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

impl Conn {
    /// Whether this is a cluster connection.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Handle::Cluster(_))
    }

    /// Runs the commands of `pipe`, which may touch keys of different slots, and returns every
    /// command's reply in order (`ignore()` marks are not honoured: each command has its reply).
    /// On a single Redis that is one pipelined round trip; on a cluster each command goes to its own
    /// slot's node, all at once (the connection pipelines those of one node), since a pipeline
    /// there must stay within one slot.
    ///
    /// # Errors
    /// The first failed command's error.
    pub async fn spread<T: FromRedisValue + Send>(
        &mut self,
        pipe: &Pipeline,
    ) -> RedisResult<Vec<T>> {
        if pipe.is_empty() {
            return Ok(Vec::new());
        }
        match &self.0 {
            Handle::Cluster(c) => {
                let calls = pipe.cmd_iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<T>(&mut c).await }
                });
                futures_util::future::join_all(calls)
                    .await
                    .into_iter()
                    .collect()
            }
            _ => {
                let mut all = redis::pipe();
                for cmd in pipe.cmd_iter() {
                    all.add_command(cmd.clone());
                }
                all.query_async(&mut self.0).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn targets_parse_from_urls() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379").unwrap(),
            Target::Single("redis://127.0.0.1:6379".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://127.0.0.1:7000, 127.0.0.1:7001,redis://:pw@h:7002")
                .unwrap(),
            Target::Cluster(vec![
                "redis://127.0.0.1:7000".into(),
                "redis://127.0.0.1:7001".into(),
                "redis://:pw@h:7002".into(),
            ])
        );
        assert!(Target::parse("redis+cluster://").is_err());
        assert!(Target::parse("redis+cluster:// , ").is_err());
        assert!(Target::parse("http://x").is_err());
        assert_eq!(Target::cluster_url("a:1,b:2"), "redis+cluster://a:1,b:2");
    }

    #[test]
    fn a_cluster_client_refuses_malformed_nodes_at_once() {
        assert!(Client::new(&Target::Cluster(vec!["redis://:70000".into()])).is_err());
        assert!(Client::new(&Target::Cluster(vec!["redis://127.0.0.1:7000".into()])).is_ok());
    }
}
