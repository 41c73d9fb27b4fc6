//! Feeds arbitrary bytes to every decoder of sio-core: Engine.IO text packets, polling payloads,
//! Socket.IO packets and attachment reassembly. Any panic is a bug; decoded packets must re-encode
//! to something that decodes to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sio_core::{engine, Packet, PartialBinary};

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
        assert_eq!(again, p);
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
