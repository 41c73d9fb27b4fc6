//! The fan-out: one task per gateway owns the room registry and the one pub/sub connection.
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
use chat_realtime::{Control, LogEvent, RoomEvent};
use deadpool_redis::redis;
use futures_util::StreamExt as _;
use sio::{Class, Frame, SendError, Sid};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Requests to the fan-out task.
pub enum Cmd {
    /// Add a socket to a room; with `since`, first replay the room's logged events after that
    /// position to it. `done` fires once the socket receives the room's live events.
    Join {
        room: Uuid,
        socket: ClientSocket,
        since: Option<u64>,
        done: oneshot::Sender<()>,
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

    /// Adds `socket` to `room` and waits until it is live (at most 10 s; false if it was not).
    pub async fn join(&self, room: Uuid, socket: ClientSocket, since: Option<u64>) -> bool {
        let (done, rx) = oneshot::channel();
        if self
            .0
            .send(Cmd::Join {
                room,
                socket,
                since,
                done,
            })
            .is_err()
        {
            return false;
        }
        matches!(
            tokio::time::timeout(Duration::from_secs(10), rx).await,
            Ok(Ok(()))
        )
    }

    pub fn leave(&self, room: Uuid, sid: Sid) {
        let _ = self.0.send(Cmd::Leave { room, sid });
    }
}

struct RoomSubs {
    /// Local sockets, each with the position up to which it has been served already (by a replay).
    sockets: Vec<(ClientSocket, u64)>,
    /// The position of the last durable event forwarded (0: none yet).
    last_pos: u64,
}

struct Fanout {
    gw: Arc<Gateway>,
    rooms: HashMap<Uuid, RoomSubs>,
    control: String,
}

/// The room of a channel name `…:room:<uuid>:ch`.
fn room_of(channel: &str) -> Option<Uuid> {
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
    async fn on_room_message(&mut self, room: Uuid, text: &str) {
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
    async fn refill(&mut self, room: Uuid, after: u64, before: Option<u64>) {
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

    async fn on_control(&mut self, text: &str, sink: &mut redis::aio::PubSubSink) {
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

    /// Takes `user`'s sockets (everyone's with `None`) out of `room`.
    async fn remove_from_room(
        &mut self,
        room: Uuid,
        user: Option<Uuid>,
        sink: &mut redis::aio::PubSubSink,
    ) {
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

    async fn drop_room(&mut self, room: Uuid, sink: &mut redis::aio::PubSubSink) {
        if self.rooms.remove(&room).is_some() {
            self.gw
                .metrics
                .rooms_subscribed
                .store(i64::try_from(self.rooms.len()).unwrap_or(0), Relaxed);
            if let Err(e) = sink.unsubscribe(self.gw.rt.room(room).channel()).await {
                tracing::debug!(room = %room, error = %e, "unsubscribe failed");
            }
        }
    }

    async fn on_cmd(&mut self, cmd: Cmd, sink: &mut redis::aio::PubSubSink) {
        match cmd {
            Cmd::Join {
                room,
                socket,
                since,
                done,
            } => {
                if !self.rooms.contains_key(&room) {
                    if let Err(e) = sink.subscribe(self.gw.rt.room(room).channel()).await {
                        self.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                        tracing::warn!(room = %room, error = %e, "subscribe failed");
                        return; // `done` dropped: the join reports failure
                    }
                    self.rooms.insert(
                        room,
                        RoomSubs {
                            sockets: Vec::new(),
                            last_pos: 0,
                        },
                    );
                    self.gw
                        .metrics
                        .rooms_subscribed
                        .store(i64::try_from(self.rooms.len()).unwrap_or(0), Relaxed);
                }
                let mut served = 0;
                if let Some(since) = since {
                    served = self.replay(room, &socket, since).await;
                }
                if let Some(subs) = self.rooms.get_mut(&room) {
                    subs.sockets.retain(|(s, _)| s.id() != socket.id());
                    subs.sockets.push((socket, served));
                }
                let _ = done.send(());
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

    /// Sends `socket` the room's logged events after `since`; returns the last position sent.
    async fn replay(&mut self, room: Uuid, socket: &ClientSocket, since: u64) -> u64 {
        let events: Vec<LogEvent> = match self.gw.rt.log_after(&[room], since).await {
            Ok(e) => e,
            Err(e) => {
                self.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(room = %room, error = %e, "could not read the room log for a recovery");
                return since;
            }
        };
        let mut last = since;
        for e in &events {
            let Ok(ev) = RoomEvent::parse(&e.text) else {
                continue;
            };
            for f in frames_for(&ev) {
                let _ = socket.send(&f, Class::Durable);
            }
            last = last.max(e.pos);
        }
        last
    }
}

/// Runs the fan-out until the command channel closes.
pub async fn run(gw: Arc<Gateway>, mut rx: mpsc::UnboundedReceiver<Cmd>, client: redis::Client) {
    let mut f = Fanout {
        control: gw.rt.control_channel(),
        gw,
        rooms: HashMap::new(),
    };
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(error = %e, "pub/sub connection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let mut channels = vec![f.control.clone()];
        channels.extend(f.rooms.keys().map(|r| f.gw.rt.room(*r).channel()));
        if let Err(e) = sink.subscribe(&channels).await {
            f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
            tracing::warn!(error = %e, "pub/sub subscribe failed; reconnecting");
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        if !first {
            f.gw.metrics.pubsub_reconnects.fetch_add(1, Relaxed);
            tracing::info!(
                rooms = f.rooms.len(),
                "pub/sub reconnected; refilling rooms from their logs"
            );
            let rooms: Vec<(Uuid, u64)> = f.rooms.iter().map(|(r, s)| (*r, s.last_pos)).collect();
            for (room, last) in rooms {
                if last != 0 {
                    f.refill(room, last, None).await;
                }
            }
        }
        first = false;
        loop {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => f.on_cmd(cmd, &mut sink).await,
                    None => return,
                },
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let channel = msg.get_channel_name().to_owned();
                        let payload: Vec<u8> = msg.get_payload_bytes().to_vec();
                        let Ok(text) = std::str::from_utf8(&payload) else { continue };
                        if channel == f.control {
                            f.on_control(text, &mut sink).await;
                        } else if let Some(room) = room_of(&channel) {
                            f.on_room_message(room, text).await;
                        }
                    }
                    None => {
                        f.gw.metrics.redis_errors.fetch_add(1, Relaxed);
                        tracing::warn!("pub/sub connection lost; reconnecting");
                        break;
                    }
                },
            }
        }
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
