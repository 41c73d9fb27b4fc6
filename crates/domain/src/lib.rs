//! Domain types of the chat, validated at the edge.
//!
//! Raw input (HTTP bodies, Socket.IO payloads) is parsed into these types once, where it enters the
//! system; everything behind that point can rely on the invariants they carry (`RoomName` is never empty,
//! `MessageContent` is at most 4,000 characters, ...). This crate does no I/O, so it is used by every
//! service and by the stream envelope alike.

mod ids;
mod validation;

pub use ids::{MessageId, RoomId, UserId};
pub use validation::{
    ClientMsgId, Email, FieldErrors, FullName, MessageContent, MessageType, Password,
    RoomDescription, RoomName, RoomRole, Username, MAX_MESSAGE_CHARS,
};
