//! The JSON that travels on room channels and sits in the room logs.
//!
//! Durable events: `{"e":<event>,"pos":<µs>,"prev":<µs>,"d":<payload>,"tp":<traceparent>?}` (built by
//! the scripts; `tp` only when the sender's request was traced).
//! Volatile events (typing, presence, joins and leaves): `{"e":<event>,"d":<payload>,"x":<user>?}`,
//! where `x` is a user whose sockets must not get it (typing is never echoed to the typist).
//! Payloads are exactly what clients receive as the event's argument.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// A room event as read from a channel or a log, payload left unparsed (gateways forward it as is).
#[derive(Debug, Deserialize)]
pub struct RoomEvent<'a> {
    /// The Socket.IO event name.
    #[serde(borrow)]
    pub e: &'a str,
    /// The event's position in the room (durable events only).
    #[serde(default)]
    pub pos: Option<u64>,
    /// The position of the room's previous durable event (0 for the first).
    #[serde(default)]
    pub prev: Option<u64>,
    #[serde(borrow)]
    pub d: &'a RawValue,
    /// A user whose sockets must not receive the event.
    #[serde(default)]
    pub x: Option<Uuid>,
    /// The W3C `traceparent` of the request that produced the event (durable events, tracing on).
    #[serde(default, borrow)]
    pub tp: Option<&'a str>,
}

impl<'a> RoomEvent<'a> {
    /// Parses a channel message or log entry.
    ///
    /// # Errors
    /// Text that is not a room event.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// An owned durable event from a room log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    pub room: Uuid,
    pub pos: u64,
    /// The whole JSON text (parse it with [`RoomEvent::parse`]).
    pub text: String,
}

#[derive(Serialize)]
struct VolatileOut<'a, T: Serialize> {
    e: &'a str,
    d: &'a T,
    #[serde(skip_serializing_if = "Option::is_none")]
    x: Option<Uuid>,
}

/// Renders a volatile event.
pub(crate) fn volatile<T: Serialize>(event: &str, data: &T, exclude: Option<Uuid>) -> String {
    serde_json::to_string(&VolatileOut {
        e: event,
        d: data,
        x: exclude,
    })
    .unwrap_or_default()
}

/// Times on the wire: RFC 3339, UTC, milliseconds, `Z` — the same text serde gives the API's
/// `DateTime<Utc>` fields for millisecond-precision values.
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MessageTail<'a> {
    sender_id: Uuid,
    #[serde(rename = "type")]
    kind: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_msg_id: Option<&'a str>,
    created_at: &'a str,
}

/// The message JSON around its `seq`, which only the send script knows: `head + seq + tail` is the
/// `receive_message` payload (and deserializes as a `chat_store::Message`).
pub(crate) fn message_parts(
    id: Uuid,
    room: Uuid,
    sender: Uuid,
    kind: &str,
    content: &str,
    client_msg_id: Option<&str>,
    created_at: &str,
) -> (String, String) {
    let head = format!(r#"{{"id":"{id}","roomId":"{room}","seq":"#);
    let tail = serde_json::to_string(&MessageTail {
        sender_id: sender,
        kind,
        content,
        client_msg_id,
        created_at,
    })
    .unwrap_or_default();
    // `{"senderId":…}` → `,"senderId":…}`
    let tail = format!(",{}", &tail[1..]);
    (head, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_parts_around_a_seq_make_a_message() {
        let (id, room, sender) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (h, t) = message_parts(
            id,
            room,
            sender,
            "text",
            "hi \"there\" <b>",
            Some("c-1"),
            "2026-11-21T10:00:00.123Z",
        );
        let json = format!("{h}42{t}");
        let m: chat_store::Message = serde_json::from_str(&json).expect("a message");
        assert_eq!(
            (m.id, m.room_id, m.seq, m.sender_id),
            (id, room, 42, sender)
        );
        assert_eq!(m.content.as_deref(), Some("hi \"there\" <b>"));
        assert_eq!(m.client_msg_id.as_deref(), Some("c-1"));
        assert_eq!(iso(&m.created_at), "2026-11-21T10:00:00.123Z");
        // And it serializes back to the same text, so REST and Socket.IO clients see one shape.
        assert_eq!(serde_json::to_string(&m).expect("json"), json);
    }

    #[test]
    fn room_events_parse_with_and_without_positions() {
        let e = RoomEvent::parse(r#"{"e":"receive_message","pos":12,"prev":3,"d":{"a":1}}"#)
            .expect("durable");
        assert_eq!(
            (e.e, e.pos, e.prev, e.d.get()),
            ("receive_message", Some(12), Some(3), r#"{"a":1}"#)
        );
        let u = Uuid::now_v7();
        let v = volatile("typing", &serde_json::json!({"isTyping": true}), Some(u));
        let e = RoomEvent::parse(&v).expect("volatile");
        assert_eq!((e.e, e.pos, e.x), ("typing", None, Some(u)));
        assert_eq!(e.tp, None);
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let text =
            format!(r#"{{"e":"receive_message","pos":12,"prev":3,"d":{{"a":1}},"tp":"{tp}"}}"#);
        let e = RoomEvent::parse(&text).expect("traced");
        assert_eq!((e.pos, e.d.get(), e.tp), (Some(12), r#"{"a":1}"#, Some(tp)));
        assert!(RoomEvent::parse("{}").is_err());
        assert!(RoomEvent::parse("not json").is_err());
    }
}
