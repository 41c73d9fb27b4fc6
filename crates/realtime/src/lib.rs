//! The room path shared by the gateway and the API: sending, editing, deleting, receipts, the room
//! channels and their event logs, control messages between services, and the read-your-writes history.
//!
//! Whoever accepts a client's message — a gateway for `send_message`, the API for
//! `POST /rooms/{id}/messages` — calls [`Realtime::send`], which runs **one Redis script** (see
//! [`scripts`]): rate limit, dedupe by `clientMsgId`, the room's next `seq`, the append to the shard's
//! persistence stream and the room's recent logs, and the publish on the room channel. The persistence
//! worker drains the stream into MySQL; gateways subscribed to the channel fan the event out.
//!
//! Callers check membership before calling (the gateway through its cache, the API against MySQL);
//! [`Realtime::edit`] and [`Realtime::delete`] check the actor's rights themselves.

mod control;
mod history;
mod keys;
mod ops;
mod scripts;
mod wire;

pub use control::Control;
pub use keys::RoomKeys;
pub use ops::{CursorKind, MessageRef, SendRequest, Sent};
pub use wire::{iso, LogEvent, RoomEvent};

use chat_bus::Bus;
use chat_config::Config;
use chat_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How long a retried send is recognised by its `clientMsgId`.
pub const DEDUPE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a room's recent logs stay in Redis after its last event.
pub const ROOM_KEY_TTL: Duration = Duration::from_secs(24 * 3600);

/// A failure of a room operation, with the stable code clients see.
#[derive(Debug, thiserror::Error)]
pub enum RtError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("rate limit exceeded, retry in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: Duration },
    /// Redis or MySQL failed; logged where it happened.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl RtError {
    /// The machine-readable code of the wire contract.
    pub fn code(&self) -> &'static str {
        match self {
            RtError::Validation(_) => "VALIDATION",
            RtError::Forbidden(_) => "FORBIDDEN",
            RtError::NotFound(_) => "NOT_FOUND",
            RtError::RateLimited { .. } => "RATE_LIMITED",
            RtError::Unavailable(_) => "UNAVAILABLE",
        }
    }
}

impl From<chat_bus::BusError> for RtError {
    fn from(e: chat_bus::BusError) -> Self {
        RtError::Unavailable(e.into())
    }
}

impl From<deadpool_redis::redis::RedisError> for RtError {
    fn from(e: deadpool_redis::redis::RedisError) -> Self {
        RtError::Unavailable(e.into())
    }
}

impl From<chat_store::StoreError> for RtError {
    fn from(e: chat_store::StoreError) -> Self {
        RtError::Unavailable(e.into())
    }
}

pub type RtResult<T> = Result<T, RtError>;

/// Settings of the room path, from [`Config`].
#[derive(Debug, Clone)]
pub struct RtConfig {
    pub shards: u16,
    pub rate_limit: u32,
    pub rate_window: Duration,
    pub log_cap: u32,
}

impl RtConfig {
    pub fn from_config(c: &Config) -> Self {
        Self {
            shards: c.shards,
            rate_limit: c.message_rate_limit,
            rate_window: c.message_rate_window,
            log_cap: c.recent_log_size,
        }
    }
}

/// The room path. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    bus: Bus,
    store: Store,
    cfg: Arc<RtConfig>,
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Realtime {
    pub fn new(bus: Bus, store: Store, cfg: RtConfig) -> Self {
        Self {
            bus,
            store,
            cfg: Arc::new(cfg),
        }
    }

    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &RtConfig {
        &self.cfg
    }

    /// The keys and channel of a room.
    pub fn room(&self, room: uuid::Uuid) -> RoomKeys {
        RoomKeys::new(self.bus.keys(), room, self.cfg.shards)
    }

    /// The channel every gateway listens to for [`Control`] messages.
    pub fn control_channel(&self) -> String {
        format!("{}:ctl", self.bus.keys().prefix())
    }
}

/// Milliseconds since the epoch, and the same instant as the wire's ISO-8601 text.
pub(crate) fn now_stamp() -> (i64, chrono::DateTime<chrono::Utc>, String) {
    use chrono::{SubsecRound, Utc};
    let now = Utc::now().trunc_subsecs(3);
    let iso = wire::iso(&now);
    (now.timestamp_millis(), now, iso)
}
