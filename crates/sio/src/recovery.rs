//! Connection state recovery: the mechanism, with storage left to a [`RecoveryStore`].
//!
//! When recovery is on, every socket gets a private id (`pid`) in its CONNECT reply, and the
//! application appends an offset to the events it wants replayable ([`crate::Frame::event_with_offset`]).
//! A stock client remembers the last offset it saw.
//!
//! The server saves a [`Session`] in the store when the socket connects (so that a session survives
//! even the crash of the process that held it), saves it again with fresh state when the socket drops
//! for a recoverable reason, and removes it when the socket leaves for good (a namespace disconnect
//! from either side). When a client reconnects with `{pid, offset}` in its CONNECT payload, the server
//! takes the session from the store and hands it to the namespace's connect hook as
//! [`crate::Recovery`]; the hook decides which frames to replay. The CONNECT reply then carries the old
//! socket id and `pid`, which makes the client set `socket.recovered = true`. A refused hook (or a
//! connection closed while it ran) puts the session back. If the session's socket is still connected
//! on this server, it is not recovered: the client gets a fresh socket and the live one is left alone
//! (see the crate's README for why).
//!
//! [`MemoryStore`] keeps sessions in this process; a shared store (Redis) makes recovery work across
//! server processes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sid::Sid;
use crate::socket::BoxFuture;

/// A disconnected socket that may be recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The socket id, given back on recovery.
    pub sid: Sid,
    /// The private id the client presents.
    pub pid: Sid,
    pub nsp: String,
    /// What [`crate::Namespace::recovery_state`] returned.
    pub state: Value,
}

/// Where sessions wait for their client. Implementations decide how long they keep an entry after
/// its last save (the reference server allows two minutes of disconnection); a store shared by
/// several processes should also outlive a crashed process's live sessions, e.g. by refreshing
/// entries while their sockets are connected.
pub trait RecoveryStore: Send + Sync + 'static {
    /// Keeps (or refreshes) a session: called when the socket connects and when it drops for a
    /// recoverable reason.
    fn save(&self, session: Session) -> BoxFuture<()>;
    /// Takes (and removes) the session with private id `pid`, if it is still there.
    fn take(&self, pid: Sid) -> BoxFuture<Option<Session>>;
    /// Forgets a session whose socket left for good.
    fn remove(&self, pid: Sid) -> BoxFuture<()>;
}

/// An in-process [`RecoveryStore`] that forgets sessions after a fixed time.
#[derive(Debug)]
pub struct MemoryStore {
    ttl: Duration,
    sessions: Mutex<HashMap<Sid, (Instant, Session)>>,
}

impl MemoryStore {
    /// A store keeping sessions for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// The number of sessions held (expired ones included until the next save).
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether the store holds no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(Duration::from_secs(120))
    }
}

impl RecoveryStore for MemoryStore {
    fn save(&self, session: Session) -> BoxFuture<()> {
        {
            let now = Instant::now();
            let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
            map.insert(session.pid, (now, session));
        }
        Box::pin(async {})
    }

    fn remove(&self, pid: Sid) -> BoxFuture<()> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid);
        Box::pin(async {})
    }

    fn take(&self, pid: Sid) -> BoxFuture<Option<Session>> {
        let found = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| s);
        Box::pin(async move { found })
    }
}
