//! The Engine.IO v4 and Socket.IO v5 wire codec, with no I/O and no async runtime.
//!
//! This crate is the bottom of the Socket.IO stack: it turns frames into packets and back, and nothing
//! else, so it can be property-tested and fuzzed in isolation (see `fuzz/` at the workspace root).
//! The transport (`sio` crate) owns sockets, timers and queues.
//!
//! * [`engine`]: Engine.IO packets (`0`open … `6`noop), WebSocket frames and HTTP long-polling payloads
//!   (`\x1e`-separated, binary as `b` + base64).
//! * [`packet`]: Socket.IO packets (CONNECT … BINARY_ACK) with namespaces, ack ids, binary placeholders
//!   and the reassembly of binary attachments.
//! * [`encode`]: fast encoders for the hot path: one event encoded once, straight from `Serialize`
//!   values, into an Engine.IO message ready to hand to many connections.
//!
//! Decoding is strict where the reference implementation is strict (unknown packet types, invalid
//! JSON, invalid ack ids, payloads of the wrong shape, placeholders that point nowhere are all
//! [`Error`]s), and never panics on any input.

pub mod encode;
pub mod engine;
pub mod packet;

pub use packet::{Packet, PacketKind, PartialBinary};

/// Largest ack id accepted: JavaScript's `Number.MAX_SAFE_INTEGER`, the largest id a stock client
/// can produce or compare exactly.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// Largest number of binary attachments one packet may announce. The reference server has no limit,
/// but every announced attachment is a frame we must buffer before the packet can be dispatched.
pub const MAX_ATTACHMENTS: usize = 256;

/// Why a frame could not be decoded. Every variant means "protocol violation": the transport closes
/// the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid attachment count")]
    InvalidAttachments,
    #[error("invalid ack id")]
    InvalidAckId,
    #[error("invalid namespace")]
    InvalidNamespace,
    #[error("invalid JSON payload: {0}")]
    InvalidJson(String),
    #[error("payload of the wrong shape for this packet type")]
    InvalidPayload,
    #[error("binary placeholder missing, malformed or out of range")]
    InvalidPlaceholder,
    #[error("invalid base64 in a polling payload")]
    InvalidBase64,
    #[error("unexpected binary attachment")]
    UnexpectedBinary,
    #[error("event arguments must serialize to a JSON array")]
    ArgsNotArray,
}
