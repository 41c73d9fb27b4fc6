//! The Redis stream commands the worker sends, and the parsing of their replies into plain entries.
//!
//! Replies are walked by hand from `redis::Value` rather than through the crate's generic stream reply
//! types: an entry keeps only its id and the `e` field's bytes, with no map per entry, which matters at
//! a hundred thousand entries a second.

use chat_bus::stream::ENTRY_FIELD;
use deadpool_redis::redis::{self, RedisResult, Value};
use std::time::Duration;

/// One stream entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub id: String,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The `e` field.
    Payload(Vec<u8>),
    /// The entry exists but has no `e` field.
    NoPayload,
    /// The entry was deleted from the stream while pending (reading a consumer's own history).
    Gone,
}

/// `XREADGROUP GROUP g c COUNT n [BLOCK ms] STREAMS key id`: `id` is `>` for new entries or `0` for
/// this consumer's own pending ones. `block` of `None` does not block.
pub async fn read_group(
    conn: &mut chat_bus::Conn,
    key: &str,
    group: &str,
    consumer: &str,
    count: usize,
    block: Option<Duration>,
    id: &str,
) -> RedisResult<Vec<RawEntry>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(b) = block {
        // BLOCK 0 would mean forever.
        cmd.arg("BLOCK").arg(b.as_millis().max(1) as u64);
    }
    cmd.arg("STREAMS").arg(key).arg(id);
    let v: Value = cmd.query_async(conn).await?;
    let mut out = Vec::new();
    // [[key, [entry, ...]]] (RESP2) or {key: [entry, ...]} (RESP3); nil on timeout.
    match v {
        Value::Array(streams) => {
            for s in streams {
                if let Value::Array(mut kv) = s {
                    if kv.len() == 2 {
                        parse_entries(kv.swap_remove(1), &mut out);
                    }
                }
            }
        }
        Value::Map(pairs) => {
            for (_, entries) in pairs {
                parse_entries(entries, &mut out);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// `XAUTOCLAIM key g c min-idle start COUNT n`: takes over entries idle on other consumers. Returns the
/// cursor to continue from (`0-0` when the scan is complete) and the entries.
pub async fn auto_claim(
    conn: &mut chat_bus::Conn,
    key: &str,
    group: &str,
    consumer: &str,
    min_idle: Duration,
    start: &str,
    count: usize,
) -> RedisResult<(String, Vec<RawEntry>)> {
    let v: Value = redis::cmd("XAUTOCLAIM")
        .arg(key)
        .arg(group)
        .arg(consumer)
        .arg(min_idle.as_millis() as u64)
        .arg(start)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let mut out = Vec::new();
    let mut cursor = "0-0".to_owned();
    if let Value::Array(mut parts) = v {
        if parts.len() >= 2 {
            let entries = parts.swap_remove(1);
            if let Some(c) = as_string(&parts[0]) {
                cursor = c;
            }
            parse_entries(entries, &mut out);
        }
    }
    Ok((cursor, out))
}

fn parse_entries(v: Value, out: &mut Vec<RawEntry>) {
    let Value::Array(entries) = v else { return };
    out.reserve(entries.len());
    for e in entries {
        let Value::Array(mut parts) = e else { continue };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let Some(id) = parts.pop().as_ref().and_then(as_string) else {
            continue;
        };
        let body = match fields {
            Some(Value::Array(fields)) => {
                let mut body = Body::NoPayload;
                let mut it = fields.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if as_bytes(&k) == Some(ENTRY_FIELD.as_bytes()) {
                        if let Value::BulkString(b) = v {
                            body = Body::Payload(b);
                        }
                        break;
                    }
                }
                body
            }
            Some(Value::Map(pairs)) => pairs
                .into_iter()
                .find(|(k, _)| as_bytes(k) == Some(ENTRY_FIELD.as_bytes()))
                .and_then(|(_, v)| match v {
                    Value::BulkString(b) => Some(Body::Payload(b)),
                    _ => None,
                })
                .unwrap_or(Body::NoPayload),
            _ => Body::Gone,
        };
        out.push(RawEntry { id, body });
    }
}

fn as_bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    as_bytes(v).and_then(|b| String::from_utf8(b.to_vec()).ok())
}

/// The millisecond part of a stream entry id (`<ms>-<seq>`): when Redis appended it.
pub fn id_millis(id: &str) -> Option<u64> {
    id.split_once('-').map_or(id, |(ms, _)| ms).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn entries_keep_the_id_and_the_e_field() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk(b"1-0"),
                Value::Array(vec![
                    bulk(b"x"),
                    bulk(b"1"),
                    bulk(b"e"),
                    bulk(b"\x81\xa1v\x01"),
                ]),
            ]),
            Value::Array(vec![
                bulk(b"2-0"),
                Value::Array(vec![bulk(b"x"), bulk(b"1")]),
            ]),
            Value::Array(vec![bulk(b"3-0"), Value::Nil]),
        ]);
        let mut out = Vec::new();
        parse_entries(reply, &mut out);
        assert_eq!(
            out,
            vec![
                RawEntry {
                    id: "1-0".into(),
                    body: Body::Payload(b"\x81\xa1v\x01".to_vec())
                },
                RawEntry {
                    id: "2-0".into(),
                    body: Body::NoPayload
                },
                RawEntry {
                    id: "3-0".into(),
                    body: Body::Gone
                },
            ]
        );
        assert_eq!(id_millis("1763700000123-7"), Some(1_763_700_000_123));
        assert_eq!(id_millis("nonsense"), None);
    }
}
