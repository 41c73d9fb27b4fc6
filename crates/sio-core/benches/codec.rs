//! Encode/decode throughput of the Socket.IO codec on a chat-sized event.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde::Serialize;
use sio_core::{encode, engine, Packet};
use std::hint::black_box;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    id: &'a str,
    room_id: &'a str,
    seq: u64,
    sender_id: &'a str,
    content: &'a str,
    r#type: &'a str,
    created_at: &'a str,
}

const MSG: Message<'static> = Message {
    id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
    room_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
    seq: 123_456,
    sender_id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d",
    content: "hello, this is a fairly typical chat message of about eighty characters or so!",
    r#type: "text",
    created_at: "2026-11-21T05:15:32.123Z",
};

fn bench(c: &mut Criterion) {
    let frame = encode::event(
        "/",
        "receive_message",
        &(MSG,),
        encode::EventOpts::default(),
    )
    .expect("encodes");
    let mut g = c.benchmark_group("socketio");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("encode_event", |b| {
        b.iter(|| {
            encode::event(
                "/",
                "receive_message",
                black_box(&(MSG,)),
                encode::EventOpts {
                    offset: Some("1-123456"),
                    ..Default::default()
                },
            )
        })
    });
    g.bench_function("decode_event", |b| {
        b.iter(|| {
            let engine::TextPacket::Message(m) =
                engine::TextPacket::decode(black_box(&frame)).expect("valid")
            else {
                unreachable!("a message")
            };
            Packet::decode(m).expect("valid")
        })
    });
    let payload = [frame.as_str(); 16].join("\x1e");
    g.throughput(Throughput::Bytes(payload.len() as u64));
    g.bench_function("decode_polling_payload_16", |b| {
        b.iter(|| {
            engine::decode_payload(black_box(&payload))
                .filter(Result::is_ok)
                .count()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
