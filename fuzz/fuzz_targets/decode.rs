//! Feeds arbitrary bytes to every decoder of sio-core: Engine.IO text packets, polling payloads,
//! Socket.IO packets and attachment reassembly. Any panic is a bug; decoded packets must re-encode
//! to something that decodes to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sio_core::{engine, Packet, PartialBinary};

/// JSON equality where floats may differ in their last bits: serde_json (without its
/// `float_roundtrip` feature) does not parse every float it prints back to the same bits.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x == y || ((x - y) / x.abs().max(y.abs())).abs() < 1e-12
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(engine::TextPacket::Message(m)) = engine::TextPacket::decode(s) {
        let _ = Packet::decode(m);
    }
    for item in engine::decode_payload(s) {
        let _ = item;
    }
    if let Ok(p) = Packet::decode(s) {
        let again = Packet::decode(&p.encode()).expect("re-encoded packet decodes");
        assert_eq!((again.kind, &again.nsp, again.id, again.attachments), (p.kind, &p.nsp, p.id, p.attachments));
        match (&again.data, &p.data) {
            (Some(a), Some(b)) => assert!(same(a, b), "{a} != {b}"),
            (None, None) => {}
            _ => panic!("payload lost"),
        }
        if p.kind.is_binary() {
            let n = p.attachments;
            let mut partial = PartialBinary::new(p);
            for _ in 0..n {
                partial.push(bytes::Bytes::new()).expect("room for announced attachments");
            }
            assert!(partial.is_complete());
            assert!(partial.push(bytes::Bytes::new()).is_err());
        }
    }
});
