//! The Engine.IO/Socket.IO frames the tool writes and reads, on `sio-core`.
//!
//! A delivery (`receive_message`) is by far the most frequent frame, so it is recognised by its
//! prefix and only the content's time stamp is read from it, without decoding the JSON; every other
//! frame goes through the codec.

use serde_json::{json, Value};
use sio_core::engine::TextPacket;
use sio_core::{encode, Packet, PacketKind};

/// The prefix of a `receive_message` event frame in the default namespace.
const DELIVERY_PREFIX: &str = "42[\"receive_message\"";
/// Message contents written by the tool start with this, then the send time in ns.
const STAMP: &str = "bench:";

/// What a frame from the server means to a bench client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Engine.IO OPEN (the handshake).
    Open,
    /// Engine.IO PING: answer with [`PONG`].
    Ping,
    /// Engine.IO CLOSE.
    Close,
    /// Socket.IO CONNECT accepted.
    Connected,
    /// Socket.IO CONNECT_ERROR, with its `data.code` (or message).
    ConnectError(String),
    /// An ACK: ok, or refused with the error's code.
    Ack { id: u64, result: Result<(), String> },
    /// A `receive_message`; the send time (ns) when the content carries the tool's stamp.
    Delivery { sent_ns: Option<u64> },
    /// An `error` event, with its code.
    ErrorEvent(String),
    /// Any other event, or a frame of no interest.
    Other,
}

pub const PONG: &str = "3";

/// Engine.IO MESSAGE text of a Socket.IO CONNECT with `{token}` as auth.
pub fn connect(token: &str) -> String {
    let p = Packet {
        kind: PacketKind::Connect,
        nsp: "/".into(),
        id: None,
        attachments: 0,
        data: Some(json!({ "token": token })),
    };
    TextPacket::Message(&p.encode()).encode()
}

/// Engine.IO MESSAGE text of the event `name` with one argument and an ack id.
///
/// # Errors
/// Only if `arg` cannot be serialised, which a `Value` always can.
pub fn event(name: &str, arg: &Value, ack_id: u64) -> Result<String, sio_core::Error> {
    encode::event(
        "/",
        name,
        &(arg,),
        encode::EventOpts {
            ack_id: Some(ack_id),
            ..Default::default()
        },
    )
}

/// `join_room {roomId}` with an ack.
///
/// # Errors
/// As [`event`].
pub fn join_room(room: &str, ack_id: u64) -> Result<String, sio_core::Error> {
    event("join_room", &json!({ "roomId": room }), ack_id)
}

/// `send_message {roomId, content}` with an ack; the content carries the send time `sent_ns` and
/// `padding` bytes of filler.
///
/// # Errors
/// As [`event`].
pub fn send_message(
    room: &str,
    sent_ns: u64,
    padding: usize,
    ack_id: u64,
) -> Result<String, sio_core::Error> {
    let mut content = format!("{STAMP}{sent_ns}");
    if padding > 0 {
        content.push(' ');
        content.extend(std::iter::repeat_n('x', padding));
    }
    event(
        "send_message",
        &json!({ "roomId": room, "content": content }),
        ack_id,
    )
}

/// The send time stamped into a delivery's content by [`send_message`], read without parsing the JSON.
pub fn delivery_stamp(frame: &str) -> Option<u64> {
    let at = frame.find("\"content\":\"")? + "\"content\":\"".len();
    let rest = frame[at..].strip_prefix(STAMP)?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Classifies one WebSocket text frame.
pub fn classify(frame: &str) -> Incoming {
    if frame.starts_with(DELIVERY_PREFIX) {
        return Incoming::Delivery {
            sent_ns: delivery_stamp(frame),
        };
    }
    let Ok(tp) = TextPacket::decode(frame) else {
        return Incoming::Other;
    };
    let data = match tp {
        TextPacket::Open(_) => return Incoming::Open,
        TextPacket::Ping(_) => return Incoming::Ping,
        TextPacket::Close => return Incoming::Close,
        TextPacket::Message(d) => d,
        _ => return Incoming::Other,
    };
    let Ok(p) = Packet::decode(data) else {
        return Incoming::Other;
    };
    match p.kind {
        PacketKind::Connect => Incoming::Connected,
        PacketKind::ConnectError => Incoming::ConnectError(error_code(p.data.as_ref())),
        PacketKind::Ack | PacketKind::BinaryAck => {
            let Some(id) = p.id else {
                return Incoming::Other;
            };
            let first = p.data.as_ref().and_then(|d| d.get(0));
            let ok = first
                .and_then(|v| v.get("ok"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Incoming::Ack {
                id,
                result: if ok { Ok(()) } else { Err(error_code(first)) },
            }
        }
        PacketKind::Event | PacketKind::BinaryEvent => match p.event_name() {
            Some("error") => {
                Incoming::ErrorEvent(error_code(p.data.as_ref().and_then(|d| d.get(1))))
            }
            Some("receive_message") => Incoming::Delivery {
                sent_ns: delivery_stamp(data),
            },
            _ => Incoming::Other,
        },
        PacketKind::Disconnect => Incoming::Close,
    }
}

/// The code of an error payload: `{error: {code}}`, `{data: {code}}`, `{code}`, else its message.
fn error_code(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "UNKNOWN".into();
    };
    for path in [&["error", "code"][..], &["data", "code"], &["code"]] {
        let mut cur = Some(v);
        for k in path {
            cur = cur.and_then(|c| c.get(k));
        }
        if let Some(s) = cur.and_then(Value::as_str) {
            return s.to_owned();
        }
    }
    v.get("message")
        .and_then(Value::as_str)
        .or_else(|| v.as_str())
        .map_or_else(|| "UNKNOWN".into(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_the_gateway_reads() {
        assert_eq!(connect("abc"), r#"40{"token":"abc"}"#);
        assert_eq!(
            join_room("r1", 7).expect("encodes"),
            r#"427["join_room",{"roomId":"r1"}]"#
        );
        let s = send_message("r1", 123, 3, 8).expect("encodes");
        assert_eq!(
            s,
            r#"428["send_message",{"content":"bench:123 xxx","roomId":"r1"}]"#
        );
        // The codec reads back what it wrote.
        let p = Packet::decode(&s[1..]).expect("decodes");
        assert_eq!(
            (p.kind, p.id, p.event_name()),
            (PacketKind::Event, Some(8), Some("send_message"))
        );
    }

    #[test]
    fn classifies_engine_frames() {
        assert_eq!(
            classify(r#"0{"sid":"x","pingInterval":25000}"#),
            Incoming::Open
        );
        assert_eq!(classify("2"), Incoming::Ping);
        assert_eq!(classify("1"), Incoming::Close);
        assert_eq!(classify("6"), Incoming::Other);
        assert_eq!(classify(""), Incoming::Other);
        assert_eq!(classify("x"), Incoming::Other);
        assert_eq!(classify("4not json"), Incoming::Other);
    }

    #[test]
    fn classifies_socketio_packets() {
        assert_eq!(classify(r#"40{"sid":"abc"}"#), Incoming::Connected);
        assert_eq!(
            classify(r#"44{"message":"bad token","data":{"code":"UNAUTHORIZED"}}"#),
            Incoming::ConnectError("UNAUTHORIZED".into())
        );
        assert_eq!(
            classify(r#"437[{"ok":true,"roomId":"r"}]"#),
            Incoming::Ack {
                id: 7,
                result: Ok(())
            }
        );
        assert_eq!(
            classify(r#"4312[{"ok":false,"error":{"code":"RATE_LIMITED","message":"slow down"}}]"#),
            Incoming::Ack {
                id: 12,
                result: Err("RATE_LIMITED".into())
            }
        );
        assert_eq!(
            classify(r#"433[{"ok":false}]"#),
            Incoming::Ack {
                id: 3,
                result: Err("UNKNOWN".into())
            }
        );
        assert_eq!(
            classify(r#"42["error",{"code":"FORBIDDEN","message":"no","event":"send_message"}]"#),
            Incoming::ErrorEvent("FORBIDDEN".into())
        );
        assert_eq!(classify(r#"42["welcome",{"userId":"u"}]"#), Incoming::Other);
        assert_eq!(classify("41"), Incoming::Close);
    }

    #[test]
    fn deliveries_and_their_stamps() {
        let frame = r#"42["receive_message",{"id":"m","roomId":"r","seq":4,"senderId":"u","content":"bench:987654321 xx","type":"text"}]"#;
        assert_eq!(
            classify(frame),
            Incoming::Delivery {
                sent_ns: Some(987_654_321)
            }
        );
        let other = r#"42["receive_message",{"id":"m","content":"hello","seq":1}]"#;
        assert_eq!(classify(other), Incoming::Delivery { sent_ns: None });
        // Not on the fast path (spacing, a namespace): the codec still finds it.
        let spaced = r#"42 ["receive_message",{"content":"bench:5"}]"#;
        assert_eq!(classify(spaced), Incoming::Delivery { sent_ns: Some(5) });
        let ns = r#"42/chat,["receive_message",{"content":"bench:6"}]"#;
        assert_eq!(classify(ns), Incoming::Delivery { sent_ns: Some(6) });
        assert_eq!(delivery_stamp(r#"{"content":"bench:42"}"#), Some(42));
        assert_eq!(delivery_stamp(r#"{"content":"bench:"}"#), None);
        assert_eq!(delivery_stamp(r#"{"content":"other"}"#), None);
    }
}
