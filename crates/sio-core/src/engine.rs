//! Engine.IO v4 packets.
//!
//! On a WebSocket, each text frame is one packet (`<type digit><data>`) and each binary frame is one
//! binary message (no type prefix). On HTTP long-polling, a payload is packets joined by the record
//! separator `\x1e`, where a binary message is written `b<base64>`.

use base64::Engine as _;

use crate::Error;

/// The record separator between packets of a long-polling payload.
pub const SEPARATOR: char = '\x1e';

/// Engine.IO packet types, with their wire digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Open = 0,
    Close = 1,
    Ping = 2,
    Pong = 3,
    Message = 4,
    Upgrade = 5,
    Noop = 6,
}

impl PacketType {
    /// The type for a wire digit, if it is one.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Open,
            b'1' => Self::Close,
            b'2' => Self::Ping,
            b'3' => Self::Pong,
            b'4' => Self::Message,
            b'5' => Self::Upgrade,
            b'6' => Self::Noop,
            _ => return None,
        })
    }

    /// The wire digit.
    pub fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }
}

/// A decoded text packet, borrowing its data from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextPacket<'a> {
    Open(&'a str),
    Close,
    /// A ping, with its optional data (`probe` during an upgrade).
    Ping(&'a str),
    Pong(&'a str),
    Message(&'a str),
    Upgrade,
    Noop,
}

impl<'a> TextPacket<'a> {
    /// Decodes one text packet (a WebSocket text frame, or one record of a polling payload).
    ///
    /// # Errors
    /// [`Error::Empty`] or [`Error::UnknownType`].
    pub fn decode(s: &'a str) -> Result<Self, Error> {
        let first = *s.as_bytes().first().ok_or(Error::Empty)?;
        let ty = PacketType::from_byte(first)
            .ok_or_else(|| Error::UnknownType(s.chars().next().unwrap_or('\0')))?;
        // The first byte is an ASCII digit, so index 1 is a char boundary.
        let data = &s[1..];
        Ok(match ty {
            PacketType::Open => Self::Open(data),
            PacketType::Close => Self::Close,
            PacketType::Ping => Self::Ping(data),
            PacketType::Pong => Self::Pong(data),
            PacketType::Message => Self::Message(data),
            PacketType::Upgrade => Self::Upgrade,
            PacketType::Noop => Self::Noop,
        })
    }

    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Open(_) => PacketType::Open,
            Self::Close => PacketType::Close,
            Self::Ping(_) => PacketType::Ping,
            Self::Pong(_) => PacketType::Pong,
            Self::Message(_) => PacketType::Message,
            Self::Upgrade => PacketType::Upgrade,
            Self::Noop => PacketType::Noop,
        }
    }

    /// Appends the encoded packet to `out`.
    pub fn encode_into(&self, out: &mut String) {
        out.push(self.packet_type().as_char());
        match self {
            Self::Open(d) | Self::Ping(d) | Self::Pong(d) | Self::Message(d) => out.push_str(d),
            Self::Close | Self::Upgrade | Self::Noop => {}
        }
    }

    /// The encoded packet.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        self.encode_into(&mut s);
        s
    }
}

/// One record of a long-polling payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadItem<'a> {
    Text(TextPacket<'a>),
    /// A binary message, decoded from base64.
    Binary(Vec<u8>),
}

/// Decodes a long-polling payload into its records, in order.
///
/// Decoding is lazy: each record is decoded when the iterator reaches it, so the caller can stop at
/// the first error.
pub fn decode_payload(body: &str) -> impl Iterator<Item = Result<PayloadItem<'_>, Error>> {
    body.split(SEPARATOR).map(|record| {
        if let Some(b64) = record.strip_prefix('b') {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(PayloadItem::Binary)
                .map_err(|_| Error::InvalidBase64)
        } else {
            TextPacket::decode(record).map(PayloadItem::Text)
        }
    })
}

/// Appends a binary message to a long-polling payload under construction, as `b<base64>`.
/// The caller writes the separator between records.
pub fn encode_binary_record(out: &mut String, data: &[u8]) {
    out.push('b');
    base64::engine::general_purpose::STANDARD.encode_string(data, out);
}

/// The JSON body of the Engine.IO OPEN packet.
pub fn open_json(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
) -> String {
    let upgrades = serde_json::to_string(upgrades).unwrap_or_else(|_| "[]".to_owned());
    let sid = serde_json::to_string(sid).unwrap_or_else(|_| "\"\"".to_owned());
    format!(
        r#"{{"sid":{sid},"upgrades":{upgrades},"pingInterval":{ping_interval_ms},"pingTimeout":{ping_timeout_ms},"maxPayload":{max_payload}}}"#
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn decodes_every_text_type() {
        assert_eq!(
            TextPacket::decode("2probe").unwrap(),
            TextPacket::Ping("probe")
        );
        assert_eq!(TextPacket::decode("3").unwrap(), TextPacket::Pong(""));
        assert_eq!(
            TextPacket::decode("4hello").unwrap(),
            TextPacket::Message("hello")
        );
        assert_eq!(TextPacket::decode("5").unwrap(), TextPacket::Upgrade);
        assert_eq!(TextPacket::decode("6").unwrap(), TextPacket::Noop);
        assert_eq!(TextPacket::decode("1").unwrap(), TextPacket::Close);
        assert_eq!(TextPacket::decode("abc"), Err(Error::UnknownType('a')));
        assert_eq!(TextPacket::decode("7"), Err(Error::UnknownType('7')));
        assert_eq!(TextPacket::decode("é"), Err(Error::UnknownType('é')));
        assert_eq!(TextPacket::decode(""), Err(Error::Empty));
    }

    #[test]
    fn decodes_a_mixed_payload() {
        let items: Vec<_> = decode_payload("4hello\x1ebAQIDBA==\x1e2").collect();
        assert_eq!(
            items,
            vec![
                Ok(PayloadItem::Text(TextPacket::Message("hello"))),
                Ok(PayloadItem::Binary(vec![1, 2, 3, 4])),
                Ok(PayloadItem::Text(TextPacket::Ping(""))),
            ]
        );
        let mut out = String::new();
        encode_binary_record(&mut out, &[1, 2, 3, 4]);
        assert_eq!(out, "bAQIDBA==");
        assert!(decode_payload("b!!").next().unwrap().is_err());
    }
}
