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
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use uuid::Uuid;

/// What the gateway knows about one socket.
#[derive(Debug)]
pub struct Client {
    pub user: Uuid,
    /// The access token's id (logout revokes it, and the sockets it opened are disconnected).
    pub jti: Uuid,
    /// This connection's member in the user's presence set.
    pub conn_id: String,
    /// The rooms this socket has joined (receives and may act in).
    pub rooms: Mutex<HashSet<Uuid>>,
    /// For a recovered socket: the offset (event position) the client presented.
    pub recovered_from: Option<u64>,
}

impl Client {
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
