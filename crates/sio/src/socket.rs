//! Namespaces, sockets and acks: the application-facing half of Socket.IO.

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use sio_core::encode::{self, EventOpts};
use tokio::sync::oneshot;

use crate::conn::{Conn, DisconnectReason, Handshake, In, Out, SendError};
use crate::frame::{Class, Frame};
use crate::recovery::Session;
use crate::sid::Sid;

pub(crate) type BoxFuture<T> = crate::BoxFuture<T>;

/// The application's handler for one namespace.
///
/// The server calls these methods from the connection's driver task, **one at a time per
/// connection, in the order the packets arrived**: a socket's `event`s never overlap or reorder, and
/// `connected` runs before its first `event`. While a call is in progress the connection keeps
/// reading pongs and delivering acks (so a handler may await [`Socket::emit_with_ack`]), but only
/// until 32 packets wait behind the call: then it stops reading, acks and pongs included, until the
/// call returns. Work that must not delay the socket's next event should be spawned.
pub trait Namespace: Send + Sync + 'static {
    /// Per-socket application state, decided by [`Namespace::connect`].
    type Data: Send + Sync + 'static;

    /// A client asks to join the namespace. Return `Ok` to accept (with the socket's data and, for a
    /// recovered session, the frames to replay), `Err` to refuse with `CONNECT_ERROR`.
    fn connect(
        &self,
        req: ConnectRequest,
    ) -> impl Future<Output = Result<Accept<Self::Data>, ConnectError>> + Send;

    /// The socket is connected: the CONNECT reply and any replayed frames are queued.
    fn connected(&self, socket: Socket<Self::Data>) -> impl Future<Output = ()> + Send {
        let _ = socket;
        async {}
    }

    /// The client emitted an event.
    fn event(&self, socket: Socket<Self::Data>, event: Event) -> impl Future<Output = ()> + Send;

    /// The socket is gone. Its pending server → client acks have failed already.
    fn disconnect(
        &self,
        socket: Socket<Self::Data>,
        reason: DisconnectReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (socket, reason);
        async {}
    }

    /// What to keep in the recovery store when the socket drops for a recoverable reason; it comes
    /// back in [`Recovery::state`]. Only called when a recovery store is configured.
    fn recovery_state(&self, socket: &Socket<Self::Data>) -> Value {
        let _ = socket;
        Value::Null
    }
}

/// A CONNECT to a namespace, as the connect hook sees it.
pub struct ConnectRequest {
    /// The namespace.
    pub nsp: String,
    /// The CONNECT payload (`auth` option of the client), if any.
    pub auth: Option<Value>,
    /// Present when the client asked to recover a session the store still had: the old socket keeps
    /// its id and `pid` if the hook accepts.
    pub recovery: Option<Recovery>,
    pub(crate) conn: Arc<Conn>,
}

impl std::fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("nsp", &self.nsp)
            .field("auth", &self.auth)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl ConnectRequest {
    /// The HTTP handshake request of the connection (headers, query).
    pub fn handshake(&self) -> &Handshake {
        &self.conn.handshake
    }
}

/// A session being recovered (connection state recovery).
#[derive(Debug, Clone)]
pub struct Recovery {
    /// The offset of the last event the client received, as it presented it.
    pub offset: String,
    /// What [`Namespace::recovery_state`] returned when the session dropped.
    pub state: Value,
}

/// The connect hook's acceptance.
#[derive(Debug)]
pub struct Accept<D> {
    pub data: D,
    /// Frames to deliver right after the CONNECT reply (the events a recovered session missed,
    /// built with [`Frame::event_with_offset`]).
    pub replay: Vec<Frame>,
}

impl<D> Accept<D> {
    /// Accepts with `data` and nothing to replay.
    pub fn new(data: D) -> Self {
        Self {
            data,
            replay: Vec::new(),
        }
    }

    /// Adds frames to replay.
    #[must_use]
    pub fn with_replay(mut self, frames: Vec<Frame>) -> Self {
        self.replay = frames;
        self
    }
}

/// A refusal: sent to the client as `CONNECT_ERROR {message, data?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectError {
    /// A refusal with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// A refusal with a message and extra data (the client sees it as `err.data`).
    pub fn with_data(message: impl Into<String>, data: Value) -> Self {
        Self {
            message: message.into(),
            data: Some(data),
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("message".into(), Value::String(self.message.clone()));
        if let Some(d) = &self.data {
            m.insert("data".into(), d.clone());
        }
        Value::Object(m)
    }
}

/// An event from the client.
#[derive(Debug)]
pub struct Event {
    pub name: String,
    /// The arguments after the name. Binary values appear as placeholders
    /// `{"_placeholder":true,"num":i}` standing for `binary[i]`.
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
    /// Present when the client expects an answer.
    pub ack: Option<AckSender>,
}

/// Answers one client → server ack. Dropping it without answering leaves the client's callback
/// pending (the client's own timeout, if any, applies).
pub struct AckSender {
    conn: Arc<Conn>,
    nsp: Arc<str>,
    id: u64,
}

impl std::fmt::Debug for AckSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckSender")
            .field("nsp", &self.nsp)
            .field("id", &self.id)
            .finish()
    }
}

impl AckSender {
    /// Answers with `args` (a JSON array: `&(a,)`, a slice, a `Vec`…).
    ///
    /// # Errors
    /// [`SendError::Closed`], an encoding error, or [`SendError::Overflow`] when the client has
    /// left more than the queue's capacity (plus a small margin) unread: the connection is closed.
    pub fn send<A: Serialize + ?Sized>(self, args: &A) -> Result<(), SendError> {
        let text = encode::ack(&self.nsp, self.id, args, 0)?;
        self.conn.push_control(Out::text(text))
    }

    /// Answers with binary attachments referred to by placeholders in `args`.
    ///
    /// # Errors
    /// As for [`AckSender::send`].
    pub fn send_binary<A: Serialize + ?Sized>(
        self,
        args: &A,
        binary: Vec<Bytes>,
    ) -> Result<(), SendError> {
        let text = encode::ack(&self.nsp, self.id, args, binary.len())?;
        self.conn
            .push_control(Out::Frame(Frame::from_parts(text, Some(binary))))
    }
}

/// The client's answer to a server → client ack.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

/// Why [`Socket::emit_with_ack`] got no answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("no ack within the timeout")]
    Timeout,
    #[error("socket disconnected before the ack")]
    Disconnected,
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Drops a pending server → client ack entry (see [`Socket::emit_with_ack`]).
struct ForgetAck<'a> {
    core: &'a SocketCore,
    id: u64,
}

impl Drop for ForgetAck<'_> {
    fn drop(&mut self) {
        let mut acks = self.core.acks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = acks.iter().position(|(i, _)| *i == self.id) {
            acks.swap_remove(p);
        }
    }
}

/// The untyped part of a socket.
pub(crate) struct SocketCore {
    pub(crate) id: Sid,
    pub(crate) pid: Option<Sid>,
    pub(crate) nsp: Arc<str>,
    pub(crate) conn: Arc<Conn>,
    pub(crate) connected: AtomicBool,
    next_ack: AtomicU64,
    /// Pending server → client acks. A Vec: there are rarely more than a few.
    acks: Mutex<Vec<(u64, oneshot::Sender<AckResponse>)>>,
}

impl SocketCore {
    pub(crate) fn new(id: Sid, pid: Option<Sid>, nsp: Arc<str>, conn: Arc<Conn>) -> Self {
        Self {
            id,
            pid,
            nsp,
            conn,
            connected: AtomicBool::new(true),
            next_ack: AtomicU64::new(0),
            acks: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn resolve_ack(&self, id: u64, resp: AckResponse) {
        let tx = {
            let mut acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
            acks.iter()
                .position(|(i, _)| *i == id)
                .map(|p| acks.swap_remove(p).1)
        };
        match tx {
            Some(tx) => {
                let _ = tx.send(resp);
            }
            None => tracing::debug!(sid = %self.id, id, "ack for an unknown id: ignored"),
        }
    }

    pub(crate) fn fail_acks(&self) {
        self.connected.store(false, Ordering::Release);
        self.acks.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(crate) fn session(&self, state: Value) -> Option<Session> {
        Some(Session {
            sid: self.id,
            pid: self.pid?,
            nsp: self.nsp.to_string(),
            state,
        })
    }
}

pub(crate) struct SocketInner<D> {
    pub(crate) core: SocketCore,
    data: D,
}

/// A socket as the driver holds it, whatever its data type.
pub(crate) trait AnySocket: Send + Sync {
    fn core(&self) -> &SocketCore;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<D: Send + Sync + 'static> AnySocket for SocketInner<D> {
    fn core(&self) -> &SocketCore {
        &self.core
    }
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// A connected socket: one client in one namespace. Cheap to clone (one `Arc`); keep clones in
/// room registries and send to them from anywhere.
pub struct Socket<D> {
    inner: Arc<SocketInner<D>>,
}

impl<D> Clone for Socket<D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<D> std::fmt::Debug for Socket<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.core.id)
            .field("nsp", &self.inner.core.nsp)
            .finish()
    }
}

impl<D: Send + Sync + 'static> Socket<D> {
    /// The socket id (what the client sees as `socket.id`).
    pub fn id(&self) -> Sid {
        self.inner.core.id
    }

    /// The Engine.IO session id of the underlying connection.
    pub fn session_id(&self) -> Sid {
        self.inner.core.conn.sid
    }

    /// The recovery private id, when connection state recovery is on.
    pub fn pid(&self) -> Option<Sid> {
        self.inner.core.pid
    }

    /// The namespace.
    pub fn nsp(&self) -> &str {
        &self.inner.core.nsp
    }

    /// The application data the connect hook returned.
    pub fn data(&self) -> &D {
        &self.inner.data
    }

    /// The HTTP handshake of the connection.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.core.conn.handshake
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.inner.core.connected.load(Ordering::Acquire) && self.inner.core.conn.closed().is_none()
    }

    /// Emits an event (durable). `args` must serialize to a JSON array: `&(a,)`, `&(a, b)`, a slice.
    ///
    /// # Errors
    /// See [`SendError`].
    pub fn emit<A: Serialize + ?Sized>(&self, event: &str, args: &A) -> Result<(), SendError> {
        let frame = Frame::event(&self.inner.core.nsp, event, args)?;
        self.send(&frame, Class::Durable)
    }

    /// Sends a pre-encoded frame (see [`Frame`]): no encoding, no copy. The frame must have been
    /// encoded for this socket's namespace.
    ///
    /// # Errors
    /// [`SendError::Closed`], [`SendError::Dropped`] (volatile, queue under pressure) or
    /// [`SendError::Overflow`] (durable, queue full: the connection has been closed).
    pub fn send(&self, frame: &Frame, class: Class) -> Result<(), SendError> {
        if !self.inner.core.connected.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        self.inner.core.conn.push(Out::Frame(frame.clone()), class)
    }

    /// Queues a catch-up batch (missed events being replayed): the frames are never refused for
    /// lack of room, and the queue's capacity grows by their number until they are written, so a
    /// client catching up on hundreds of events is not mistaken for a slow one.
    pub fn send_replay(&self, frames: Vec<Frame>) {
        if self.inner.core.connected.load(Ordering::Acquire) {
            self.inner.core.conn.push_replay(frames);
            self.inner.core.conn.wake_driver.notify_one();
        }
    }

    /// Emits an event the client must acknowledge, and waits for the answer at most `timeout`.
    ///
    /// # Errors
    /// [`AckError::Timeout`], [`AckError::Disconnected`] or a send error.
    pub async fn emit_with_ack<A: Serialize + ?Sized>(
        &self,
        event: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        let core = &self.inner.core;
        let id = core.next_ack.fetch_add(1, Ordering::Relaxed);
        let frame = Frame::build(
            &core.nsp,
            event,
            args,
            EventOpts {
                ack_id: Some(id),
                ..Default::default()
            },
            None,
        )
        .map_err(SendError::from)?;
        let (tx, rx) = oneshot::channel();
        core.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((id, tx));
        // Removes the pending entry however this future ends: error, timeout, or dropped by its
        // caller before the answer (otherwise the entry would stay until the socket disconnects).
        let _forget = ForgetAck { core, id };
        self.send(&frame, Class::Durable)?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => Err(AckError::Timeout),
        }
    }

    /// Disconnects the socket from its namespace (the client gets a DISCONNECT packet and does not
    /// reconnect on its own). The connection stays open for other namespaces.
    pub fn disconnect(&self) {
        let core = &self.inner.core;
        if core.connected.swap(false, Ordering::AcqRel) {
            let mut text = String::from("41");
            if &*core.nsp != "/" {
                text.push_str(&core.nsp);
                text.push(',');
            }
            let _ = core.conn.push_control(Out::text(text));
            core.conn.send_mailbox(In::DisconnectSocket(core.id));
        }
    }

    /// Closes the whole underlying connection (every namespace), as a transport close: stock
    /// clients reconnect and may recover.
    pub fn close_connection(&self) {
        self.inner.core.conn.close(DisconnectReason::TransportClose);
    }
}

/// What a connect hook produced: the socket and the frames to replay, or a refusal.
pub(crate) type ConnectResult = Result<(Arc<dyn AnySocket>, Vec<Frame>), ConnectError>;

/// Object-safe face of a [`Namespace`], used by the driver.
pub(crate) trait ErasedNamespace: Send + Sync {
    fn connect(&self, req: ConnectRequest, core: SocketCore) -> BoxFuture<ConnectResult>;
    fn connected(&self, s: &Arc<dyn AnySocket>) -> BoxFuture<()>;
    fn event(&self, s: &Arc<dyn AnySocket>, ev: Event) -> BoxFuture<()>;
    fn disconnect(&self, s: &Arc<dyn AnySocket>, reason: DisconnectReason) -> BoxFuture<()>;
    fn recovery_state(&self, s: &Arc<dyn AnySocket>) -> Value;
}

pub(crate) struct NamespaceAdapter<N>(pub(crate) Arc<N>);

impl<N: Namespace> NamespaceAdapter<N> {
    fn typed(s: &Arc<dyn AnySocket>) -> Option<Socket<N::Data>> {
        s.clone()
            .into_any()
            .downcast::<SocketInner<N::Data>>()
            .ok()
            .map(|inner| Socket { inner })
    }
}

impl<N: Namespace> ErasedNamespace for NamespaceAdapter<N> {
    fn connect(&self, req: ConnectRequest, core: SocketCore) -> BoxFuture<ConnectResult> {
        let ns = self.0.clone();
        Box::pin(async move {
            let accept = ns.connect(req).await?;
            let socket: Arc<dyn AnySocket> = Arc::new(SocketInner {
                core,
                data: accept.data,
            });
            Ok((socket, accept.replay))
        })
    }

    fn connected(&self, s: &Arc<dyn AnySocket>) -> BoxFuture<()> {
        let ns = self.0.clone();
        let s = Self::typed(s);
        Box::pin(async move {
            if let Some(s) = s {
                ns.connected(s).await;
            }
        })
    }

    fn event(&self, s: &Arc<dyn AnySocket>, ev: Event) -> BoxFuture<()> {
        let ns = self.0.clone();
        let s = Self::typed(s);
        Box::pin(async move {
            if let Some(s) = s {
                ns.event(s, ev).await;
            }
        })
    }

    fn disconnect(&self, s: &Arc<dyn AnySocket>, reason: DisconnectReason) -> BoxFuture<()> {
        let ns = self.0.clone();
        let s = Self::typed(s);
        Box::pin(async move {
            if let Some(s) = s {
                ns.disconnect(s, reason).await;
            }
        })
    }

    fn recovery_state(&self, s: &Arc<dyn AnySocket>) -> Value {
        Self::typed(s).map_or(Value::Null, |s| self.0.recovery_state(&s))
    }
}

pub(crate) fn make_ack_sender(conn: Arc<Conn>, nsp: Arc<str>, id: u64) -> AckSender {
    AckSender { conn, nsp, id }
}
