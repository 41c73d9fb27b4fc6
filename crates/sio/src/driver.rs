//! The per-connection task: heartbeat, transport I/O, and the Socket.IO state machine.
//!
//! One task per Engine.IO session owns everything that changes on the hot path without locks: the
//! connected sockets, the binary packet being reassembled, the queue of packets waiting for the
//! application, and the WebSocket itself once there is one. It sleeps on a single timer (the next
//! heartbeat or connect deadline), the WebSocket, and a `Notify` rung by anyone who queues output or
//! mail for it. Application handlers run one at a time, in arrival order, as a future polled by this
//! task, so the connection keeps reading (acks, pongs) while a handler awaits — until `MAX_PENDING`
//! packets wait behind it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::Value;
use sio_core::engine::TextPacket;
use sio_core::{Packet, PacketKind, PartialBinary};
use tokio::time::Instant;

use crate::conn::{Conn, DisconnectReason, In, Out};
use crate::server::{LiveGuard, Mode};
use crate::sid::Sid;
use crate::socket::{
    make_ack_sender, AckResponse, AnySocket, BoxFuture, ConnectError, ConnectRequest,
    ConnectResult, ErasedNamespace, Event, Recovery, SocketCore,
};

/// Packets waiting for the application beyond this stop the driver from reading more.
const MAX_PENDING: usize = 32;

struct Connected {
    ns: Arc<dyn ErasedNamespace>,
    socket: Arc<dyn AnySocket>,
}

enum Pending {
    Packet(Packet, Vec<Bytes>),
    ServerDisconnect(Sid),
}

enum Done {
    Nothing,
    Connected {
        ns: Arc<dyn ErasedNamespace>,
        nsp: String,
        result: ConnectResult,
    },
}

struct Driver {
    conn: Arc<Conn>,
    sockets: Vec<Connected>,
    partial: Option<PartialBinary>,
    pending: VecDeque<Pending>,
    ever_connected: bool,
    awaiting_pong: bool,
    ping_deadline: Instant,
    connect_deadline: Option<Instant>,
    /// The server shut down without inviting clients back: their sessions need not be kept.
    told_not_to_return: bool,
}

/// Runs a session to its end. `ws` is the WebSocket of a WebSocket-only session; polling sessions
/// start without one and may get one from an upgrade.
pub(crate) async fn run(conn: Arc<Conn>, ws: Option<Box<WebSocket>>) {
    let _live = LiveGuard::new(&conn.shared);
    let now = conn.created;
    let cfg = &conn.shared.config;
    let mut driver = Driver {
        ping_deadline: now + cfg.ping_interval,
        connect_deadline: (conn.shared.mode == Mode::SocketIo).then(|| now + cfg.connect_timeout),
        conn: conn.clone(),
        sockets: Vec::new(),
        partial: None,
        pending: VecDeque::new(),
        ever_connected: false,
        awaiting_pong: false,
        told_not_to_return: false,
    };
    driver.run(ws).await;
}

impl Driver {
    async fn run(&mut self, mut ws: Option<Box<WebSocket>>) {
        let conn = self.conn.clone();
        let write_timeout = conn.shared.config.write_timeout;
        let mut running: Option<BoxFuture<Done>> = None;
        let sleep = tokio::time::sleep_until(self.next_deadline());
        tokio::pin!(sleep);

        let reason = loop {
            let mut snap = conn.snapshot();
            if snap.mail {
                self.read_mailbox();
                let again = conn.snapshot();
                snap = crate::conn::Snapshot {
                    upgrade: snap.upgrade.or(again.upgrade),
                    ..again
                };
            }
            if let Some(upgraded) = snap.upgrade {
                ws = Some(upgraded);
                snap.has_out = true;
            }
            if let Some(reason) = snap.closed {
                break reason;
            }
            // Before the flush: starting a job may queue a reply (CONNECT_ERROR for an unknown
            // namespace).
            if running.is_none() {
                running = self.next_job();
                snap.has_out = snap.has_out || conn.has_out();
            }
            if let (Some(w), true) = (ws.as_mut(), snap.has_out) {
                // Boxed: the write path's state exists only while writing, instead of enlarging
                // every idle connection's task. The write timeout's timer is armed only if the
                // write does not complete at once (the socket buffer is full), which keeps timer
                // churn off the common path.
                let mut write = Box::pin(flush(w, &conn));
                let done = match (&mut write).now_or_never() {
                    Some(r) => Ok(r),
                    // A blocked write (the client does not read) ends at the write timeout, or as
                    // soon as the session is closed meanwhile (its queue overflowed, the server
                    // shuts down): a slow client must not hold its connection for the timeout.
                    None => {
                        let closed = async {
                            loop {
                                let woken = conn.wake_driver.notified();
                                if conn.closed().is_some() {
                                    return;
                                }
                                woken.await;
                            }
                        };
                        tokio::select! {
                            r = tokio::time::timeout(write_timeout, write) => r,
                            () = closed => continue,
                        }
                    }
                };
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(sid = %conn.sid, error = %e, "websocket write failed");
                        conn.close(DisconnectReason::TransportError);
                        continue;
                    }
                    Err(_) => {
                        tracing::debug!(sid = %conn.sid, "websocket write timed out: client not reading");
                        conn.close(DisconnectReason::TransportError);
                        continue;
                    }
                }
            }
            let deadline = self.next_deadline();
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            let can_read = ws.is_some() && self.pending.len() < MAX_PENDING;

            tokio::select! {
                biased;
                () = conn.wake_driver.notified() => {}
                done = async { if let Some(f) = running.as_mut() { f.await } else { std::future::pending().await } },
                    if running.is_some() =>
                {
                    running = self.on_done(done);
                }
                () = &mut sleep => self.on_timer(),
                msg = async { if let Some(w) = ws.as_mut() { w.next().await } else { std::future::pending().await } },
                    if can_read =>
                {
                    match msg {
                        Some(Ok(Message::Text(t))) => self.on_text(t.as_str()),
                        Some(Ok(Message::Binary(b))) => self.on_binary(b),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) | None => conn.close(DisconnectReason::TransportClose),
                        Some(Err(e)) => {
                            tracing::debug!(sid = %conn.sid, error = %e, "websocket read failed (oversized frame or broken stream)");
                            conn.close(DisconnectReason::TransportError);
                        }
                    }
                }
            }
        };

        Box::pin(self.finish(reason, running, ws)).await;
    }

    /// Winds the session down: fails pending acks, lets the handler in progress finish, saves
    /// recoverable sessions, tells the namespaces, flushes and closes the WebSocket.
    async fn finish(
        &mut self,
        reason: DisconnectReason,
        mut running: Option<BoxFuture<Done>>,
        ws: Option<Box<WebSocket>>,
    ) {
        let conn = self.conn.clone();
        tracing::debug!(sid = %conn.sid, reason = reason.as_str(), "session closing");
        for c in &self.sockets {
            c.socket.core().fail_acks();
        }
        let store = conn.shared.recovery.clone();
        let recoverable = reason.is_recoverable() && !self.told_not_to_return;
        if let Some(f) = running.take() {
            // Let the handler in progress finish (its acks have just failed), within reason.
            if let Ok(Done::Connected {
                ns,
                result: Ok((socket, _)),
                ..
            }) = tokio::time::timeout(Duration::from_secs(5), f).await
            {
                socket.core().fail_acks();
                // Accepted, but never connected: keep the session for the client's next attempt.
                if let (Some(store), true) = (&store, recoverable) {
                    if let Some(session) = socket.core().session(ns.recovery_state(&socket)) {
                        store.save(session).await;
                    }
                }
            }
        }
        for c in std::mem::take(&mut self.sockets) {
            let core = c.socket.core();
            if let Some(store) = &store {
                if recoverable {
                    if let Some(session) = core.session(c.ns.recovery_state(&c.socket)) {
                        store.save(session).await;
                    }
                } else if let Some(pid) = core.pid {
                    store.remove(pid).await;
                }
            }
            c.ns.disconnect(&c.socket, reason).await;
            conn.shared.unregister_live(&c.socket);
        }
        if conn.state().linger {
            tokio::time::sleep(conn.shared.config.ping_timeout.min(Duration::from_secs(5))).await;
            conn.end_linger();
        }
        if let Some(mut w) = ws {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                let _ = flush(&mut w, &conn).await;
                let _ = w.close().await;
            })
            .await;
        }
    }

    fn next_deadline(&self) -> Instant {
        match self.connect_deadline {
            Some(c) if !self.ever_connected => c.min(self.ping_deadline),
            _ => self.ping_deadline,
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if let Some(c) = self.connect_deadline {
            if !self.ever_connected && now >= c {
                tracing::debug!(sid = %self.conn.sid, "no namespace joined in time: closing");
                self.conn.close(DisconnectReason::ConnectTimeout);
                return;
            }
        }
        if now >= self.ping_deadline {
            if self.awaiting_pong {
                tracing::debug!(sid = %self.conn.sid, "ping timeout");
                self.conn.close(DisconnectReason::PingTimeout);
            } else {
                // Deadlines follow the schedule, not the (possibly late) wake-up.
                self.ping_deadline += self.conn.shared.config.ping_timeout;
                self.conn.state().pong_deadline = Some(self.ping_deadline);
                let _ = self
                    .conn
                    .push_from_driver(Out::Text(Utf8Bytes::from_static("2")));
                self.awaiting_pong = true;
            }
        }
    }

    fn read_mailbox(&mut self) {
        while self.pending.len() < MAX_PENDING {
            let msg = {
                let mut st = self.conn.state();
                let Some(msg) = st.mailbox.pop_front() else {
                    return;
                };
                st.mailbox_bytes = st.mailbox_bytes.saturating_sub(msg.size());
                msg
            };
            match msg {
                In::Text(s) => self.on_text(&s),
                In::Binary(b) => self.on_binary(b),
                In::DisconnectSocket(id) => self.pending.push_back(Pending::ServerDisconnect(id)),
                In::Shutdown { reconnect } => {
                    self.told_not_to_return = !reconnect;
                    if !reconnect {
                        for c in &self.sockets {
                            let _ = self.conn.push_from_driver(Out::text(disconnect_packet(
                                &c.socket.core().nsp,
                            )));
                        }
                    }
                    self.conn.close(DisconnectReason::ServerShutdown);
                }
            }
            if self.conn.closed().is_some() {
                return;
            }
        }
    }

    fn protocol_error(&self, what: &str, err: &dyn std::fmt::Display) {
        tracing::debug!(sid = %self.conn.sid, error = %err, "{what}: closing");
        self.conn.close(DisconnectReason::ParseError);
    }

    fn on_text(&mut self, s: &str) {
        let packet = match TextPacket::decode(s) {
            Ok(p) => p,
            Err(e) => return self.protocol_error("invalid engine.io packet", &e),
        };
        match packet {
            TextPacket::Pong(_) => {
                self.awaiting_pong = false;
                self.conn.state().pong_deadline = None;
                self.ping_deadline = Instant::now() + self.conn.shared.config.ping_interval;
            }
            TextPacket::Ping(_) => {
                // Engine.IO v4's heartbeat goes server → client; the only client ping is the
                // upgrade's `2probe`, which the upgrade handshake consumes on the new WebSocket.
                // Answering others would let a client grow the send queue at will (a polling
                // client that never GETs), so, like the reference server, close.
                tracing::debug!(sid = %self.conn.sid, "invalid heartbeat direction: closing");
                self.conn.close(DisconnectReason::TransportError);
            }
            TextPacket::Message(m) => {
                if self.conn.shared.mode == Mode::EngineEcho {
                    let _ = self.conn.push_from_driver(Out::text(format!("4{m}")));
                } else {
                    self.on_socketio_text(m);
                }
            }
            TextPacket::Close => self.conn.close(DisconnectReason::TransportClose),
            TextPacket::Upgrade | TextPacket::Noop => {}
            TextPacket::Open(_) => self.protocol_error("open packet from a client", &"unexpected"),
        }
    }

    fn on_binary(&mut self, b: Bytes) {
        if self.conn.shared.mode == Mode::EngineEcho {
            let _ = self.conn.push_from_driver(Out::Binary(b));
            return;
        }
        let Some(partial) = self.partial.as_mut() else {
            return self.protocol_error(
                "binary message where a packet was expected",
                &"unexpected binary",
            );
        };
        if let Err(e) = partial.push(b) {
            return self.protocol_error("attachment", &e);
        }
        // maxPayload bounds one packet, attachments included: otherwise a client could announce
        // MAX_ATTACHMENTS frames of maxPayload each and have them all buffered.
        let total: usize = partial.attachments.iter().map(|a| a.len()).sum();
        if total > self.conn.shared.config.max_payload {
            return self.protocol_error("attachments over maxPayload", &total);
        }
        if partial.is_complete() {
            if let Some(done) = self.partial.take() {
                self.dispatch(done.packet, done.attachments);
            }
        }
    }

    fn on_socketio_text(&mut self, m: &str) {
        if self.partial.is_some() {
            return self.protocol_error(
                "text message where a binary attachment was expected",
                &"unexpected text",
            );
        }
        let packet = match Packet::decode(m) {
            Ok(p) => p,
            Err(e) => return self.protocol_error("invalid socket.io packet", &e),
        };
        if packet.kind.is_binary() && packet.attachments > 0 {
            self.partial = Some(PartialBinary::new(packet));
        } else {
            self.dispatch(packet, Vec::new());
        }
    }

    fn dispatch(&mut self, packet: Packet, binary: Vec<Bytes>) {
        match packet.kind {
            PacketKind::Ack | PacketKind::BinaryAck => {
                let (Some(id), Some(Value::Array(args))) = (packet.id, packet.data) else {
                    return;
                };
                match self.find(&packet.nsp) {
                    Some(c) => c
                        .socket
                        .core()
                        .resolve_ack(id, AckResponse { args, binary }),
                    None => {
                        tracing::debug!(sid = %self.conn.sid, nsp = %packet.nsp, "ack for a namespace not joined: ignored")
                    }
                }
            }
            PacketKind::ConnectError => {
                self.protocol_error("CONNECT_ERROR from a client", &"unexpected")
            }
            _ => self.pending.push_back(Pending::Packet(packet, binary)),
        }
    }

    fn find(&self, nsp: &str) -> Option<&Connected> {
        self.sockets.iter().find(|c| &*c.socket.core().nsp == nsp)
    }

    fn remove(&mut self, pred: impl Fn(&SocketCore) -> bool) -> Option<Connected> {
        let i = self.sockets.iter().position(|c| pred(c.socket.core()))?;
        let c = self.sockets.swap_remove(i);
        c.socket.core().fail_acks();
        Some(c)
    }

    /// Starts the application's handling of the next pending packet, if any.
    fn next_job(&mut self) -> Option<BoxFuture<Done>> {
        while let Some(p) = self.pending.pop_front() {
            let (packet, binary) = match p {
                Pending::ServerDisconnect(id) => {
                    if let Some(c) = self.remove(|core| core.id == id) {
                        let f =
                            c.ns.disconnect(&c.socket, DisconnectReason::ServerNamespaceDisconnect);
                        return Some(self.forget_then(&c, f));
                    }
                    continue;
                }
                Pending::Packet(packet, binary) => (packet, binary),
            };
            match packet.kind {
                PacketKind::Connect => {
                    let Some((name, ns)) = self.conn.shared.namespaces.get(&packet.nsp).cloned()
                    else {
                        tracing::debug!(sid = %self.conn.sid, nsp = %packet.nsp, "CONNECT to an unknown namespace");
                        let err = ConnectError::new("Invalid namespace");
                        let _ = self
                            .conn
                            .push_from_driver(Out::text(connect_error_packet(&packet.nsp, &err)));
                        continue;
                    };
                    if self.find(&packet.nsp).is_some() {
                        tracing::debug!(sid = %self.conn.sid, nsp = %packet.nsp, "CONNECT to a namespace already joined: ignored");
                        continue;
                    }
                    return Some(self.connect_job(ns, name, packet));
                }
                PacketKind::Disconnect => {
                    if let Some(c) = self.remove(|core| *core.nsp == packet.nsp) {
                        let f =
                            c.ns.disconnect(&c.socket, DisconnectReason::ClientNamespaceDisconnect);
                        return Some(self.forget_then(&c, f));
                    }
                }
                PacketKind::Event | PacketKind::BinaryEvent => {
                    let Some(c) = self.find(&packet.nsp) else {
                        tracing::debug!(sid = %self.conn.sid, nsp = %packet.nsp, "event for a namespace not joined: ignored");
                        continue;
                    };
                    let Some(Value::Array(mut args)) = packet.data else {
                        continue;
                    };
                    let name = match args.remove(0) {
                        Value::String(s) => s,
                        _ => continue,
                    };
                    let core = c.socket.core();
                    let ack = packet
                        .id
                        .map(|id| make_ack_sender(self.conn.clone(), core.nsp.clone(), id));
                    let ev = Event {
                        name,
                        args,
                        binary,
                        ack,
                    };
                    return Some(nothing(c.ns.event(&c.socket, ev)));
                }
                _ => {}
            }
        }
        None
    }

    /// The socket left for good: drop its recovery session (unless a recovering socket took it
    /// over), then run `f`.
    fn forget_then(&self, c: &Connected, f: BoxFuture<()>) -> BoxFuture<Done> {
        match (&self.conn.shared.recovery, c.socket.core().pid) {
            (Some(store), Some(pid)) => {
                let store = store.clone();
                let socket = c.socket.clone();
                let shared = self.conn.shared.clone();
                Box::pin(async move {
                    store.remove(pid).await;
                    f.await;
                    shared.unregister_live(&socket);
                    Done::Nothing
                })
            }
            _ => nothing(f),
        }
    }

    fn connect_job(
        &self,
        ns: Arc<dyn ErasedNamespace>,
        name: Arc<str>,
        packet: Packet,
    ) -> BoxFuture<Done> {
        let conn = self.conn.clone();
        let store = conn.shared.recovery.clone();
        let nsp = packet.nsp;
        let auth = packet.data;
        Box::pin(async move {
            let mut ids = (Sid::random(), store.as_ref().map(|_| Sid::random()));
            let mut recovery = None;
            let mut taken = None;
            if let (Some(store), Some(Value::Object(a))) = (&store, &auth) {
                if let (Some(Value::String(pid)), Some(Value::String(offset))) =
                    (a.get("pid"), a.get("offset"))
                {
                    if let Some(pid) = Sid::parse(pid) {
                        if let Some(s) = recover(&conn, store, pid, &nsp).await {
                            ids = (s.sid, Some(s.pid));
                            recovery = Some(Recovery {
                                offset: offset.clone(),
                                state: s.state.clone(),
                            });
                            taken = Some(s);
                        }
                    }
                }
            }
            let core = SocketCore::new(ids.0, ids.1, name, conn.clone());
            let req = ConnectRequest {
                nsp: nsp.clone(),
                auth,
                recovery,
                conn: conn.clone(),
            };
            let result = ns.connect(req, core).await;
            if let (Some(store), Some(s)) = (&store, taken) {
                // Refused, or the connection went away meanwhile: the session is the client's
                // still, for its next attempt.
                if result.is_err() || conn.closed().is_some() {
                    store.save(s).await;
                }
            }
            Done::Connected { ns, nsp, result }
        })
    }

    fn on_done(&mut self, done: Done) -> Option<BoxFuture<Done>> {
        let Done::Connected { ns, nsp, result } = done else {
            return None;
        };
        match result {
            Ok((socket, replay)) => {
                if let Some(reason) = self.conn.closed() {
                    socket.core().fail_acks();
                    // The connection closed as the hook accepted: keep the session.
                    if let (Some(store), true) = (
                        &self.conn.shared.recovery,
                        reason.is_recoverable() && !self.told_not_to_return,
                    ) {
                        if let Some(session) = socket.core().session(ns.recovery_state(&socket)) {
                            tokio::spawn(store.save(session));
                        }
                    }
                    return None;
                }
                self.ever_connected = true;
                let core = socket.core();
                let mut reply = String::with_capacity(64);
                reply.push_str("40");
                push_nsp(&mut reply, &nsp);
                reply.push_str(r#"{"sid":""#);
                reply.push_str(core.id.as_str());
                if let Some(pid) = core.pid {
                    reply.push_str(r#"","pid":""#);
                    reply.push_str(pid.as_str());
                }
                reply.push_str(r#""}"#);
                let _ = self.conn.push_from_driver(Out::text(reply));
                self.conn.push_replay(replay);
                let f = ns.connected(&socket);
                // Saved while connected too, so the session survives a crash of this process.
                let save = match (
                    &self.conn.shared.recovery,
                    socket.core().session(ns.recovery_state(&socket)),
                ) {
                    (Some(store), Some(session)) => Some(store.save(session)),
                    _ => None,
                };
                let f: BoxFuture<()> = match save {
                    Some(save) => Box::pin(async move {
                        save.await;
                        f.await;
                    }),
                    None => f,
                };
                if let (Some(_), Some(pid)) = (&self.conn.shared.recovery, socket.core().pid) {
                    self.conn.shared.register_live(pid, &socket);
                }
                // Most connections join one namespace: don't let the Vec round up to four slots.
                self.sockets.reserve_exact(1);
                self.sockets.push(Connected { ns, socket });
                Some(nothing(f))
            }
            Err(err) => {
                tracing::debug!(sid = %self.conn.sid, %nsp, message = %err.message, "CONNECT refused by the application");
                let _ = self
                    .conn
                    .push_from_driver(Out::text(connect_error_packet(&nsp, &err)));
                None
            }
        }
    }
}

/// Finds the session a recovering CONNECT to `nsp` names with `pid`.
///
/// If its socket is still connected on this server (the client noticed its transport died before
/// the server did), the session is **not** recovered: the client gets a fresh socket
/// (`recovered == false`) and the old socket is left alone until its own heartbeat times out, as the
/// reference server does (it only keeps sessions of sockets that are gone). Taking the live socket
/// over instead would let anyone who learned a pid disconnect its owner before any authorisation,
/// and two concurrent recoveries could both win. The application refills what the fresh socket
/// missed (e.g. by sequence number). A pid presented on another namespace than its session's is
/// ignored (a fresh socket), and leaves that session alone.
async fn recover(
    conn: &Arc<Conn>,
    store: &Arc<dyn crate::RecoveryStore>,
    pid: Sid,
    nsp: &str,
) -> Option<crate::Session> {
    if conn.shared.live_socket(pid).is_some() {
        tracing::debug!(sid = %conn.sid, "session to recover is still connected here: connecting a fresh socket");
        return None;
    }
    match store.take(pid).await {
        Some(s) if s.nsp == nsp => Some(s),
        Some(s) => {
            tracing::debug!(sid = %conn.sid, "session to recover belongs to another namespace");
            store.save(s).await;
            None
        }
        None => {
            tracing::debug!(sid = %conn.sid, "session to recover not found");
            None
        }
    }
}

fn nothing(f: BoxFuture<()>) -> BoxFuture<Done> {
    Box::pin(async move {
        f.await;
        Done::Nothing
    })
}

fn push_nsp(s: &mut String, nsp: &str) {
    if nsp != "/" {
        s.push_str(nsp);
        s.push(',');
    }
}

fn disconnect_packet(nsp: &str) -> String {
    let mut s = String::from("41");
    push_nsp(&mut s, nsp);
    s
}

fn connect_error_packet(nsp: &str, err: &ConnectError) -> String {
    let mut s = String::from("44");
    push_nsp(&mut s, nsp);
    s.push_str(&err.to_json().to_string());
    s
}

async fn flush(ws: &mut Box<WebSocket>, conn: &Conn) -> Result<(), axum::Error> {
    let mut wrote = false;
    while let Some(out) = conn.pop_out() {
        wrote = true;
        match out {
            Out::Text(t) => ws.feed(Message::Text(t)).await?,
            Out::Binary(b) => ws.feed(Message::Binary(b)).await?,
            Out::Frame(f) => {
                ws.feed(Message::Text(f.text.clone())).await?;
                for a in f.attachments() {
                    ws.feed(Message::Binary(a.clone())).await?;
                }
            }
        }
    }
    if wrote {
        ws.flush().await?;
    }
    Ok(())
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// Every idle connection pays for one driver task: keep its future small (the WebSocket, the
    /// write path and the shutdown path are boxed for this reason).
    #[test]
    fn the_per_connection_driver_future_stays_small() {
        let server = crate::Server::builder().build();
        let conn = Arc::new(Conn::new(
            server.shared.clone(),
            crate::conn::Handshake::default(),
            crate::conn::Transport::WebSocket,
        ));
        let f = run(conn, None);
        let size = std::mem::size_of_val(&f);
        assert!(size <= 1024, "driver future grew to {size} bytes");
        assert!(std::mem::size_of::<crate::conn::Conn>() <= 320);
    }
}
