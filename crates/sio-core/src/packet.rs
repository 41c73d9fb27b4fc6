//! Socket.IO v5 packets.
//!
//! Wire format: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]`, where the namespace
//! is omitted for `/` and the attachment count is present only for BINARY_EVENT and BINARY_ACK. Binary
//! values travel as separate Engine.IO binary messages after the packet; the payload refers to them
//! with placeholders `{"_placeholder":true,"num":<index>}`. This crate keeps the placeholders in the
//! JSON and the attachments beside it ([`PartialBinary`]), so nothing is copied to reassemble.

use bytes::Bytes;
use serde_json::Value;

use crate::{Error, MAX_ACK_ID, MAX_ATTACHMENTS};

/// Socket.IO packet types, with their wire digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit.
    pub fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }

    /// Whether packets of this kind carry binary attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }

    /// Whether packets of this kind may carry an ack id.
    pub fn may_have_id(self) -> bool {
        matches!(
            self,
            Self::Event | Self::Ack | Self::BinaryEvent | Self::BinaryAck
        )
    }
}

/// Names a client may not use for events (they are the client library's own lifecycle events).
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// A Socket.IO packet (binary attachments, if any, travel separately: see [`PartialBinary`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketKind,
    /// The namespace, `/` by default.
    pub nsp: String,
    pub id: Option<u64>,
    /// The number of binary attachments that follow (binary kinds only).
    pub attachments: usize,
    pub data: Option<Value>,
}

impl Packet {
    /// Decodes the text of a Socket.IO packet (the data of an Engine.IO message).
    ///
    /// The payload is checked against the packet type as the reference implementation does: CONNECT
    /// takes an optional object, DISCONNECT nothing, CONNECT_ERROR an object or string, EVENT a
    /// non-empty array starting with a non-reserved event name, ACK an array. In binary packets every
    /// placeholder must be well formed and point at an announced attachment.
    ///
    /// # Errors
    /// Any [`Error`] but the transport-level ones: the caller closes the connection.
    pub fn decode(s: &str) -> Result<Self, Error> {
        let bytes = s.as_bytes();
        let first = *bytes.first().ok_or(Error::Empty)?;
        let kind = PacketKind::from_byte(first)
            .ok_or_else(|| Error::UnknownType(s.chars().next().unwrap_or('\0')))?;
        let mut i = 1;

        let mut attachments = 0usize;
        if kind.is_binary() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start || i - start > 4 || bytes.get(i) != Some(&b'-') {
                return Err(Error::InvalidAttachments);
            }
            attachments = s[start..i].parse().map_err(|_| Error::InvalidAttachments)?;
            if attachments > MAX_ATTACHMENTS {
                return Err(Error::InvalidAttachments);
            }
            i += 1;
        }

        let nsp = if bytes.get(i) == Some(&b'/') {
            let start = i;
            let end = s[i..].find(',').map_or(s.len(), |p| i + p);
            i = if end < s.len() { end + 1 } else { end };
            s[start..end].to_owned()
        } else {
            "/".to_owned()
        };

        let mut id = None;
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i > start {
            if !kind.may_have_id() || i - start > 16 {
                return Err(Error::InvalidAckId);
            }
            let v: u64 = s[start..i].parse().map_err(|_| Error::InvalidAckId)?;
            if v > MAX_ACK_ID {
                return Err(Error::InvalidAckId);
            }
            id = Some(v);
        }

        let rest = &s[i..];
        let data = if rest.is_empty() {
            None
        } else {
            Some(
                serde_json::from_str::<Value>(rest)
                    .map_err(|e| Error::InvalidJson(e.to_string()))?,
            )
        };

        let packet = Packet {
            kind,
            nsp,
            id,
            attachments,
            data,
        };
        packet.validate()?;
        Ok(packet)
    }

    fn validate(&self) -> Result<(), Error> {
        let ok = match (self.kind, &self.data) {
            (PacketKind::Connect, None | Some(Value::Object(_))) => true,
            (PacketKind::Disconnect, None) => true,
            (PacketKind::ConnectError, Some(Value::Object(_) | Value::String(_))) => true,
            (PacketKind::Event | PacketKind::BinaryEvent, Some(Value::Array(a))) => {
                matches!(a.first(), Some(Value::String(name)) if !RESERVED_EVENTS.contains(&name.as_str()))
            }
            (PacketKind::Ack | PacketKind::BinaryAck, Some(Value::Array(_))) => true,
            _ => false,
        };
        if !ok {
            return Err(Error::InvalidPayload);
        }
        if self.kind.is_binary() {
            if let Some(data) = &self.data {
                check_placeholders(data, self.attachments)?;
            }
        }
        Ok(())
    }

    /// Appends the encoded packet to `out` (the attachments, if any, are sent separately).
    pub fn encode_into(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push(self.kind.as_char());
        if self.kind.is_binary() {
            let _ = write!(out, "{}-", self.attachments);
        }
        if self.nsp != "/" {
            out.push_str(&self.nsp);
            out.push(',');
        }
        if let Some(id) = self.id {
            let _ = write!(out, "{id}");
        }
        if let Some(data) = &self.data {
            // Writing a `Value` into a String cannot fail.
            let _ = write!(out, "{data}");
        }
    }

    /// The encoded packet.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        self.encode_into(&mut s);
        s
    }

    /// For an EVENT, its name.
    pub fn event_name(&self) -> Option<&str> {
        match (&self.data, self.kind) {
            (Some(Value::Array(a)), PacketKind::Event | PacketKind::BinaryEvent) => {
                a.first()?.as_str()
            }
            _ => None,
        }
    }
}

/// The placeholder object that stands for attachment `num` in a binary packet's payload.
pub fn placeholder(num: usize) -> Value {
    let mut m = serde_json::Map::with_capacity(2);
    m.insert("_placeholder".to_owned(), Value::Bool(true));
    m.insert("num".to_owned(), Value::from(num));
    Value::Object(m)
}

fn check_placeholders(v: &Value, attachments: usize) -> Result<(), Error> {
    // Iterative walk: payloads nest as deep as serde_json allows (128), a recursion of that depth is
    // fine, but a stack keeps the fuzzer honest.
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a.iter()),
            Value::Object(m) => {
                if let Some(flag) = m.get("_placeholder") {
                    if flag != &Value::Bool(true) {
                        return Err(Error::InvalidPlaceholder);
                    }
                    match m.get("num").and_then(Value::as_u64) {
                        Some(n) if (n as usize) < attachments && n <= MAX_ATTACHMENTS as u64 => {}
                        _ => return Err(Error::InvalidPlaceholder),
                    }
                } else {
                    stack.extend(m.values());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A binary packet waiting for its attachments.
///
/// Feed it the binary messages that follow the packet with [`PartialBinary::push`]; when
/// [`PartialBinary::is_complete`] the packet and its attachments are ready. A text message arriving
/// before that is a protocol error the transport must handle (close).
#[derive(Debug, Clone, PartialEq)]
pub struct PartialBinary {
    pub packet: Packet,
    pub attachments: Vec<Bytes>,
}

impl PartialBinary {
    /// Starts collecting attachments for `packet`.
    pub fn new(packet: Packet) -> Self {
        let n = packet.attachments;
        Self {
            packet,
            attachments: Vec::with_capacity(n),
        }
    }

    /// Adds the next attachment.
    ///
    /// # Errors
    /// [`Error::UnexpectedBinary`] if all announced attachments have already arrived.
    pub fn push(&mut self, data: Bytes) -> Result<(), Error> {
        if self.is_complete() {
            return Err(Error::UnexpectedBinary);
        }
        self.attachments.push(data);
        Ok(())
    }

    /// Whether every announced attachment has arrived.
    pub fn is_complete(&self) -> bool {
        self.attachments.len() >= self.packet.attachments
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Result<Packet, Error> {
        Packet::decode(s)
    }

    #[test]
    fn decodes_the_reference_examples() {
        let p = d("0").unwrap();
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketKind::Connect, "/", None)
        );
        let p = d(r#"0/admin,{"token":"123"}"#).unwrap();
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.data, Some(json!({"token":"123"})));
        let p = d("0/random").unwrap();
        assert_eq!(p.nsp, "/random");
        let p = d(r#"2/admin,12["bar"]"#).unwrap();
        assert_eq!((p.id, p.event_name()), (Some(12), Some("bar")));
        let p = d(r#"51-["baz",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(p.attachments, 1);
        let p = d(r#"61-/admin,13[{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(
            (p.kind, p.id, p.nsp.as_str()),
            (PacketKind::BinaryAck, Some(13), "/admin")
        );
        assert_eq!(d("1/admin,").unwrap().kind, PacketKind::Disconnect);
        assert_eq!(
            d(r#"4{"message":"nope"}"#).unwrap().kind,
            PacketKind::ConnectError
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(d("abc"), Err(Error::UnknownType('a')));
        assert_eq!(d("7"), Err(Error::UnknownType('7')));
        assert_eq!(d(""), Err(Error::Empty));
        assert!(matches!(d("2{}"), Err(Error::InvalidPayload)));
        assert!(matches!(d("2[]"), Err(Error::InvalidPayload)));
        assert!(matches!(d("2[1]"), Err(Error::InvalidPayload)));
        assert!(matches!(
            d(r#"2["disconnect"]"#),
            Err(Error::InvalidPayload)
        ));
        assert!(matches!(d(r#"2abc["x"]"#), Err(Error::InvalidJson(_))));
        assert!(matches!(d("2[\"x\""), Err(Error::InvalidJson(_))));
        assert_eq!(d(r#"29007199254740992["x"]"#), Err(Error::InvalidAckId));
        assert_eq!(
            d(r#"2123456789012345678901["x"]"#),
            Err(Error::InvalidAckId)
        );
        assert!(d(r#"29007199254740991["x"]"#).is_ok());
        assert_eq!(d(r#"5-["x"]"#), Err(Error::InvalidAttachments));
        assert_eq!(d(r#"5x-["x"]"#), Err(Error::InvalidAttachments));
        assert_eq!(d(r#"599999-["x"]"#), Err(Error::InvalidAttachments));
        assert_eq!(
            d(r#"51-["x",{"_placeholder":true,"num":1}]"#),
            Err(Error::InvalidPlaceholder)
        );
        assert_eq!(
            d(r#"51-["x",{"_placeholder":true}]"#),
            Err(Error::InvalidPlaceholder)
        );
        assert_eq!(
            d(r#"51-["x",{"_placeholder":1,"num":0}]"#),
            Err(Error::InvalidPlaceholder)
        );
        assert_eq!(d("1{}"), Err(Error::InvalidPayload));
        assert_eq!(d("0[]"), Err(Error::InvalidPayload));
        assert_eq!(d("012"), Err(Error::InvalidAckId));
    }

    #[test]
    fn collects_attachments() {
        let p =
            d(r#"52-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#).unwrap();
        let mut partial = PartialBinary::new(p);
        assert!(!partial.is_complete());
        partial.push(Bytes::from_static(b"a")).unwrap();
        partial.push(Bytes::from_static(b"b")).unwrap();
        assert!(partial.is_complete());
        assert_eq!(partial.push(Bytes::new()), Err(Error::UnexpectedBinary));
    }

    #[test]
    fn encodes_with_namespace_and_id() {
        let p = Packet {
            kind: PacketKind::BinaryEvent,
            nsp: "/admin".into(),
            id: Some(7),
            attachments: 1,
            data: Some(json!(["x", placeholder(0)])),
        };
        assert_eq!(
            p.encode(),
            r#"51-/admin,7["x",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(Packet::decode(&p.encode()).unwrap(), p);
    }
}
