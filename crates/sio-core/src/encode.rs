//! Hot-path encoders: an event straight from `Serialize` values into the text of an Engine.IO message
//! (`4` + Socket.IO packet), with one allocation and no intermediate `serde_json::Value`.
//!
//! The result is meant to be encoded once and shared (as `Bytes`) by every connection it goes to.

use serde::Serialize;

use crate::{Error, PacketKind};

/// Options of an encoded event.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventOpts<'a> {
    /// An ack id the receiver must answer.
    pub ack_id: Option<u64>,
    /// The number of binary attachments the arguments refer to with placeholders.
    pub attachments: usize,
    /// A connection-state-recovery offset, appended as the last argument.
    pub offset: Option<&'a str>,
}

/// Encodes an EVENT (or BINARY_EVENT when `opts.attachments > 0`) as the text of an Engine.IO message:
/// `4` `2` `[nsp,]` `[id]` `["event", ...args(, "offset")]`.
///
/// `args` must serialize to a JSON array: a tuple (`(a,)`, `(a, b)`), a slice or a `Vec`. Each element
/// becomes one argument of the client's handler; `&()` means no arguments.
///
/// # Errors
/// [`Error::ArgsNotArray`] if `args` does not serialize to an array, [`Error::InvalidJson`] if it does
/// not serialize at all.
pub fn event<A: Serialize + ?Sized>(
    nsp: &str,
    event: &str,
    args: &A,
    opts: EventOpts<'_>,
) -> Result<String, Error> {
    let kind = if opts.attachments > 0 {
        PacketKind::BinaryEvent
    } else {
        PacketKind::Event
    };
    let mut buf = header(kind, nsp, opts.ack_id, opts.attachments, 48 + event.len());
    buf.push(b'[');
    serde_json::to_writer(&mut buf, event).map_err(|e| Error::InvalidJson(e.to_string()))?;
    let args_at = buf.len();
    serde_json::to_writer(&mut buf, args).map_err(|e| Error::InvalidJson(e.to_string()))?;
    splice_array(&mut buf, args_at, opts.offset)?;
    String::from_utf8(buf).map_err(|e| Error::InvalidJson(e.to_string()))
}

/// Encodes an ACK (or BINARY_ACK) answering `ack_id` as the text of an Engine.IO message. `args` must
/// serialize to a JSON array, as for [`event`]; `&()` means no arguments (`[]`).
///
/// # Errors
/// As for [`event`].
pub fn ack<A: Serialize + ?Sized>(
    nsp: &str,
    ack_id: u64,
    args: &A,
    attachments: usize,
) -> Result<String, Error> {
    let kind = if attachments > 0 {
        PacketKind::BinaryAck
    } else {
        PacketKind::Ack
    };
    let mut buf = header(kind, nsp, Some(ack_id), attachments, 48);
    let args_at = buf.len();
    serde_json::to_writer(&mut buf, args).map_err(|e| Error::InvalidJson(e.to_string()))?;
    if &buf[args_at..] == b"null" {
        // `()`: no arguments
        buf.truncate(args_at);
        buf.extend_from_slice(b"[]");
    }
    if buf.get(args_at) != Some(&b'[') || buf.last() != Some(&b']') {
        return Err(Error::ArgsNotArray);
    }
    String::from_utf8(buf).map_err(|e| Error::InvalidJson(e.to_string()))
}

fn header(
    kind: PacketKind,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
    extra: usize,
) -> Vec<u8> {
    use std::io::Write as _;
    let mut buf = Vec::with_capacity(8 + nsp.len() + extra);
    buf.push(b'4');
    buf.push(kind.as_char() as u8);
    if kind.is_binary() {
        let _ = write!(buf, "{attachments}-");
    }
    if nsp != "/" {
        buf.extend_from_slice(nsp.as_bytes());
        buf.push(b',');
    }
    if let Some(id) = id {
        let _ = write!(buf, "{id}");
    }
    buf
}

/// `buf[..at]` is `...["event"` and `buf[at..]` the serialized args array: merge them into one array,
/// appending the offset if any.
fn splice_array(buf: &mut Vec<u8>, at: usize, offset: Option<&str>) -> Result<(), Error> {
    if &buf[at..] == b"null" {
        // `()`: no arguments
        buf.truncate(at);
        buf.extend_from_slice(b"[]");
    }
    if buf.get(at) != Some(&b'[') || buf.last() != Some(&b']') {
        return Err(Error::ArgsNotArray);
    }
    buf.pop(); // the closing bracket, pushed back below
    if buf.len() == at + 1 {
        // empty args: drop the opening bracket too
        buf.pop();
    } else {
        buf[at] = b',';
    }
    if let Some(offset) = offset {
        buf.push(b',');
        serde_json::to_writer(&mut *buf, offset).map_err(|e| Error::InvalidJson(e.to_string()))?;
    }
    buf.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_events() {
        let o = EventOpts::default();
        assert_eq!(event("/", "hi", &(1, "x"), o).unwrap(), r#"42["hi",1,"x"]"#);
        assert_eq!(event("/", "hi", &(), o).unwrap(), r#"42["hi"]"#);
        assert_eq!(
            event("/", "hi", &[json!({"a":1})], o).unwrap(),
            r#"42["hi",{"a":1}]"#
        );
        let o = EventOpts {
            ack_id: Some(3),
            offset: Some("off-1"),
            ..o
        };
        assert_eq!(
            event("/chat", "hi", &(true,), o).unwrap(),
            r#"42/chat,3["hi",true,"off-1"]"#
        );
        let o = EventOpts {
            offset: Some("o"),
            ..EventOpts::default()
        };
        assert_eq!(event("/", "hi", &(), o).unwrap(), r#"42["hi","o"]"#);
        let o = EventOpts {
            attachments: 1,
            ..EventOpts::default()
        };
        assert_eq!(
            event("/", "b", &(crate::packet::placeholder(0),), o).unwrap(),
            r#"451-["b",{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            event("/", "hi", &json!({"a":1}), EventOpts::default()),
            Err(Error::ArgsNotArray)
        );
        assert_eq!(
            event("/", "hi", &5, EventOpts::default()),
            Err(Error::ArgsNotArray)
        );
    }

    #[test]
    fn encodes_acks() {
        assert_eq!(ack("/", 5, &(1,), 0).unwrap(), "435[1]");
        assert_eq!(ack("/x", 5, &json!([]), 0).unwrap(), "43/x,5[]");
        assert_eq!(ack("/", 5, &json!({}), 0), Err(Error::ArgsNotArray));
        assert_eq!(ack("/", 5, &(), 0).unwrap(), "435[]");
        assert_eq!(ack("/", 5, &"a]", 0), Err(Error::ArgsNotArray));
    }
}
