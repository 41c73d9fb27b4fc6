//! Typing indicators: volatile, throttled, and expired by the gateway when the typist stops refreshing.
//!
//! A `typing {isTyping: true}` is published to the room at most once per [`THROTTLE`] per socket and
//! room; each one (published or not) pushes the expiry `TYPING_TIMEOUT_MS` further. A change of state
//! (typing ↔ stopped) is published at most once per [`MIN_GAP`]; a stop that comes sooner is published
//! by the ticker when the gap has passed, so toggling cannot flood a room. A ticker publishes
//! `isTyping: false` for indicators that expired, and leaving the room, sending a message or
//! disconnecting stops the indicator at once. Others in the room get it; the typist's own sockets never
//! do (the event carries the user to exclude). Publishing goes through one bounded queue: under a
//! flood, indicators are dropped (they are volatile) instead of piling up tasks.

use crate::state::ClientSocket;
use chat_realtime::Realtime;
use sio::Sid;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

/// At most one published `isTyping: true` per socket and room in this period.
pub const THROTTLE: Duration = Duration::from_secs(1);

/// At most one change of state published per socket and room in this period.
pub const MIN_GAP: Duration = Duration::from_millis(250);

/// Indicators waiting to be published; beyond this they are dropped.
const QUEUE: usize = 4096;

struct Entry {
    user: Uuid,
    /// What the room was last told (or is about to be told by the ticker).
    typing: bool,
    expires: Instant,
    published: Instant,
}

pub struct Typing {
    timeout: Duration,
    active: Mutex<HashMap<(Sid, Uuid), Entry>>,
    queue: mpsc::Sender<(Uuid, Uuid, bool)>,
}

impl Typing {
    /// Starts the publisher task (needs a Tokio runtime).
    pub fn new(rt: Realtime, timeout: Duration) -> Self {
        let (queue, mut rx) = mpsc::channel::<(Uuid, Uuid, bool)>(QUEUE);
        tokio::spawn(async move {
            while let Some((room, user, typing)) = rx.recv().await {
                let data = serde_json::json!({"roomId": room, "userId": user, "isTyping": typing});
                if let Err(e) = rt.publish_volatile(room, "typing", &data, Some(user)).await {
                    tracing::debug!(error = %e, "typing not published");
                }
            }
        });
        Self {
            timeout,
            active: Mutex::new(HashMap::new()),
            queue,
        }
    }

    fn publish(&self, room: Uuid, user: Uuid, typing: bool) {
        if self.queue.try_send((room, user, typing)).is_err() {
            tracing::debug!("typing queue full: indicator dropped");
        }
    }

    /// The socket's user is (or stopped) typing in `room`.
    pub fn set(&self, socket: &ClientSocket, room: Uuid, typing: bool) {
        let key = (socket.id(), room);
        let user = socket.data().user;
        let now = Instant::now();
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        let publish = match (active.get_mut(&key), typing) {
            (None, true) => {
                active.insert(
                    key,
                    Entry {
                        user,
                        typing: true,
                        expires: now + self.timeout,
                        published: now,
                    },
                );
                true
            }
            (None, false) => false,
            (Some(e), true) => {
                e.expires = now + self.timeout;
                let gap = if e.typing { THROTTLE } else { MIN_GAP };
                e.typing = true;
                if now.duration_since(e.published) >= gap {
                    e.published = now;
                    true
                } else {
                    false
                }
            }
            (Some(e), false) if e.typing => {
                if now.duration_since(e.published) >= MIN_GAP {
                    e.typing = false;
                    e.published = now;
                    // Kept a moment, to throttle a quick restart.
                    e.expires = now + MIN_GAP;
                    true
                } else {
                    // Too soon after the last publish: the ticker says it when the gap has passed.
                    e.expires = e.published + MIN_GAP;
                    false
                }
            }
            (Some(_), false) => false,
        };
        drop(active);
        if publish {
            self.publish(room, user, typing);
        }
    }

    /// Stops the socket's indicator in `room`, if it has one.
    pub fn stop(&self, socket: &ClientSocket, room: Uuid) {
        let removed = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(socket.id(), room));
        if let Some(e) = removed.filter(|e| e.typing) {
            self.publish(room, e.user, false);
        }
    }

    /// Stops every indicator of the socket (it disconnected).
    pub fn stop_all(&self, sid: Sid) {
        self.remove_where(|(s, _), _| *s == sid);
    }

    /// Publishes `isTyping: false` for expired indicators.
    pub fn expire(&self) {
        let now = Instant::now();
        self.remove_where(|_, e| e.expires <= now);
    }

    /// Removes the matching entries, publishing a stop for those the room believes are typing.
    fn remove_where(&self, pred: impl Fn(&(Sid, Uuid), &Entry) -> bool) {
        let gone: Vec<(Uuid, Uuid)> = {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<(Sid, Uuid)> = active
                .iter()
                .filter(|(k, e)| pred(k, e))
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter()
                .filter_map(|k| {
                    active
                        .remove(&k)
                        .filter(|e| e.typing)
                        .map(|e| (k.1, e.user))
                })
                .collect()
        };
        for (room, user) in gone {
            self.publish(room, user, false);
        }
    }
}
