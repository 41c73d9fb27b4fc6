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
mod durable;
mod history;
mod keys;
mod ops;
mod scripts;
mod wire;

pub use control::Control;
pub use durable::unreplicated_acks_total;
pub use keys::RoomKeys;
pub use ops::{CursorKind, MessageRef, SendRequest, Sent};
pub use wire::{iso, LogEvent, RoomEvent};

use chat_bus::Bus;
use chat_config::Config;
use chat_store::Store;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

static UNSAVED_TRIMMED: AtomicU64 = AtomicU64::new(0);
static LAST_UNSAVED_WARNING: AtomicU64 = AtomicU64::new(0);

/// Messages this process's sends trimmed from rooms' recent-message logs although MySQL did not have
/// them yet (the hard cap: the worker far behind, or not raising the persisted watermark). Until the
/// worker stores them they are missing from history and `sinceSeq` replays.
pub fn unsaved_trimmed_total() -> u64 {
    UNSAVED_TRIMMED.load(Relaxed)
}

/// Whether a warning kept to one per 10 s per process (`last`: when it was last given, in s) is due
/// now; if so, notes that it is given.
pub(crate) fn warning_due(last: &AtomicU64) -> bool {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let before = last.load(Relaxed);
    now >= before + 10 && last.compare_exchange(before, now, Relaxed, Relaxed).is_ok()
}

/// Counts `n` unsaved messages trimmed from `room`'s log, and warns at most once per 10 s per process.
pub(crate) fn note_unsaved_trimmed(room: uuid::Uuid, n: u64, hard_cap: u32) {
    let total = UNSAVED_TRIMMED.fetch_add(n, Relaxed) + n;
    if warning_due(&LAST_UNSAVED_WARNING) {
        tracing::warn!(
            room = %room,
            trimmed = n,
            total,
            hard_cap,
            "a room's recent-message log reached its hard cap: messages MySQL does not have yet were \
             trimmed from Redis and are missing from history until the persistence worker stores them \
             (is the worker running and keeping up?)"
        );
    }
}

/// How long a retried send is recognised by its `clientMsgId`.
pub const DEDUPE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a room's recent logs stay in Redis after its last event.
pub const ROOM_KEY_TTL: Duration = chat_bus::keys::ROOM_KEY_TTL;

/// The hard cap of a room's recent-message log, as a multiple of `RECENT_LOG_SIZE`: messages MySQL
/// does not have yet are kept past `RECENT_LOG_SIZE`, but not past this many times it.
pub const UNSAVED_CAP_FACTOR: u32 = 10;

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
    /// The write went through on its Redis master but not enough replicas confirmed it in time
    /// (`REDIS_WAIT_REPLICAS`, `REDIS_WAIT_TIMEOUT_MS`): it is not acknowledged, since one crash
    /// could still lose it. A retry with the same `clientMsgId` returns the original once it is
    /// replicated, never a second copy.
    #[error("not confirmed by a Redis replica in time; retry (with the same clientMsgId)")]
    NotReplicated,
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
            RtError::NotReplicated => "NOT_REPLICATED",
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
    /// `RECENT_LOG_SIZE`: the events of the event log; the messages of the message log that MySQL
    /// already has.
    pub log_cap: u32,
    /// The hard cap of the message log, unsaved messages included (the send script then trims the
    /// oldest even if MySQL lacks them, and [`unsaved_trimmed_total`] counts them). At least
    /// `log_cap`; [`UNSAVED_CAP_FACTOR`] × `log_cap` from the configuration.
    pub hard_cap: u32,
}

impl RtConfig {
    pub fn from_config(c: &Config) -> Self {
        Self {
            shards: c.shards,
            rate_limit: c.message_rate_limit,
            rate_window: c.message_rate_window,
            log_cap: c.recent_log_size,
            hard_cap: c.recent_log_size.saturating_mul(UNSAVED_CAP_FACTOR),
        }
    }
}

/// The room path. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    bus: Bus,
    store: Store,
    cfg: Arc<RtConfig>,
    replicas: Arc<durable::Replicas>,
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl Realtime {
    pub fn new(bus: Bus, store: Store, mut cfg: RtConfig) -> Self {
        cfg.hard_cap = cfg.hard_cap.max(cfg.log_cap);
        Self {
            bus,
            store,
            cfg: Arc::new(cfg),
            replicas: Arc::default(),
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

    /// The room scripts of this bus's mode.
    pub(crate) fn scripts(&self) -> &'static scripts::Scripts {
        scripts::scripts(self.bus.publish_command())
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
