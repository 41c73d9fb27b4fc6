//! Domain types of the chat, validated at the edge.
//!
//! Raw input (HTTP bodies, Socket.IO payloads) is parsed into these types once, where it enters the
//! system; everything behind that point can rely on the invariants they carry (`RoomName` is never empty,
//! `MessageContent` is at most 4,000 characters, ...). This crate does no I/O and depends on nothing but
//! serde (and utoipa, so the API can document the enumerations); services use it at their edges.

mod validation;

pub use validation::{
    ClientMsgId, Email, FieldErrors, FullName, MessageContent, MessageType, Password,
    RoomDescription, RoomName, RoomRole, Username, MAX_MESSAGE_CHARS,
};
