//! One Engine.IO session: its send queue, its mailbox and its transport state.
//!
//! A `Conn` is shared (behind an `Arc`) by the connection's driver task, the HTTP requests of the
//! polling transport and every socket handle of the application. All its mutable state sits behind
//! one std `Mutex`, never held across an `.await` (so a blocking mutex is the right tool), and two
//! `Notify`s wake the driver and the pending long-polling GET.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{Utf8Bytes, WebSocket};
use bytes::Bytes;
use tokio::sync::Notify;

use crate::frame::{Class, Frame};
use crate::server::Shared;
use crate::sid::Sid;

/// Why a connection (or a socket) ended. Passed to [`crate::Namespace::disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the transport (or sent an Engine.IO close packet).
    TransportClose,
    /// The transport failed (I/O error, write timeout).
    TransportError,
    /// The client did not answer a ping within `pingTimeout`.
    PingTimeout,
    /// The client sent something that is not valid Engine.IO / Socket.IO.
    ParseError,
    /// The client sent a second long-polling GET while one was pending.
    MultiplePollingRequests,
    /// The send queue overflowed with durable frames: the client is too slow.
    QueueOverflow,
    /// No namespace was joined within the connect timeout.
    ConnectTimeout,
    /// The server is shutting down.
    ServerShutdown,
    /// The client left this namespace (DISCONNECT packet).
    ClientNamespaceDisconnect,
    /// The application disconnected this socket.
    ServerNamespaceDisconnect,
}

impl DisconnectReason {
    /// The reason string the reference server uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TransportClose => "transport close",
            Self::TransportError => "transport error",
            Self::PingTimeout => "ping timeout",
            Self::ParseError => "parse error",
            Self::MultiplePollingRequests => "multiple polling requests",
            Self::QueueOverflow => "queue overflow",
            Self::ConnectTimeout => "connect timeout",
            Self::ServerShutdown => "server shutting down",
            Self::ClientNamespaceDisconnect => "client namespace disconnect",
            Self::ServerNamespaceDisconnect => "server namespace disconnect",
        }
    }

    /// Whether a stock client reconnects on its own and may recover its session.
    pub fn is_recoverable(self) -> bool {
        !matches!(
            self,
            Self::ClientNamespaceDisconnect
                | Self::ServerNamespaceDisconnect
                | Self::ConnectTimeout
        )
    }
}

/// Why a send to a socket failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// The connection is closed (or closing).
    #[error("connection closed")]
    Closed,
    /// A volatile frame was dropped because the queue is under pressure.
    #[error("volatile frame dropped: send queue under pressure")]
    Dropped,
    /// A durable frame did not fit: the connection has been closed.
    #[error("send queue overflow: connection closed")]
    Overflow,
    /// The arguments could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(#[from] sio_core::Error),
}

/// One outgoing Engine.IO message.
#[derive(Debug, Clone)]
pub(crate) enum Out {
    /// A text packet (type digit included).
    Text(Utf8Bytes),
    /// A Socket.IO frame, possibly with attachments.
    Frame(Frame),
    /// A raw binary message (the echo server only).
    Binary(Bytes),
}

impl Out {
    pub(crate) fn text(s: impl Into<Utf8Bytes>) -> Self {
        Out::Text(s.into())
    }
}

#[derive(Debug)]
struct Queued {
    out: Out,
    volatile: bool,
}

/// A message from the outside world to the driver task.
pub(crate) enum In {
    /// A text packet that came in a polling POST.
    Text(String),
    /// A binary message that came in a polling POST.
    Binary(Bytes),
    /// The application disconnects one socket.
    DisconnectSocket(Sid),
    /// The server shuts down; `reconnect` says whether clients should come back.
    Shutdown { reconnect: bool },
}

impl In {
    /// The bytes this message holds, as counted against the mailbox's byte limit.
    pub(crate) fn size(&self) -> usize {
        match self {
            In::Text(s) => s.len(),
            In::Binary(b) => b.len(),
            In::DisconnectSocket(_) | In::Shutdown { .. } => 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Polling,
    /// A WebSocket is open for this session but has not sent its probe yet.
    ProbePending,
    /// The probe was answered: pending and new GETs get a noop so the client stops polling.
    Upgrading,
    WebSocket,
}

pub(crate) struct State {
    out: VecDeque<Queued>,
    volatile: usize,
    /// Replayed frames still counted as backlog: the queue may exceed its capacity by this much,
    /// so that a recovering client is not closed by the first broadcast after its replay. Shrinks
    /// by one per message taken from the queue.
    replay_allowance: usize,
    pub(crate) mailbox: VecDeque<In>,
    /// Bytes of the text and binary messages waiting in `mailbox` (polling POSTs).
    pub(crate) mailbox_bytes: usize,
    pub(crate) closed: Option<DisconnectReason>,
    pub(crate) transport: Transport,
    pub(crate) poll_active: bool,
    pub(crate) post_active: bool,
    pub(crate) upgrade: Option<Box<WebSocket>>,
    /// When the unanswered ping expires. Requests check it too, so a session whose client stopped
    /// answering is gone by the deadline even if the driver's timer fires a little late.
    pub(crate) pong_deadline: Option<tokio::time::Instant>,
    /// Closed, but still in the session table until a last GET collects the final packet.
    pub(crate) linger: bool,
}

pub(crate) struct Snapshot {
    pub(crate) mail: bool,
    pub(crate) upgrade: Option<Box<WebSocket>>,
    pub(crate) closed: Option<DisconnectReason>,
    pub(crate) has_out: bool,
}

/// The handshake request, as the connect hook sees it.
///
/// Stored compactly (one allocation holding `name: value` lines and the query) because it lives as
/// long as the connection: a `HeaderMap` would cost several hundred bytes per idle client.
#[derive(Debug, Default)]
pub struct Handshake {
    /// `name:value\n` lines (names lowercase), then the query string after a `\0`.
    raw: Box<str>,
}

impl Handshake {
    pub(crate) fn new<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>, query: &str) -> Self {
        let mut raw = String::new();
        for (name, value) in headers {
            raw.push_str(name);
            raw.push(':');
            raw.push_str(value);
            raw.push('\n');
        }
        raw.push('\0');
        raw.push_str(query);
        Self {
            raw: raw.into_boxed_str(),
        }
    }

    fn split(&self) -> (&str, &str) {
        self.raw.split_once('\0').unwrap_or((&self.raw, ""))
    }

    /// The first value of header `name` (case-insensitive), if it was present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header as `(lowercase name, value)`, in request order. The WebSocket handshake headers
    /// (`sec-websocket-*`, `connection`, `upgrade`) are left out, as are values that are not UTF-8.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.split().0.lines().filter_map(|l| l.split_once(':'))
    }

    /// The raw query string.
    pub fn query(&self) -> &str {
        self.split().1
    }

    /// The first value of query parameter `key`, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<String> {
        self.query().split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How far past `queue_capacity` control packets (acks, connect replies, pings) may take the send
/// queue before the connection is closed as not reading.
pub(crate) const CONTROL_MARGIN: usize = 16;

pub(crate) struct Conn {
    pub(crate) sid: Sid,
    /// When the handshake was answered: the heartbeat schedule starts here.
    pub(crate) created: tokio::time::Instant,
    pub(crate) shared: Arc<Shared>,
    pub(crate) handshake: Handshake,
    state: Mutex<State>,
    pub(crate) wake_driver: Notify,
    pub(crate) wake_poller: Notify,
}

impl Conn {
    pub(crate) fn new(shared: Arc<Shared>, handshake: Handshake, transport: Transport) -> Self {
        Self {
            sid: Sid::random(),
            created: tokio::time::Instant::now(),
            shared,
            handshake,
            state: Mutex::new(State {
                out: VecDeque::new(),
                volatile: 0,
                replay_allowance: 0,
                mailbox: VecDeque::new(),
                mailbox_bytes: 0,
                closed: None,
                transport,
                poll_active: false,
                post_active: false,
                upgrade: None,
                pong_deadline: None,
                linger: false,
            }),
            wake_driver: Notify::new(),
            wake_poller: Notify::new(),
        }
    }

    /// Locks the state. A panic while holding the lock cannot leave it inconsistent in a way that
    /// matters more than losing the connection, so poisoning is ignored.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the driver (which writes to a WebSocket) and, for a polling session, the pending GET.
    fn wake(&self, polling: bool) {
        self.wake_driver.notify_one();
        if polling {
            self.wake_poller.notify_one();
        }
    }

    /// Queues a control packet (handshake, ack, namespace disconnect) from outside the driver.
    ///
    /// # Errors
    /// [`SendError::Closed`], or [`SendError::Overflow`] when the queue is already more than
    /// [`CONTROL_MARGIN`] past its capacity: the client is not reading, and the connection is closed.
    pub(crate) fn push_control(&self, out: Out) -> Result<(), SendError> {
        let polling = self.push_bounded(out)?;
        self.wake(polling);
        Ok(())
    }

    /// Queues a control packet from the driver task itself (ping, connect reply, CONNECT_ERROR):
    /// bounded as [`Conn::push_control`]. The driver flushes at the top of its loop anyway, so
    /// only a pending long-polling GET needs waking.
    pub(crate) fn push_from_driver(&self, out: Out) -> Result<(), SendError> {
        let polling = self.push_bounded(out)?;
        if polling {
            self.wake_poller.notify_one();
        }
        Ok(())
    }

    /// Queues a control packet unless the queue is [`CONTROL_MARGIN`] past its capacity (then the
    /// connection is closed with [`DisconnectReason::QueueOverflow`]). Returns whether the session
    /// is (still) polling.
    fn push_bounded(&self, out: Out) -> Result<bool, SendError> {
        let cap = self.shared.config.queue_capacity.max(1);
        {
            let mut st = self.state();
            if st.closed.is_some() {
                return Err(SendError::Closed);
            }
            if st.out.len()
                < cap
                    .saturating_add(st.replay_allowance)
                    .saturating_add(CONTROL_MARGIN)
            {
                st.out.push_back(Queued {
                    out,
                    volatile: false,
                });
                return Ok(st.transport != Transport::WebSocket);
            }
        }
        tracing::debug!(sid = %self.sid, "send queue overflow with control packets: closing");
        self.close(DisconnectReason::QueueOverflow);
        Err(SendError::Overflow)
    }

    /// Queues the frames replayed to a recovering socket, from the driver. They are not bounded by
    /// the capacity (the connect hook chose them), and they raise it by their number until they
    /// have been sent, so the broadcasts that follow them are not refused for their sake.
    pub(crate) fn push_replay(&self, frames: Vec<Frame>) {
        if frames.is_empty() {
            return;
        }
        let polling = {
            let mut st = self.state();
            if st.closed.is_some() {
                return;
            }
            st.replay_allowance = st.replay_allowance.saturating_add(frames.len());
            for f in frames {
                st.out.push_back(Queued {
                    out: Out::Frame(f),
                    volatile: false,
                });
            }
            st.transport != Transport::WebSocket
        };
        if polling {
            self.wake_poller.notify_one();
        }
    }

    /// Queues an application frame under the overflow policy of its class.
    pub(crate) fn push(&self, out: Out, class: Class) -> Result<(), SendError> {
        let (overflow, polling) = {
            let mut st = self.state();
            if st.closed.is_some() {
                return Err(SendError::Closed);
            }
            let base = self.shared.config.queue_capacity.max(1);
            let cap = base.saturating_add(st.replay_allowance);
            let polling = st.transport != Transport::WebSocket;
            let overflow = match class {
                Class::Volatile => {
                    if st.out.len() >= cap - base / 4 {
                        return Err(SendError::Dropped);
                    }
                    st.volatile += 1;
                    st.out.push_back(Queued {
                        out,
                        volatile: true,
                    });
                    false
                }
                Class::Durable => {
                    if st.out.len() >= cap {
                        if let Some(pos) = st.out.iter().position(|q| q.volatile) {
                            st.out.remove(pos);
                            st.volatile -= 1;
                        }
                    }
                    if st.out.len() >= cap {
                        true
                    } else {
                        st.out.push_back(Queued {
                            out,
                            volatile: false,
                        });
                        false
                    }
                }
            };
            (overflow, polling)
        };
        if overflow {
            tracing::debug!(sid = %self.sid, "send queue overflow: closing");
            self.close(DisconnectReason::QueueOverflow);
            return Err(SendError::Overflow);
        }
        self.wake(polling);
        Ok(())
    }

    /// Whether anything waits to be sent.
    pub(crate) fn has_out(&self) -> bool {
        !self.state().out.is_empty()
    }

    /// What the driver needs to know at the top of its loop, in one lock: whether mail waits, an
    /// upgraded WebSocket to take over, whether the session is closed, whether output waits.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut st = self.state();
        Snapshot {
            mail: !st.mailbox.is_empty(),
            upgrade: st.upgrade.take(),
            closed: st.closed,
            has_out: !st.out.is_empty(),
        }
    }

    /// Takes the next outgoing message.
    pub(crate) fn pop_out(&self) -> Option<Out> {
        let mut st = self.state();
        let q = st.out.pop_front();
        if let Some(q) = &q {
            if q.volatile {
                st.volatile -= 1;
            }
            st.replay_allowance = st.replay_allowance.saturating_sub(1);
        }
        if st.out.is_empty() {
            st.replay_allowance = 0;
            // Idle connections are the common case: give the buffer back.
            st.out.shrink_to_fit();
        }
        q.map(|q| q.out)
    }

    /// Takes queued messages for one long-polling response: at least one if any, and no more than
    /// `max` bytes of text after that.
    pub(crate) fn drain_for_poll(&self, st: &mut State, max: usize) -> Vec<Out> {
        let mut taken = Vec::new();
        let mut size = 0usize;
        while let Some(q) = st.out.front() {
            let len = match &q.out {
                Out::Text(t) => t.len(),
                Out::Frame(f) => {
                    f.text.len()
                        + f.attachments()
                            .iter()
                            .map(|a| a.len() * 4 / 3 + 4)
                            .sum::<usize>()
                }
                Out::Binary(b) => b.len() * 4 / 3 + 4,
            };
            if !taken.is_empty() && size + len > max {
                break;
            }
            size += len + 1;
            if let Some(q) = st.out.pop_front() {
                if q.volatile {
                    st.volatile -= 1;
                }
                st.replay_allowance = st.replay_allowance.saturating_sub(1);
                taken.push(q.out);
            }
        }
        if st.out.is_empty() {
            st.replay_allowance = 0;
        }
        taken
    }

    /// Hands a message to the driver.
    pub(crate) fn send_mailbox(&self, msg: In) -> bool {
        {
            let mut st = self.state();
            if st.closed.is_some() {
                return false;
            }
            st.mailbox.push_back(msg);
        }
        self.wake_driver.notify_one();
        true
    }

    /// Closes the session: it leaves the session table at once (later requests with its sid get
    /// "Session ID unknown"), and the driver winds it down.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        let linger = {
            let mut st = self.state();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
            // A polling client that sent a close packet while no GET was pending may have one in
            // flight: keep the session long enough to answer it with a noop.
            st.linger = reason == DisconnectReason::TransportClose
                && matches!(st.transport, Transport::Polling | Transport::ProbePending)
                && !st.poll_active;
            st.linger
        };
        if !linger {
            self.shared.remove_session(self.sid);
        }
        self.wake(true);
        // A second waker for a GET that registered after the notify_one above was consumed.
        self.wake_poller.notify_waiters();
    }

    pub(crate) fn closed(&self) -> Option<DisconnectReason> {
        self.state().closed
    }

    /// Ends a lingering close: the session leaves the table.
    pub(crate) fn end_linger(&self) {
        let was = std::mem::take(&mut self.state().linger);
        if was {
            self.shared.remove_session(self.sid);
        }
    }

    /// Closes the session if its client has missed the pong deadline; returns whether it is closed.
    pub(crate) fn check_expired(&self) -> bool {
        let expired = {
            let st = self.state();
            if st.closed.is_some() {
                return true;
            }
            st.pong_deadline
                .is_some_and(|d| d <= tokio::time::Instant::now())
        };
        if expired {
            tracing::debug!(sid = %self.sid, "ping timeout");
            self.close(DisconnectReason::PingTimeout);
        }
        expired
    }
}
