//! The gateway's shared state and the per-socket data.

use crate::fanout::FanoutHandle;
use crate::members::MemberCache;
use crate::metrics::Metrics;
use crate::recovery::RedisRecovery;
use crate::typing::Typing;
use chat_auth::TokenKeys;
use chat_bus::Bus;
use chat_config::Config;
use chat_realtime::Realtime;
use chat_store::Store;
use sio::{Sid, Socket};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use uuid::Uuid;

/// What the gateway knows about one socket.
#[derive(Debug)]
pub struct Client {
    pub user: Uuid,
    /// The access token's id (logout revokes it, and the sockets it opened are disconnected).
    pub jti: Uuid,
    /// This connection's member in the user's presence set: `<gateway>|<uuid>`.
    pub conn_id: String,
    /// When this socket's session was last saved while connected (seconds since the epoch; 0: not
    /// yet).
    pub session_saved: AtomicU64,
    /// The rooms this socket has joined (receives and may act in).
    pub rooms: Mutex<HashSet<Uuid>>,
    /// For a recovered socket: the offset (event position) the client presented.
    pub recovered_from: Option<u64>,
}

impl Client {
    /// This connection's id as its presence member names it (`<gateway>|<uuid>`).
    pub fn new_conn_id(gateway: &str) -> String {
        format!("{gateway}|{}", Uuid::new_v4().simple())
    }

    pub fn rooms(&self) -> MutexGuard<'_, HashSet<Uuid>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn in_room(&self, room: Uuid) -> bool {
        self.rooms().contains(&room)
    }

    pub fn room_list(&self) -> Vec<Uuid> {
        self.rooms().iter().copied().collect()
    }
}

pub type ClientSocket = Socket<Client>;

/// Everything the handlers and background tasks share.
pub struct Gateway {
    pub config: Arc<Config>,
    pub rt: Realtime,
    pub store: Store,
    pub bus: Bus,
    pub tokens: TokenKeys,
    pub members: MemberCache,
    pub fanout: FanoutHandle,
    pub typing: Typing,
    pub metrics: Arc<Metrics>,
    pub recovery: Arc<RedisRecovery>,
    /// Every socket connected here.
    pub sockets: Mutex<HashMap<Sid, ClientSocket>>,
    /// False while starting and once draining.
    pub ready: AtomicBool,
    /// Where the re-check's last read of the revocation log ended (ms, Redis clock; 0: not yet).
    pub revocations_read: AtomicI64,
    /// When this gateway's last liveness heartbeat failed (none yet: `None`). Dead gateways are
    /// not reaped until a whole presence TTL has passed since: an outage that kept this gateway
    /// from beating (a Redis failover) kept the others from it too, and their expired entries do
    /// not mean they died.
    pub beat_failed_at: Mutex<Option<std::time::Instant>>,
}

impl Gateway {
    pub fn sockets(&self) -> MutexGuard<'_, HashMap<Sid, ClientSocket>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot of the local sockets.
    pub fn socket_list(&self) -> Vec<ClientSocket> {
        self.sockets().values().cloned().collect()
    }
}
