//! Pre-encoded frames for fan-out.
//!
//! A [`Frame`] is a complete Engine.IO message (`4` + Socket.IO packet) in a reference-counted buffer,
//! plus its binary attachments if any. Encode it once, then [`crate::Socket::send`] the same frame to
//! every recipient: each send clones two pointers, never the bytes.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use serde::Serialize;
use sio_core::encode::{self, EventOpts};

/// How a frame may be treated when a connection's send queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Must not be lost silently (messages, edits, receipts). When the queue is full, a queued
    /// volatile frame is evicted to make room; if there is none, the connection is closed (the client
    /// reconnects and recovers what it missed).
    Durable,
    /// May be dropped under pressure (typing, presence). Refused once the queue is three-quarters
    /// full, so durable frames always find room first.
    Volatile,
}

/// A pre-encoded Socket.IO event (or any Engine.IO message), cheap to clone and share.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub(crate) text: Utf8Bytes,
    pub(crate) attachments: Option<Arc<[Bytes]>>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("text", &self.text.as_str())
            .field(
                "attachments",
                &self.attachments.as_ref().map_or(0, |a| a.len()),
            )
            .finish()
    }
}

impl Frame {
    /// Encodes an event for namespace `nsp`. `args` must serialize to a JSON array: `&(a,)`,
    /// `&(a, b)`, a slice or a `Vec`; `&()` for no arguments.
    ///
    /// # Errors
    /// [`sio_core::Error::ArgsNotArray`] or a serialization error.
    pub fn event<A: Serialize + ?Sized>(
        nsp: &str,
        event: &str,
        args: &A,
    ) -> Result<Self, sio_core::Error> {
        Self::build(nsp, event, args, EventOpts::default(), None)
    }

    /// Like [`Frame::event`], with a connection-state-recovery offset appended as the last argument.
    /// Stock clients remember the offset of the last event they received and present it when they
    /// reconnect (see [`crate::Recovery`]).
    ///
    /// # Errors
    /// As for [`Frame::event`].
    pub fn event_with_offset<A: Serialize + ?Sized>(
        nsp: &str,
        event: &str,
        args: &A,
        offset: &str,
    ) -> Result<Self, sio_core::Error> {
        Self::build(
            nsp,
            event,
            args,
            EventOpts {
                offset: Some(offset),
                ..Default::default()
            },
            None,
        )
    }

    /// An event with binary attachments: `args` refers to attachment `i` with
    /// [`sio_core::packet::placeholder`]`(i)`.
    ///
    /// # Errors
    /// As for [`Frame::event`].
    pub fn binary_event<A: Serialize + ?Sized>(
        nsp: &str,
        event: &str,
        args: &A,
        attachments: Vec<Bytes>,
    ) -> Result<Self, sio_core::Error> {
        let opts = EventOpts {
            attachments: attachments.len(),
            ..Default::default()
        };
        Self::build(nsp, event, args, opts, Some(attachments))
    }

    pub(crate) fn build<A: Serialize + ?Sized>(
        nsp: &str,
        event: &str,
        args: &A,
        opts: EventOpts<'_>,
        attachments: Option<Vec<Bytes>>,
    ) -> Result<Self, sio_core::Error> {
        let text = encode::event(nsp, event, args, opts)?;
        Ok(Self::from_parts(text, attachments))
    }

    pub(crate) fn from_parts(text: String, attachments: Option<Vec<Bytes>>) -> Self {
        Self {
            text: Utf8Bytes::from(text),
            attachments: attachments.filter(|a| !a.is_empty()).map(Arc::from),
        }
    }

    /// The encoded Engine.IO message (`4` + Socket.IO packet).
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The binary attachments, if any.
    pub fn attachments(&self) -> &[Bytes] {
        self.attachments.as_deref().unwrap_or(&[])
    }

    /// Queues this frame on every socket of `sockets` (see [`crate::Socket::send`]) and counts the
    /// outcomes, for the caller's metrics.
    pub fn send_to<'a, D: Send + Sync + 'static>(
        &self,
        sockets: impl IntoIterator<Item = &'a crate::Socket<D>>,
        class: Class,
    ) -> Fanout {
        let mut out = Fanout::default();
        for s in sockets {
            match s.send(self, class) {
                Ok(()) => out.queued += 1,
                Err(crate::SendError::Dropped) => out.dropped += 1,
                Err(crate::SendError::Overflow) => out.overflowed += 1,
                Err(_) => out.closed += 1,
            }
        }
        out
    }
}

/// What [`Frame::send_to`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Sockets the frame was queued on.
    pub queued: usize,
    /// Volatile frames shed because the socket's queue was under pressure.
    pub dropped: usize,
    /// Sockets disconnected because a durable frame did not fit.
    pub overflowed: usize,
    /// Sockets already closed.
    pub closed: usize,
}
