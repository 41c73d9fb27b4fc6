//! Typing indicators: volatile, throttled, and expired by the gateway when the typist stops refreshing.
//!
//! A `typing {isTyping: true}` is published to the room at most once per [`THROTTLE`] per socket and
//! room; each one (published or not) pushes the expiry `TYPING_TIMEOUT_MS` further. A ticker publishes
//! `isTyping: false` for indicators that expired, and leaving the room, sending a message or
//! disconnecting stops the indicator at once. Others in the room get it; the typist's own sockets never
//! do (the event carries the user to exclude).

use crate::state::ClientSocket;
use chat_realtime::Realtime;
use sio::Sid;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// At most one published `isTyping: true` per socket and room in this period.
pub const THROTTLE: Duration = Duration::from_secs(1);

struct Entry {
    user: Uuid,
    expires: Instant,
    published: Instant,
}

pub struct Typing {
    rt: Realtime,
    timeout: Duration,
    active: Mutex<HashMap<(Sid, Uuid), Entry>>,
}

impl Typing {
    pub fn new(rt: Realtime, timeout: Duration) -> Self {
        Self {
            rt,
            timeout,
            active: Mutex::new(HashMap::new()),
        }
    }

    fn publish(&self, room: Uuid, user: Uuid, typing: bool) {
        let rt = self.rt.clone();
        tokio::spawn(async move {
            let data = serde_json::json!({"roomId": room, "userId": user, "isTyping": typing});
            if let Err(e) = rt.publish_volatile(room, "typing", &data, Some(user)).await {
                tracing::debug!(error = %e, "typing not published");
            }
        });
    }

    /// The socket's user is (or stopped) typing in `room`.
    pub fn set(&self, socket: &ClientSocket, room: Uuid, typing: bool) {
        let key = (socket.id(), room);
        let user = socket.data().user;
        let now = Instant::now();
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        if typing {
            let publish = match active.get_mut(&key) {
                Some(e) => {
                    e.expires = now + self.timeout;
                    if now.duration_since(e.published) >= THROTTLE {
                        e.published = now;
                        true
                    } else {
                        false
                    }
                }
                None => {
                    active.insert(
                        key,
                        Entry {
                            user,
                            expires: now + self.timeout,
                            published: now,
                        },
                    );
                    true
                }
            };
            drop(active);
            if publish {
                self.publish(room, user, true);
            }
        } else {
            // Only a socket that was typing announces that it stopped: a stream of `false` costs
            // nothing to anyone else.
            let was = active.remove(&key).is_some();
            drop(active);
            if was {
                self.publish(room, user, false);
            }
        }
    }

    /// Stops the socket's indicator in `room`, if it has one.
    pub fn stop(&self, socket: &ClientSocket, room: Uuid) {
        let removed = self
            .active
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(socket.id(), room));
        if let Some(e) = removed {
            self.publish(room, e.user, false);
        }
    }

    /// Stops every indicator of the socket (it disconnected).
    pub fn stop_all(&self, sid: Sid) {
        let gone: Vec<(Uuid, Uuid)> = {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<(Sid, Uuid)> =
                active.keys().filter(|(s, _)| *s == sid).copied().collect();
            keys.into_iter()
                .filter_map(|k| active.remove(&k).map(|e| (k.1, e.user)))
                .collect()
        };
        for (room, user) in gone {
            self.publish(room, user, false);
        }
    }

    /// Publishes `isTyping: false` for expired indicators.
    pub fn expire(&self) {
        let now = Instant::now();
        let gone: Vec<(Uuid, Uuid)> = {
            let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<(Sid, Uuid)> = active
                .iter()
                .filter(|(_, e)| e.expires <= now)
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter()
                .filter_map(|k| active.remove(&k).map(|e| (k.1, e.user)))
                .collect()
        };
        for (room, user) in gone {
            self.publish(room, user, false);
        }
    }
}
