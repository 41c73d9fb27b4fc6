//! Property tests: decode ∘ encode is the identity on every valid packet, and the decoder never
//! panics on arbitrary input.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{json, Value};
use sio_core::{engine, packet::placeholder, Packet, PacketKind};

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(|n| Value::from(f64::from(n) / 8.0)),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..6).prop_map(|m| Value::Object(
                m.into_iter().filter(|(k, _)| k != "_placeholder").collect()
            )),
        ]
    })
}

fn nsp() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-zA-Z0-9_-]{1,10}"]
}

fn event_name() -> impl Strategy<Value = String> {
    ".{0,16}".prop_filter("reserved", |s| {
        !sio_core::packet::RESERVED_EVENTS.contains(&s.as_str())
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    let id = || prop::option::of(0..=sio_core::MAX_ACK_ID);
    let args = || prop::collection::vec(json_value(), 0..5);
    prop_oneof![
        (
            nsp(),
            prop::option::of(prop::collection::btree_map(
                "[a-z]{1,6}",
                json_value(),
                0..4
            ))
        )
            .prop_map(|(nsp, auth)| Packet {
                kind: PacketKind::Connect,
                nsp,
                id: None,
                attachments: 0,
                data: auth.map(|m| Value::Object(m.into_iter().collect())),
            }),
        nsp().prop_map(|nsp| Packet {
            kind: PacketKind::Disconnect,
            nsp,
            id: None,
            attachments: 0,
            data: None
        }),
        (nsp(), ".{0,20}").prop_map(|(nsp, m)| Packet {
            kind: PacketKind::ConnectError,
            nsp,
            id: None,
            attachments: 0,
            data: Some(json!({"message": m})),
        }),
        (nsp(), id(), event_name(), args()).prop_map(|(nsp, id, name, mut args)| {
            args.insert(0, Value::String(name));
            Packet {
                kind: PacketKind::Event,
                nsp,
                id,
                attachments: 0,
                data: Some(Value::Array(args)),
            }
        }),
        (nsp(), 0..=sio_core::MAX_ACK_ID, args()).prop_map(|(nsp, id, args)| Packet {
            kind: PacketKind::Ack,
            nsp,
            id: Some(id),
            attachments: 0,
            data: Some(Value::Array(args)),
        }),
        (nsp(), id(), event_name(), args(), 1usize..5).prop_map(|(nsp, id, name, mut args, n)| {
            args.insert(0, Value::String(name));
            args.extend((0..n).map(placeholder));
            Packet {
                kind: PacketKind::BinaryEvent,
                nsp,
                id,
                attachments: n,
                data: Some(Value::Array(args)),
            }
        }),
        (nsp(), 0..=sio_core::MAX_ACK_ID, args(), 0usize..5).prop_map(|(nsp, id, mut args, n)| {
            args.push(json!({"nested": (0..n).map(placeholder).collect::<Vec<_>>()}));
            Packet {
                kind: PacketKind::BinaryAck,
                nsp,
                id: Some(id),
                attachments: n,
                data: Some(Value::Array(args)),
            }
        }),
    ]
}

proptest! {
    #[test]
    fn decode_inverts_encode(p in packet()) {
        let wire = p.encode();
        let back = Packet::decode(&wire).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn event_encoder_agrees_with_the_generic_one(nsp in nsp(), name in event_name(),
        args in prop::collection::vec(json_value(), 0..5), id in prop::option::of(0..1000u64)) {
        let fast = sio_core::encode::event(&nsp, &name, &args,
            sio_core::encode::EventOpts { ack_id: id, ..Default::default() }).unwrap();
        let mut all = vec![Value::String(name)];
        all.extend(args);
        let slow = Packet { kind: PacketKind::Event, nsp, id, attachments: 0, data: Some(Value::Array(all)) };
        prop_assert_eq!(fast, format!("4{}", slow.encode()));
    }

    #[test]
    fn engine_text_packets_roundtrip(t in 0u8..7, data in ".{0,20}") {
        let p = match t {
            0 => engine::TextPacket::Open(&data),
            1 => engine::TextPacket::Close,
            2 => engine::TextPacket::Ping(&data),
            3 => engine::TextPacket::Pong(&data),
            4 => engine::TextPacket::Message(&data),
            5 => engine::TextPacket::Upgrade,
            _ => engine::TextPacket::Noop,
        };
        let wire = p.encode();
        prop_assert_eq!(engine::TextPacket::decode(&wire).unwrap(), p);
    }

    #[test]
    fn polling_payloads_roundtrip(items in prop::collection::vec(
        prop_oneof!["[^\x1e]{0,20}".prop_map(Ok), prop::collection::vec(any::<u8>(), 0..20).prop_map(Err)], 1..6)) {
        let mut body = String::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 { body.push(engine::SEPARATOR); }
            match item {
                Ok(text) => engine::TextPacket::Message(text).encode_into(&mut body),
                Err(bin) => engine::encode_binary_record(&mut body, bin),
            }
        }
        let back: Vec<_> = engine::decode_payload(&body).map(Result::unwrap).collect();
        prop_assert_eq!(back.len(), items.len());
        for (b, item) in back.iter().zip(&items) {
            match (b, item) {
                (engine::PayloadItem::Text(engine::TextPacket::Message(t)), Ok(text)) => prop_assert_eq!(t, text),
                (engine::PayloadItem::Binary(d), Err(bin)) => prop_assert_eq!(d, bin),
                _ => prop_assert!(false, "mismatch"),
            }
        }
    }

    #[test]
    fn decoder_never_panics(s in "\\PC{0,64}") {
        let _ = Packet::decode(&s);
        let _ = engine::TextPacket::decode(&s);
        let _ = engine::decode_payload(&s).count();
    }
}
