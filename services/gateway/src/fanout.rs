//! The fan-out: one task per gateway owns the room registry and the one subscriber (see
//! [`crate::subscriber`] for its connection, re-subscription and refill after a loss).
//!
//! * A room's channel is subscribed while at least one local socket is in the room, and unsubscribed
//!   when the last one leaves.
//! * Each channel message is parsed once and encoded once into a [`Frame`]; the same bytes are queued on
//!   every local socket of the room (durable events as [`Class::Durable`], volatile ones as
//!   [`Class::Volatile`]).
//! * Durable events carry their room position and the previous one (`prev`); when `prev` is newer than
//!   the last position this gateway forwarded, pub/sub lost something and the range is refilled from
//!   the room's log before the event is forwarded. After a Redis reconnect every room is refilled the
//!   same way.
//! * Joins go through this task too, so a socket that catches up from the log (recovery) is registered
//!   exactly between the events it replayed and the live ones: no gap, no duplicate.
//! * Control messages from the API (kick, leave, room deletion, token revocation) act on local sockets
//!   here, in channel order after the room event that announced them.

use crate::state::{ClientSocket, Gateway};
use chat_bus::pubsub::Sink;
use chat_realtime::{Control, LogEvent, RoomEvent};
use sio::{Class, Frame, SendError, Sid};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Requests to the fan-out task.
pub enum Cmd {
    /// Add a socket to rooms. `first` frames go to it before anything else (a `sinceSeq` replay);
    /// then, with `since`, the rooms' logged events after that position, merged in position order
    /// (a recovery); then it receives the rooms' live events. `done` gets the rooms that went live.
    Join {
        rooms: Vec<Uuid>,
        socket: ClientSocket,
        since: Option<u64>,
        first: Vec<Frame>,
        done: oneshot::Sender<Vec<Uuid>>,
    },
    /// Remove a socket from a room.
    Leave { room: Uuid, sid: Sid },
}

/// Sends requests to the fan-out task.
#[derive(Clone)]
pub struct FanoutHandle(mpsc::UnboundedSender<Cmd>);

impl FanoutHandle {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Cmd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self(tx), rx)
    }

    /// Adds `socket` to `rooms` and waits until it is live (at most 10 s). Returns the rooms that
    /// went live (empty on a timeout: a join that answers too late is then not registered at all).
    pub async fn join(
        &self,
        rooms: Vec<Uuid>,
        socket: ClientSocket,
        since: Option<u64>,
        first: Vec<Frame>,
    ) -> Vec<Uuid> {
        let (done, rx) = oneshot::channel();
        let cmd = Cmd::Join {
            rooms,
            socket,
            since,
            first,
            done,
        };
        if self.0.send(cmd).is_err() {
            return Vec::new();
        }
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(live)) => live,
            _ => Vec::new(),
        }
    }

    pub fn leave(&self, room: Uuid, sid: Sid) {
        let _ = self.0.send(Cmd::Leave { room, sid });
    }
}

pub(crate) struct RoomSubs {
    /// Local sockets, each with the position up to which it has been served already (by a replay).
    pub(crate) sockets: Vec<(ClientSocket, u64)>,
    /// The position of the last durable event forwarded (0: none yet).
    pub(crate) last_pos: u64,
}

pub(crate) struct Fanout {
    pub(crate) gw: Arc<Gateway>,
    pub(crate) rooms: HashMap<Uuid, RoomSubs>,
    pub(crate) control: String,
    /// Rooms whose last socket went away during a delivery: unsubscribed after it.
    pub(crate) emptied: Vec<Uuid>,
}

/// The room of a channel name `…:room:<uuid>:ch`.
pub(crate) fn room_of(channel: &str) -> Option<Uuid> {
    let rest = channel.strip_suffix(":ch")?;
    Uuid::parse_str(rest.rsplit(':').next()?).ok()
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The frames a room event becomes: receipts also go out under the names the reference systems use.
fn frames_for(ev: &RoomEvent<'_>) -> Vec<Frame> {
    let names: &[&str] = if ev.e == "message_read" {
        &["message_read", "read_receipt", "read"]
    } else {
        std::slice::from_ref(&ev.e)
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let f = match ev.pos {
            Some(pos) => Frame::event_with_offset("/", name, &(ev.d,), &pos.to_string()),
            None => Frame::event("/", name, &(ev.d,)),
        };
        match f {
            Ok(f) => out.push(f),
            Err(e) => tracing::warn!(event = ev.e, error = %e, "could not encode a room event"),
        }
    }
    out
}

impl Fanout {
    pub(crate) fn new(gw: Arc<Gateway>) -> Self {
        Self {
            control: gw.rt.control_channel(),
            gw,
            rooms: HashMap::new(),
            emptied: Vec::new(),
        }
    }

    /// The channels this gateway must be subscribed to: control, and every room with a local
    /// socket.
    pub(crate) fn channels(&self) -> Vec<String> {
        let mut channels = vec![self.control.clone()];
        channels.extend(self.rooms.keys().map(|r| self.gw.rt.room(*r).channel()));
        channels
    }

    /// Whether `channel` is one this gateway wants (control, or a room it is in).
    pub(crate) fn wants(&self, channel: &str) -> bool {
        channel == self.control || room_of(channel).is_some_and(|r| self.rooms.contains_key(&r))
    }

    /// Queues an event on the room's sockets (those not already served past it). With tracing export
    /// on, an event that carries its sender's `traceparent` (`tp`) is delivered in a short span
    /// `chat.fanout`, a child of the sender's span; otherwise nothing but a flag is checked.
    fn deliver(&mut self, room: Uuid, ev: &RoomEvent<'_>) {
        if let (true, Some(tp)) = (chat_telemetry::enabled(), ev.tp) {
            if !self.rooms.contains_key(&room) {
                return;
            }
            let span = tracing::info_span!(
                parent: None,
                "chat.fanout",
                %room,
                event = ev.e,
                gateway = %self.gw.config.gateway.id,
                sockets = tracing::field::Empty,
            );
            chat_telemetry::set_parent_from_traceparent(&span, tp);
            let _entered = span.enter();
            let sent = self.deliver_now(room, ev);
            span.record("sockets", sent);
        } else {
            self.deliver_now(room, ev);
        }
    }

    /// [`Fanout::deliver`] itself; returns how many sockets got the event.
    fn deliver_now(&mut self, room: Uuid, ev: &RoomEvent<'_>) -> u64 {
        let Some(subs) = self.rooms.get_mut(&room) else {
            return 0;
        };
        let frames = frames_for(ev);
        let class = if ev.pos.is_some() {
            Class::Durable
        } else {
            Class::Volatile
        };
        let pos = ev.pos.unwrap_or(0);
        let m = &self.gw.metrics;
        let mut sent = 0u64;
        let mut gone = false;
        for (socket, served) in &subs.sockets {
            if pos != 0 && pos <= *served {
                continue;
            }
            if ev.x.is_some_and(|x| x == socket.data().user) {
                continue;
            }
            for f in &frames {
                match socket.send(f, class) {
                    Ok(()) => sent += 1,
                    Err(SendError::Dropped) => {
                        m.queue_drops.fetch_add(1, Relaxed);
                    }
                    // Overflow closed the connection; its disconnect (reason `QueueOverflow`)
                    // counts the slow client, once.
                    Err(_) => {
                        gone = true;
                        break;
                    }
                }
            }
        }
        if gone {
            subs.sockets.retain(|(s, _)| s.connected());
            if subs.sockets.is_empty() {
                self.emptied.push(room);
            }
        }
        if pos != 0 {
            subs.last_pos = subs.last_pos.max(pos);
            let lat = now_us().saturating_sub(pos);
            m.deliver_latency.observe(Duration::from_micros(lat));
        }
        m.deliveries.fetch_add(sent, Relaxed);
        let sockets = sent / frames.len().max(1) as u64;
        m.event_out(ev.e, sockets);
        sockets
    }

    /// Forwards a channel message of `room`, refilling a gap from the room log first.
    pub(crate) async fn on_room_message(&mut self, room: Uuid, text: &str) {
        let ev = match RoomEvent::parse(text) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "ignoring a malformed room event");
                return;
            }
        };
        let Some(subs) = self.rooms.get(&room) else {
            return;
        };
        if let Some(pos) = ev.pos {
            if pos <= subs.last_pos {
                return; // already forwarded by a refill
            }
            let prev = ev.prev.unwrap_or(0);
            if subs.last_pos != 0 && prev > subs.last_pos {
                let from = subs.last_pos;
                self.gw.metrics.gaps_refilled.fetch_add(1, Relaxed);
                tracing::info!(room = %room, from, to = pos, "pub/sub gap: refilling from the room log");
                self.refill(room, from, Some(pos)).await;
            }
        }
        self.deliver(room, &ev);
    }

    /// Forwards the room's logged events in (`after`, `before`) to its sockets.
    pub(crate) async fn refill(&mut self, room: Uuid, after: u64, before: Option<u64>) {
        match self.gw.rt.log_range(&[room], after, before).await {
            Ok(events) => {
                for e in &events {
                    if let Ok(ev) = RoomEvent::parse(&e.text) {
                        self.deliver(room, &ev);
                    }
                }
            }
            Err(e) => {
                self.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(room = %room, error = %e, "could not refill from the room log");
            }
        }
    }

    pub(crate) async fn on_control(&mut self, text: &str, sink: &mut Sink) {
        let c: Control = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a malformed control message");
                return;
            }
        };
        tracing::debug!(?c, "control message");
        match c {
            Control::MemberAdded { room, user } | Control::RoleChanged { room, user } => {
                self.gw.members.invalidate(room, user);
            }
            Control::MemberRemoved { room, user } => {
                self.gw.members.invalidate(room, user);
                if self.gw.bus.is_cluster() {
                    // On a cluster the room's channel and the control channel are on different
                    // shards (connections), so this can arrive before the room's `user_left`: the
                    // removed user's sockets would then miss their own. Tell them here (a socket
                    // can get it twice when the room event won the race; it is idempotent).
                    self.tell_removed(room, user);
                }
                self.remove_from_room(room, Some(user), sink).await;
            }
            Control::RoomDeleted { room } => {
                self.gw.members.invalidate_room(room);
                self.remove_from_room(room, None, sink).await;
            }
            Control::TokenRevoked { user, jti } => {
                for s in self.gw.socket_list() {
                    let d = s.data();
                    if d.user == user && jti.is_none_or(|j| j == d.jti) {
                        tracing::info!(user = %user, sid = %s.id(), "token revoked: disconnecting");
                        s.disconnect();
                    }
                }
            }
        }
    }

    /// Sends `user`'s local sockets in `room` their `user_left`.
    fn tell_removed(&self, room: Uuid, user: Uuid) {
        let Some(subs) = self.rooms.get(&room) else {
            return;
        };
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for (s, _) in subs.sockets.iter().filter(|(s, _)| s.data().user == user) {
            let _ = s.emit(
                "user_left",
                &(serde_json::json!({"roomId": room, "userId": user, "at": at}),),
            );
        }
    }

    /// Takes `user`'s sockets (everyone's with `None`) out of `room`.
    async fn remove_from_room(&mut self, room: Uuid, user: Option<Uuid>, sink: &mut Sink) {
        let Some(subs) = self.rooms.get_mut(&room) else {
            return;
        };
        subs.sockets.retain(|(s, _)| {
            let hit = user.is_none_or(|u| u == s.data().user);
            if hit {
                s.data().rooms().remove(&room);
                self.gw.typing.stop(s, room);
            }
            !hit
        });
        if subs.sockets.is_empty() {
            self.drop_room(room, sink).await;
        }
    }

    pub(crate) async fn drop_room(&mut self, room: Uuid, sink: &mut Sink) {
        if self.rooms.remove(&room).is_some() {
            self.gw
                .metrics
                .rooms_subscribed
                .store(i64::try_from(self.rooms.len()).unwrap_or(0), Relaxed);
            if let Err(e) = sink.unsubscribe(&self.gw.rt.room(room).channel()).await {
                tracing::debug!(room = %room, error = %e, "unsubscribe failed");
            }
        }
    }

    pub(crate) async fn on_cmd(&mut self, cmd: Cmd, sink: &mut Sink) {
        match cmd {
            Cmd::Join {
                rooms,
                socket,
                since,
                first,
                done,
            } => {
                let mut live = Vec::with_capacity(rooms.len());
                for room in rooms {
                    if self.ensure_room(room, sink).await {
                        live.push(room);
                    }
                }
                let mut frames = first;
                let mut served: HashMap<Uuid, u64> = HashMap::new();
                if let Some(since) = since {
                    served = self.catch_up(&live, since, &mut frames).await;
                }
                if done.is_closed() {
                    // The caller gave up waiting (and told its client the join failed): do not
                    // register a socket that believes it is not in these rooms.
                    for room in live {
                        if self.rooms.get(&room).is_some_and(|s| s.sockets.is_empty()) {
                            self.drop_room(room, sink).await;
                        }
                    }
                    return;
                }
                if !frames.is_empty() {
                    socket.send_replay(frames);
                }
                for room in &live {
                    if let Some(subs) = self.rooms.get_mut(room) {
                        subs.sockets.retain(|(s, _)| s.id() != socket.id());
                        let upto = served.get(room).copied().unwrap_or(0);
                        subs.sockets.push((socket.clone(), upto));
                    }
                }
                let _ = done.send(live);
            }
            Cmd::Leave { room, sid } => {
                let empty = match self.rooms.get_mut(&room) {
                    Some(subs) => {
                        subs.sockets.retain(|(s, _)| s.id() != sid && s.connected());
                        subs.sockets.is_empty()
                    }
                    None => false,
                };
                if empty {
                    self.drop_room(room, sink).await;
                }
            }
        }
    }

    /// Subscribes the room's channel if this gateway is not in it yet, starting its position at
    /// the room's current one (so a message lost by pub/sub right after is noticed as a gap).
    /// Returns false when Redis refused.
    async fn ensure_room(&mut self, room: Uuid, sink: &mut Sink) -> bool {
        if self.rooms.contains_key(&room) {
            return true;
        }
        let channel = self.gw.rt.room(room).channel();
        if let (_, Some(e)) = sink.subscribe(std::slice::from_ref(&channel)).await {
            self.gw.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(room = %room, error = %e, "subscribe failed");
            return false;
        }
        let last_pos = match self.gw.rt.room_pos(room).await {
            Ok(p) => p,
            Err(e) => {
                self.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(room = %room, error = %e, "room position unavailable");
                0
            }
        };
        self.rooms.insert(
            room,
            RoomSubs {
                sockets: Vec::new(),
                last_pos,
            },
        );
        self.gw
            .metrics
            .rooms_subscribed
            .store(i64::try_from(self.rooms.len()).unwrap_or(0), Relaxed);
        true
    }

    /// Appends to `frames` the rooms' logged events after `since`, merged in position order, and
    /// returns the last position served per room. A room whose log no longer reaches back to
    /// `since` (trimmed, expired, or unreadable) gets a `resync {roomId}` event instead of a silent
    /// gap: the client re-reads that room's history.
    async fn catch_up(
        &mut self,
        rooms: &[Uuid],
        since: u64,
        frames: &mut Vec<Frame>,
    ) -> HashMap<Uuid, u64> {
        let mut served: HashMap<Uuid, u64> = rooms.iter().map(|r| (*r, since)).collect();
        let events: Vec<LogEvent> = match self.gw.rt.log_after(rooms, since).await {
            Ok(e) => e,
            Err(e) => {
                self.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "room logs unreadable for a catch-up: asking the client to resync");
                for room in rooms {
                    push_resync(frames, *room, "log_unavailable");
                }
                return served;
            }
        };
        let mut checked: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
        for e in &events {
            let Ok(ev) = RoomEvent::parse(&e.text) else {
                continue;
            };
            // The first event after `since` must follow it directly, or some were trimmed.
            if checked.insert(e.room) && ev.prev.unwrap_or(0) > since {
                tracing::info!(room = %e.room, since, "room log trimmed past the offset: resync");
                push_resync(frames, e.room, "log_trimmed");
            }
            frames.extend(frames_for(&ev));
            served.insert(e.room, e.pos);
        }
        served
    }
}

fn push_resync(frames: &mut Vec<Frame>, room: Uuid, reason: &str) {
    let data = serde_json::json!({"roomId": room, "reason": reason});
    if let Ok(f) = Frame::event("/", "resync", &(data,)) {
        frames.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_their_room() {
        let r = Uuid::now_v7();
        assert_eq!(room_of(&format!("chat:v1:{{3}}:room:{r}:ch")), Some(r));
        assert_eq!(room_of("chat:v1:ctl"), None);
        assert_eq!(room_of("x:room:not-a-uuid:ch"), None);
    }
}
