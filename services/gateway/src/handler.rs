//! The Socket.IO namespace `/`: authentication at CONNECT, the client events of the wire contract, and
//! what happens when a socket leaves.
//!
//! Every client event may carry an ack, answered `{ok: true, ...}` or
//! `{ok: false, error: {code, message}}`; without an ack, errors go to an `error` event
//! `{code, message, event}`. Bad input changes nothing and leaves the connection up.

use crate::state::{Client, ClientSocket, Gateway};
use chat_domain::{ClientMsgId, MessageContent, MessageType};
use chat_realtime::{CursorKind, RtError, SendRequest};
use deadpool_redis::redis;
use serde_json::{json, Map, Value};
use sio::{Accept, ConnectError, ConnectRequest, DisconnectReason, Event};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tracing::Instrument as _;
use uuid::Uuid;

/// How many ids a `read_message {messageIds}` may name.
const MAX_MESSAGE_IDS: usize = 100;

/// How many messages a `join_room {sinceSeq}` replays at most (older ones: page the REST history).
const MAX_REPLAY: i64 = 500;

/// The namespace handler (a thin wrapper so the state can be shared with background tasks).
pub struct Chat(pub Arc<Gateway>);

/// An error answer.
#[derive(Debug)]
pub struct Failure {
    code: &'static str,
    message: String,
    extra: Vec<(&'static str, Value)>,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            extra: Vec::new(),
        }
    }

    fn validation(message: impl Into<String>) -> Self {
        Self::new("VALIDATION", message)
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.code));
        m.insert("message".into(), Value::from(self.message.clone()));
        for (k, v) in &self.extra {
            m.insert((*k).to_owned(), v.clone());
        }
        Value::Object(m)
    }
}

impl From<RtError> for Failure {
    fn from(e: RtError) -> Self {
        match e {
            RtError::RateLimited { retry_after } => {
                let ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX);
                let secs = ms.div_ceil(1000);
                let mut f = Failure::new(
                    "RATE_LIMITED",
                    format!("too many messages; retry in {secs} s"),
                );
                // Whole seconds rounded up (as HTTP's `Retry-After`), and milliseconds.
                f.extra = vec![
                    ("retryAfter", Value::from(secs)),
                    ("retryAfterMs", Value::from(ms)),
                ];
                f
            }
            RtError::Unavailable(ref err) => {
                tracing::error!(error = %err, "room operation failed");
                Failure::new("UNAVAILABLE", "service temporarily unavailable; retry")
            }
            RtError::NotReplicated => {
                tracing::warn!("a write was not confirmed by a Redis replica in time");
                Failure::new(e.code(), e.to_string())
            }
            other => Failure::new(other.code(), other.to_string()),
        }
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Failure {
    tracing::error!(error = %e, "{what} failed");
    Failure::new("UNAVAILABLE", "service temporarily unavailable; retry")
}

type Reply = Result<Value, Failure>;

/// Seconds since the epoch (the local clock: only compared with itself).
pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The first argument of an event, which must be an object.
struct Args<'a>(&'a Map<String, Value>);

impl<'a> Args<'a> {
    fn of(ev: &'a Event) -> Result<Self, Failure> {
        match ev.args.first() {
            Some(Value::Object(m)) => Ok(Self(m)),
            Some(_) => Err(Failure::validation("the payload must be an object")),
            None => Err(Failure::validation("a payload object is required")),
        }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn uuid(&self, k: &str) -> Result<Uuid, Failure> {
        self.opt_uuid(k)?
            .ok_or_else(|| Failure::validation(format!("{k} is required")))
    }

    fn opt_uuid(&self, k: &str) -> Result<Option<Uuid>, Failure> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Uuid::parse_str(s)
                .map(Some)
                .map_err(|_| Failure::validation(format!("{k} must be a UUID"))),
            Some(_) => Err(Failure::validation(format!("{k} must be a UUID string"))),
        }
    }

    fn opt_str(&self, k: &str) -> Result<Option<&'a str>, Failure> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Failure::validation(format!("{k} must be a string"))),
        }
    }

    fn str(&self, k: &str) -> Result<&'a str, Failure> {
        self.opt_str(k)?
            .ok_or_else(|| Failure::validation(format!("{k} is required")))
    }

    fn opt_seq(&self, k: &str) -> Result<Option<i64>, Failure> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if n >= 0 => Ok(Some(n)),
                _ => Err(Failure::validation(format!(
                    "{k} must be a non-negative integer"
                ))),
            },
        }
    }

    fn bool(&self, k: &str) -> Result<bool, Failure> {
        match self.get(k) {
            Some(Value::Bool(b)) => Ok(*b),
            None => Err(Failure::validation(format!("{k} is required"))),
            Some(_) => Err(Failure::validation(format!("{k} must be a boolean"))),
        }
    }
}

/// What the recovery store keeps for a socket: its user and rooms.
pub fn recovery_state_of(socket: &ClientSocket) -> Value {
    json!({"user": socket.data().user, "rooms": socket.data().room_list()})
}

fn token_of(req: &ConnectRequest) -> Option<String> {
    if let Some(t) = req
        .auth
        .as_ref()
        .and_then(|a| a.get("token"))
        .and_then(Value::as_str)
    {
        return Some(t.trim_start_matches("Bearer ").to_owned());
    }
    if let Some(h) = req.handshake().header("authorization") {
        if let Some(t) = h
            .strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
        {
            return Some(t.trim().to_owned());
        }
    }
    req.handshake().query_param("token")
}

fn refuse(gw: &Gateway, code: &'static str, message: &str) -> ConnectError {
    gw.metrics.rejected(code);
    ConnectError::with_data(message, json!({"code": code}))
}

/// With tracing export on, a root span for a client event that writes to a room (its `traceparent`
/// travels with the event to the worker and the other gateways); otherwise a disabled span, so the
/// event costs nothing more. The room is recorded once parsed; content never is.
fn traced(name: &'static str, socket: &ClientSocket) -> tracing::Span {
    if !chat_telemetry::enabled() {
        return tracing::Span::none();
    }
    let user = socket.data().user;
    let room = tracing::field::Empty;
    match name {
        "chat.send" => tracing::info_span!(parent: None, "chat.send", %user, room),
        "chat.edit" => tracing::info_span!(parent: None, "chat.edit", %user, room),
        "chat.delete" => tracing::info_span!(parent: None, "chat.delete", %user, room),
        _ => tracing::info_span!(parent: None, "chat.mark", %user, room),
    }
}

/// Records the room on the current span (a no-op without tracing).
fn record_room(room: Uuid) {
    tracing::Span::current().record("room", tracing::field::display(room));
}

impl Gateway {
    fn fail_unavailable_connect(&self, e: impl std::fmt::Display) -> ConnectError {
        tracing::error!(error = %e, "authentication dependency failed");
        refuse(self, "UNAVAILABLE", "service temporarily unavailable")
    }

    async fn connect(&self, req: ConnectRequest) -> Result<Accept<Client>, ConnectError> {
        let Some(token) = token_of(&req) else {
            tracing::info!("connect refused: no token");
            return Err(refuse(self, "UNAUTHORIZED", "authentication required"));
        };
        let claims = match self.tokens.verify(&token) {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "connect refused: invalid token");
                return Err(refuse(self, "UNAUTHORIZED", "invalid or expired token"));
            }
        };
        match self.bus.is_jti_revoked(claims.sub, claims.jti).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(user = %claims.sub, "connect refused: revoked token");
                return Err(refuse(self, "UNAUTHORIZED", "token revoked"));
            }
            Err(e) => return Err(self.fail_unavailable_connect(e)),
        }
        let mut rooms = HashSet::new();
        let mut recovered_from = None;
        if let Some(r) = &req.recovery {
            let owner = r.state.get("user").and_then(Value::as_str);
            if owner != Some(claims.sub.to_string().as_str()) {
                tracing::info!(user = %claims.sub, "connect refused: recovering another user's session");
                return Err(refuse(
                    self,
                    "UNAUTHORIZED",
                    "session belongs to another user",
                ));
            }
            recovered_from = Some(r.offset.parse::<u64>().unwrap_or(0));
            for room in r
                .state
                .get("rooms")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
            {
                // Only rooms the user still belongs to come back.
                match self.members.get(&self.store, room, claims.sub).await {
                    Ok(Some(_)) => {
                        rooms.insert(room);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(self.fail_unavailable_connect(e)),
                }
            }
        }
        Ok(Accept::new(Client {
            user: claims.sub,
            jti: claims.jti,
            conn_id: Client::new_conn_id(&self.config.gateway.id),
            session_saved: 0.into(),
            rooms: Mutex::new(rooms),
            recovered_from,
        }))
    }

    async fn connected(&self, socket: ClientSocket) {
        self.sockets().insert(socket.id(), socket.clone());
        self.metrics.connections.fetch_add(1, Relaxed);
        let d = socket.data();
        tracing::debug!(user = %d.user, sid = %socket.id(), recovered = d.recovered_from.is_some(), "connected");
        // A recovered socket is back in its rooms, with what it missed in all of them replayed
        // first, merged in position order.
        let rooms = d.room_list();
        if !rooms.is_empty() {
            let live = self
                .fanout
                .join(rooms.clone(), socket.clone(), d.recovered_from, Vec::new())
                .await;
            for room in rooms.iter().filter(|r| !live.contains(r)) {
                tracing::warn!(room = %room, "could not resubscribe a recovered socket");
                d.rooms().remove(room);
            }
        }
        let _ = socket.emit(
            "welcome",
            &(json!({
                "userId": d.user,
                "message": "connected",
                "recovered": d.recovered_from.is_some(),
                "rooms": d.room_list(),
            }),),
        );
        self.session_save(&socket).await;
        self.presence_connect(&socket).await;
    }

    async fn disconnected(&self, socket: ClientSocket, reason: DisconnectReason) {
        self.sockets().remove(&socket.id());
        self.metrics.connections.fetch_sub(1, Relaxed);
        if reason == DisconnectReason::QueueOverflow {
            self.metrics.slow_disconnects.fetch_add(1, Relaxed);
        }
        let d = socket.data();
        tracing::debug!(user = %d.user, sid = %socket.id(), reason = reason.as_str(), "disconnected");
        for room in d.room_list() {
            self.fanout.leave(room, socket.id());
        }
        self.typing.stop_all(socket.id());
        self.presence_disconnect(d.user, &d.conn_id, &self.config.gateway.id, None)
            .await;
    }

    async fn event(&self, socket: ClientSocket, ev: Event) {
        let started = Instant::now();
        self.metrics.event_in(&ev.name);
        let reply = match ev.name.as_str() {
            "join_room" => self.join_room(&socket, &ev).await,
            "leave_room" => self.leave_room(&socket, &ev).await,
            "send_message" => {
                self.send_message(&socket, &ev)
                    .instrument(traced("chat.send", &socket))
                    .await
            }
            "typing" => self.typing_event(&socket, &ev),
            "edit_message" => {
                self.edit_message(&socket, &ev)
                    .instrument(traced("chat.edit", &socket))
                    .await
            }
            "delete_message" => {
                self.delete_message(&socket, &ev)
                    .instrument(traced("chat.delete", &socket))
                    .await
            }
            "mark_read" | "mark_message_read" | "read_message" => {
                self.mark(&socket, &ev, CursorKind::Read)
                    .instrument(traced("chat.mark", &socket))
                    .await
            }
            "message_delivered" => {
                self.mark(&socket, &ev, CursorKind::Delivered)
                    .instrument(traced("chat.mark", &socket))
                    .await
            }
            other => {
                tracing::info!(event = other, "unknown event");
                Err(Failure::validation(format!("unknown event {other:?}")))
            }
        };
        if ev.name == "send_message" {
            self.metrics.send_latency.observe(started.elapsed());
        }
        if let Err(f) = &reply {
            self.metrics.rejected(f.code);
            if f.code != "UNAVAILABLE" {
                tracing::info!(event = %ev.name, user = %socket.data().user, code = f.code, message = %f.message, "event refused");
            }
        }
        match (ev.ack, reply) {
            (Some(ack), Ok(v)) => {
                let _ = ack.send(&(v,));
            }
            (Some(ack), Err(f)) => {
                let _ = ack.send(&(json!({"ok": false, "error": f.to_json()}),));
            }
            (None, Ok(_)) => {}
            (None, Err(f)) => {
                let mut body = f.to_json();
                body["event"] = Value::from(ev.name.clone());
                let _ = socket.emit("error", &(body,));
            }
        }
    }

    /// Saves the socket's recovery session (its rooms) now: at connect, and whenever its rooms
    /// change.
    pub(crate) fn session_save(&self, socket: &ClientSocket) -> sio::BoxFuture<()> {
        match socket.pid() {
            Some(pid) => {
                socket.data().session_saved.store(unix_secs(), Relaxed);
                self.recovery.save_live(&sio::Session {
                    sid: socket.id(),
                    pid,
                    nsp: socket.nsp().to_owned(),
                    state: recovery_state_of(socket),
                })
            }
            None => Box::pin(async {}),
        }
    }

    /// The user's read and delivered cursors in the room as Redis has them (0 where it has none).
    async fn live_cursors(&self, room: Uuid, user: Uuid) -> anyhow::Result<(i64, i64)> {
        let k = self.rt.room(room);
        let mut c = self.bus.conn().await?;
        let (read, delivered): (Option<i64>, Option<i64>) = redis::pipe()
            .cmd("HGET")
            .arg(k.read())
            .arg(user.to_string())
            .cmd("HGET")
            .arg(k.delivered())
            .arg(user.to_string())
            .query_async(&mut *c)
            .await?;
        Ok((read.unwrap_or(0), delivered.unwrap_or(0)))
    }

    /// The socket must have joined the room (and so be a member).
    fn joined(socket: &ClientSocket, room: Uuid) -> Result<(), Failure> {
        if socket.data().in_room(room) {
            Ok(())
        } else {
            Err(Failure::new("FORBIDDEN", "join the room first"))
        }
    }

    async fn join_room(&self, socket: &ClientSocket, ev: &Event) -> Reply {
        let a = Args::of(ev)?;
        let room = a.uuid("roomId")?;
        let code = a.opt_str("inviteCode")?;
        let since = a.opt_seq("sinceSeq")?;
        let user = socket.data().user;
        let not_found = || Failure::new("NOT_FOUND", "room not found or invite code invalid");
        let mut membership = self
            .members
            .get(&self.store, room, user)
            .await
            .map_err(|e| unavailable("membership lookup", e))?;
        let mut joined_now = false;
        if membership.is_none() {
            let access = self
                .store
                .room_access(room, user)
                .await
                .map_err(|e| unavailable("room lookup", e))?;
            let Some((private, _)) = access else {
                return Err(not_found());
            };
            if private && code.is_none() {
                return Err(not_found());
            }
            let code = if private { code } else { None };
            let added = self
                .store
                .add_member(room, user, code)
                .await
                .map_err(|e| unavailable("join", e))?;
            self.members.invalidate(room, user);
            membership = self
                .members
                .get(&self.store, room, user)
                .await
                .map_err(|e| unavailable("membership lookup", e))?;
            if membership.is_none() {
                return Err(not_found());
            }
            if added {
                joined_now = true;
                let c = chat_realtime::Control::MemberAdded { room, user };
                if let Err(e) = self.rt.publish_control(&c).await {
                    tracing::warn!(error = %e, "user_joined not published");
                }
            }
        }
        let Some(membership) = membership else {
            return Err(not_found());
        };
        // With `sinceSeq`: the room's position first, then the missed messages (recent log, then
        // MySQL), handed to the fan-out, which sends them, then the room's logged events after that
        // position, then the live ones: in order, nothing falls between (a message may come twice,
        // in the page and in the log: clients keep one per (roomId, seq)).
        let mut replayed = 0usize;
        let mut has_more = false;
        // The last seq the page covered (deleted messages are not sent but are covered): the next
        // `sinceSeq` when `hasMore`.
        let mut replayed_up_to: Option<i64> = None;
        let mut first = Vec::new();
        let mut since_pos = None;
        if let Some(since) = since {
            since_pos = Some(self.rt.room_pos(room).await.map_err(Failure::from)?);
            let page = self
                .rt
                .history(
                    room,
                    chat_store::messages::HistoryQuery {
                        before: None,
                        after: Some(since),
                        limit: MAX_REPLAY,
                    },
                )
                .await
                .map_err(Failure::from)?;
            has_more = page.has_more;
            replayed_up_to = page.messages.last().map(|m| m.seq);
            for m in page.messages.iter().filter(|m| m.deleted_at.is_none()) {
                if let Ok(f) = sio::Frame::event("/", "receive_message", &(m,)) {
                    first.push(f);
                    replayed += 1;
                }
            }
        }
        let was_in = socket.data().in_room(room);
        if !was_in || since.is_some() {
            let live = self
                .fanout
                .join(vec![room], socket.clone(), since_pos, first)
                .await;
            if live.is_empty() {
                return Err(unavailable("subscribe", "fan-out unavailable"));
            }
        }
        if !was_in {
            socket.data().rooms().insert(room);
        }
        // A kick (or room deletion) handled by the fan-out between the membership check above and
        // the registration found nothing to remove, and the socket would now stay subscribed. The
        // fan-out drops the cached membership before it removes anyone, so a second look settles it:
        // a cache hit unless such a control came, and then MySQL's word.
        let still = self
            .members
            .get(&self.store, room, user)
            .await
            .map_err(|e| unavailable("membership lookup", e));
        if !matches!(still, Ok(Some(_))) {
            socket.data().rooms().remove(&room);
            self.fanout.leave(room, socket.id());
            self.session_save(socket).await;
            return Err(still.err().unwrap_or_else(not_found));
        }
        if !was_in {
            // The session must name the room before the ack: a gateway that dies before its next
            // heartbeat would otherwise leave a recovering client outside the room it joined.
            self.session_save(socket).await;
        }
        // Who is online: one presence lookup per member, so only for rooms up to
        // JOIN_ONLINE_LIST_MAX members (a reconnect storm into a large room would otherwise cost
        // members² lookups); a larger room's clients learn presence from `user_status` events.
        let (members, member_count) = self
            .store
            .member_ids_upto(room, self.config.gateway.join_online_list_max)
            .await
            .map_err(|e| unavailable("members", e))?;
        let listed = members.is_some();
        let online: Vec<Uuid> = match members {
            Some(members) => {
                let online_flags = self
                    .bus
                    .online_many(&members)
                    .await
                    .map_err(|e| unavailable("presence", e))?;
                members
                    .iter()
                    .zip(online_flags)
                    .filter_map(|(u, on)| on.then_some(*u))
                    .collect()
            }
            None => Vec::new(),
        };
        let last_seq = self.rt.last_seq(room).await.unwrap_or(0);
        // The cursors as they are now: Redis runs ahead of MySQL (and of the membership cache). As in
        // MySQL, what was read was delivered.
        let (read, delivered) = match self.live_cursors(room, user).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(room = %room, error = %e, "cursors unavailable; reporting MySQL's");
                (0, 0)
            }
        };
        let read_seq = read.max(membership.read_seq);
        let delivered_seq = delivered.max(membership.delivered_seq).max(read_seq);
        Ok(json!({
            "ok": true,
            "roomId": room,
            "role": membership.role,
            "joined": joined_now,
            "onlineListed": listed,
            "onlineCount": listed.then_some(online.len()),
            "online": online,
            "memberCount": member_count,
            "lastSeq": last_seq,
            "readSeq": read_seq,
            "deliveredSeq": delivered_seq,
            "replayed": replayed,
            "hasMore": has_more,
            "replayedUpTo": replayed_up_to,
        }))
    }

    async fn leave_room(&self, socket: &ClientSocket, ev: &Event) -> Reply {
        let a = Args::of(ev)?;
        let room = a.uuid("roomId")?;
        let was_in = socket.data().rooms().remove(&room);
        if was_in {
            self.typing.stop(socket, room);
            self.fanout.leave(room, socket.id());
            self.session_save(socket).await;
        }
        Ok(json!({"ok": true, "roomId": room, "left": was_in}))
    }

    async fn send_message(&self, socket: &ClientSocket, ev: &Event) -> Reply {
        let a = Args::of(ev)?;
        let room = a.uuid("roomId")?;
        let content = match a.get("content") {
            Some(Value::String(s)) => {
                MessageContent::parse(s).map_err(|e| Failure::validation(format!("content {e}")))?
            }
            Some(_) => return Err(Failure::validation("content must be a string")),
            None => return Err(Failure::validation("content is required")),
        };
        let kind = match a.opt_str("type")? {
            Some(t) => {
                MessageType::parse(t).map_err(|e| Failure::validation(format!("type {e}")))?
            }
            None => MessageType::Text,
        };
        let client_msg_id = match a.get("clientMsgId") {
            None => None,
            Some(Value::String(s)) => Some(
                ClientMsgId::parse(s)
                    .map_err(|e| Failure::validation(format!("clientMsgId {e}")))?,
            ),
            Some(Value::Number(n)) => Some(
                ClientMsgId::parse(&n.to_string())
                    .map_err(|e| Failure::validation(format!("clientMsgId {e}")))?,
            ),
            Some(_) => return Err(Failure::validation("clientMsgId must be a string")),
        };
        let user = socket.data().user;
        record_room(room);
        Self::joined(socket, room)?;
        // The socket joined, but the membership may have ended since (kick): check the cache.
        let member = self
            .members
            .get(&self.store, room, user)
            .await
            .map_err(|e| unavailable("membership lookup", e))?;
        if member.is_none() {
            return Err(Failure::new("FORBIDDEN", "not a member of this room"));
        }
        let started = Instant::now();
        let sent = self
            .rt
            .send(&SendRequest {
                room,
                sender: user,
                kind,
                content,
                client_msg_id,
                traceparent: chat_telemetry::current_traceparent(),
            })
            .await
            .map_err(Failure::from)?;
        self.metrics.redis_latency.observe(started.elapsed());
        self.typing.stop(socket, room);
        let message: Box<serde_json::value::RawValue> =
            serde_json::value::RawValue::from_string(sent.json)
                .map_err(|e| unavailable("encoding", e))?;
        Ok(json!({"ok": true, "message": message, "duplicate": sent.duplicate}))
    }

    fn typing_event(&self, socket: &ClientSocket, ev: &Event) -> Reply {
        let a = Args::of(ev)?;
        let room = a.uuid("roomId")?;
        let typing = a.bool("isTyping")?;
        Self::joined(socket, room)?;
        self.typing.set(socket, room, typing);
        Ok(json!({"ok": true}))
    }

    async fn edit_message(&self, socket: &ClientSocket, ev: &Event) -> Reply {
        let a = Args::of(ev)?;
        let id = a.uuid("messageId")?;
        let content = MessageContent::parse(a.str("content")?)
            .map_err(|e| Failure::validation(format!("content {e}")))?;
        let data = self
            .rt
            .edit(
                socket.data().user,
                id,
                &content,
                chat_telemetry::current_traceparent().as_deref(),
            )
            .await
            .map_err(Failure::from)?;
        Ok(json!({"ok": true, "message": data}))
    }

    async fn delete_message(&self, socket: &ClientSocket, ev: &Event) -> Reply {
        let a = Args::of(ev)?;
        let id = a.uuid("messageId")?;
        let data = self
            .rt
            .delete(
                socket.data().user,
                id,
                chat_telemetry::current_traceparent().as_deref(),
            )
            .await
            .map_err(Failure::from)?;
        Ok(json!({"ok": true, "message": data}))
    }

    /// `mark_read {roomId, seq | messageId}`, `mark_message_read {messageId}`,
    /// `read_message {roomId, messageIds[]}`, `message_delivered {roomId, seq}`.
    async fn mark(&self, socket: &ClientSocket, ev: &Event, kind: CursorKind) -> Reply {
        let a = Args::of(ev)?;
        let user = socket.data().user;
        let mut room = a.opt_uuid("roomId")?;
        let mut seq = a.opt_seq("seq")?;
        let mut ids = Vec::new();
        if let Some(id) = a.opt_uuid("messageId")? {
            ids.push(id);
        }
        match a.get("messageIds") {
            None => {}
            Some(Value::Array(list)) => {
                // Each id is looked up (Redis, then MySQL): keep the list short.
                if list.len() > MAX_MESSAGE_IDS {
                    return Err(Failure::validation(format!(
                        "messageIds may hold at most {MAX_MESSAGE_IDS} ids"
                    )));
                }
                for v in list {
                    let id = v
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s).ok())
                        .ok_or_else(|| Failure::validation("messageIds must be UUID strings"))?;
                    ids.push(id);
                }
            }
            Some(_) => return Err(Failure::validation("messageIds must be an array")),
        }
        if seq.is_none() && ids.is_empty() {
            return Err(Failure::validation("seq or messageId is required"));
        }
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            let m = self
                .rt
                .resolve_message(id)
                .await
                .map_err(Failure::from)?
                .ok_or_else(|| Failure::new("NOT_FOUND", "message not found"))?;
            match room {
                Some(r) if r != m.room => {
                    return Err(Failure::new("NOT_FOUND", "message not found in this room"))
                }
                _ => room = Some(m.room),
            }
            seq = Some(seq.map_or(m.seq, |s| s.max(m.seq)));
        }
        let room = room.ok_or_else(|| Failure::validation("roomId is required"))?;
        record_room(room);
        let seq = seq.unwrap_or(0);
        Self::joined(socket, room)?;
        let member = self
            .members
            .get(&self.store, room, user)
            .await
            .map_err(|e| unavailable("membership lookup", e))?
            .ok_or_else(|| Failure::new("FORBIDDEN", "not a member of this room"))?;
        let floor = match kind {
            CursorKind::Read => member.read_seq,
            CursorKind::Delivered => member.delivered_seq,
        };
        let (at, moved) = self
            .rt
            .cursor(
                user,
                room,
                kind,
                seq,
                floor,
                chat_telemetry::current_traceparent().as_deref(),
            )
            .await
            .map_err(Failure::from)?;
        Ok(json!({"ok": true, "roomId": room, "seq": at, "moved": moved}))
    }
}

impl sio::Namespace for Chat {
    type Data = Client;

    async fn connect(&self, req: ConnectRequest) -> Result<Accept<Client>, ConnectError> {
        self.0.connect(req).await
    }

    async fn connected(&self, socket: ClientSocket) {
        self.0.connected(socket).await;
    }

    async fn event(&self, socket: ClientSocket, ev: Event) {
        self.0.event(socket, ev).await;
    }

    async fn disconnect(&self, socket: ClientSocket, reason: DisconnectReason) {
        self.0.disconnected(socket, reason).await;
    }

    fn recovery_state(&self, socket: &ClientSocket) -> Value {
        recovery_state_of(socket)
    }
}
