//! Socket.IO v5 on the wire: namespaces, the connect hook, events, acks both ways, binary
//! attachments, recovery, fan-out, the send queue, shutdown, and malformed packets.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use sio::{Class, DisconnectReason, Frame, SendError};

async fn next_connected(t: &mut TestServer) -> Rec {
    loop {
        let r = t.next().await;
        if matches!(r, Rec::Connected { .. }) {
            return r;
        }
    }
}

#[tokio::test]
async fn connect_to_main_and_custom_namespaces_with_auth() {
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send(r#"40{"token":"123"}"#).await;
    let reply = ws.text().await;
    let v: Value = serde_json::from_str(reply.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "only sid without recovery: {v}"
    );
    let Rec::Connected { nsp, id, auth, .. } = next_connected(&mut t).await else {
        unreachable!()
    };
    assert_eq!(
        (nsp.as_str(), id.as_str(), auth),
        (
            "/",
            v["sid"].as_str().unwrap(),
            Some(json!({"token":"123"}))
        )
    );

    ws.send("40/custom,").await;
    let reply = ws.text().await;
    assert!(reply.starts_with("40/custom,{\"sid\":"), "{reply}");
    let Rec::Connected { nsp, auth, .. } = next_connected(&mut t).await else {
        unreachable!()
    };
    assert_eq!((nsp.as_str(), auth), ("/custom", None));
}

#[tokio::test]
async fn unknown_namespace_and_refused_auth_get_connect_error() {
    let t = spawn(config()).await;
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send("40/random").await;
    assert_eq!(
        ws.text().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    ws.send(r#"40{"token":"bad"}"#).await;
    assert_eq!(
        ws.text().await,
        r#"44{"data":{"code":"AUTH"},"message":"unauthorized"}"#
    );
    // The connection survives a refusal: the client may try again.
    ws.send(r#"40{"token":"good"}"#).await;
    assert!(ws.text().await.starts_with("40{"));
}

#[tokio::test]
async fn events_reach_the_handler_in_order() {
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, r#"{"token":"slow"}"#).await;
    for i in 0..50 {
        ws.send(&format!(r#"42["n",{i}]"#)).await;
    }
    next_connected(&mut t).await;
    for i in 0..50 {
        let Rec::Event { name, args, .. } = t.next().await else {
            panic!()
        };
        assert_eq!((name.as_str(), args), ("n", vec![json!(i)]));
    }
}

#[tokio::test]
async fn client_to_server_acks_plain_and_binary() {
    let t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"42456["ack",1,"2",{"3":[false]}]"#).await;
    assert_eq!(ws.text().await, r#"43456[1,"2",{"3":[false]}]"#);
    ws.send(r#"452-789["ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        .await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[4, 5, 6]).await;
    assert_eq!(
        ws.text().await,
        r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(ws.recv().await, Got::Binary(vec![1, 2, 3]));
    assert_eq!(ws.recv().await, Got::Binary(vec![4, 5, 6]));
}

#[tokio::test]
async fn binary_events_round_trip() {
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"451-["echo",{"file":{"_placeholder":true,"num":0}}]"#)
        .await;
    ws.send_binary(b"\x00\xffdata").await;
    assert_eq!(
        ws.text().await,
        r#"451-["echo",{"file":{"_placeholder":true,"num":0}}]"#
    );
    assert_eq!(ws.recv().await, Got::Binary(b"\x00\xffdata".to_vec()));
    next_connected(&mut t).await;
    let Rec::Event { binary, .. } = t.next().await else {
        panic!()
    };
    assert_eq!(binary, vec![bytes::Bytes::from_static(b"\x00\xffdata")]);
}

#[tokio::test]
async fn server_to_client_ack_resolves_and_the_connection_keeps_reading_meanwhile() {
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"42["ask"]"#).await;
    let q = ws.text().await;
    assert!(
        q.starts_with("42") && q.ends_with(r#"["question",1,"two"]"#),
        "{q}"
    );
    let id: u64 = q[2..q.find('[').unwrap()].parse().unwrap();
    // While the handler awaits the ack, the connection still serves other packets.
    ws.send(r#"4277["ack","meanwhile"]"#).await;
    ws.send(&format!(r#"43{id}["yes",{{"n":3}}]"#)).await;
    loop {
        if let Rec::Answer(a) = t.next().await {
            assert_eq!(a, Ok(vec![json!("yes"), json!({"n":3})]));
            break;
        }
    }
    assert_eq!(ws.text().await, r#"4377["meanwhile"]"#);
}

#[tokio::test(start_paused = true)]
async fn server_to_client_ack_times_out() {
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"42["ask"]"#).await;
    let _question = ws.text().await;
    loop {
        if let Rec::Answer(a) = t.next().await {
            assert_eq!(a, Err("no ack within the timeout".to_owned()));
            break;
        }
    }
}

#[tokio::test]
async fn a_pending_server_to_client_ack_fails_when_the_client_goes_away() {
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"42["ask"]"#).await;
    let _question = ws.text().await;
    drop(ws);
    loop {
        if let Rec::Answer(a) = t.next().await {
            assert_eq!(a, Err("socket disconnected before the ack".to_owned()));
            break;
        }
    }
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn acks_for_unknown_ids_are_ignored() {
    let t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"435["late"]"#).await;
    ws.send(r#"421["ack","still here"]"#).await;
    assert_eq!(ws.text().await, r#"431["still here"]"#);
}

#[tokio::test]
async fn client_and_server_namespace_disconnects() {
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send("40/custom,").await;
    assert!(ws.text().await.starts_with("40/custom,"));
    ws.send("41/custom,").await;
    ws.send(r#"42/custom,["echo","ignored: left the namespace"]"#)
        .await;
    ws.send(r#"42["echo","main"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","main"]"#);
    let mut saw = None;
    while saw.is_none() {
        if let Rec::Disconnected { nsp, reason } = t.next().await {
            saw = Some((nsp, reason));
        }
    }
    assert_eq!(
        saw,
        Some((
            "/custom".to_owned(),
            DisconnectReason::ClientNamespaceDisconnect
        ))
    );
    ws.send(r#"42["kick"]"#).await;
    assert_eq!(ws.text().await, "41");
    loop {
        if let Rec::Disconnected { nsp, reason } = t.next().await {
            assert_eq!(
                (nsp.as_str(), reason),
                ("/", DisconnectReason::ServerNamespaceDisconnect)
            );
            break;
        }
    }
    // The connection stays open for a new CONNECT.
    ws.send("40").await;
    assert!(ws.text().await.starts_with("40{"));
}

#[tokio::test]
async fn malformed_socketio_packets_close_the_connection() {
    let t = spawn(config()).await;
    let bad: &[&str] = &[
        "4abc",                                         // unknown packet type
        "49",                                           // unknown packet type
        "42{}",                                         // payload of the wrong shape
        "42[",                                          // invalid JSON
        r#"42["connect"]"#,                             // reserved event name
        r#"42abc["x"]"#,                                // invalid ack id
        r#"429007199254740992["x"]"#,                   // ack id over 2^53 - 1
        r#"4212345678901234567890123["x"]"#,            // huge ack id
        r#"451-["x",{"_placeholder":true,"num":1}]"#,   // placeholder out of range
        r#"451-["x",{"_placeholder":true}]"#,           // placeholder without num
        r#"45-["x"]"#,                                  // missing attachment count
        r#"44{"message":"clients may not send this"}"#, // CONNECT_ERROR from a client
        "4",                                            // empty Socket.IO packet
    ];
    for b in bad {
        let (mut ws, _) = ws_connected(t.addr, "").await;
        ws.send(b).await;
        ws.closed().await;
    }
    t.assert_no_sessions().await;
}

/// Collects what the server logs, for the test that runs on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: the server's tasks run on this thread, under its log subscriber.
#[tokio::test(flavor = "current_thread")]
async fn bad_input_is_logged_at_debug_level() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"42abc["x"]"#).await;
    ws.closed().await;
    t.assert_no_sessions().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("invalid socket.io packet"))
        .expect("logged");
    assert!(line.contains("DEBUG"), "{line}");
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
}

#[tokio::test]
async fn binary_where_text_is_expected_and_the_reverse_close_the_connection() {
    let t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.closed().await;

    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
        .await;
    ws.send_binary(&[1]).await;
    ws.send(r#"42["echo","too early"]"#).await;
    ws.closed().await;
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn attachments_adding_up_to_more_than_max_payload_close_the_connection() {
    let t = spawn(config()).await; // maxPayload 10,000
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"453-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1},{"_placeholder":true,"num":2}]"#).await;
    ws.send_binary(&[0; 6000]).await;
    ws.send_binary(&[0; 6000]).await;
    ws.closed().await;
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn recovery_works_across_two_servers_sharing_a_store() {
    let store = std::sync::Arc::new(sio::MemoryStore::default());
    let mut a = spawn_store(config(), store.clone()).await;
    let mut b = spawn_store(config(), store.clone()).await;
    let (mut ws, _) = ws_open(a.addr).await;
    ws.send("40").await;
    let v: Value = serde_json::from_str(ws.text().await.strip_prefix("40").unwrap()).unwrap();
    let (sid, pid) = (
        v["sid"].as_str().unwrap().to_owned(),
        v["pid"].as_str().unwrap().to_owned(),
    );
    next_connected(&mut a).await;
    // Server A "crashes": nothing is saved at disconnect; the session was saved at connect.
    let _a_is_gone = ws;
    let (mut ws, _) = ws_open(b.addr).await;
    ws.send(&format!(r#"40{{"pid":"{pid}","offset":"o-1"}}"#))
        .await;
    let v: Value = serde_json::from_str(ws.text().await.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(
        (v["sid"].as_str().unwrap(), v["pid"].as_str().unwrap()),
        (sid.as_str(), pid.as_str())
    );
    assert!(ws.text().await.starts_with(r#"42["replayed","o-1","#));
    let Rec::Connected { recovered, .. } = next_connected(&mut b).await else {
        unreachable!()
    };
    assert_eq!(recovered.as_deref(), Some("o-1"));
}

#[tokio::test]
async fn connection_state_recovery_restores_the_sid_and_replays() {
    let mut t = spawn_with(config(), true).await;
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send("40").await;
    let reply = ws.text().await;
    let v: Value = serde_json::from_str(reply.strip_prefix("40").unwrap()).unwrap();
    let (sid, pid) = (
        v["sid"].as_str().unwrap().to_owned(),
        v["pid"].as_str().unwrap().to_owned(),
    );
    next_connected(&mut t).await;
    // Saved while connected (so a crash of this process would not lose it).
    assert_eq!(t.store.len(), 1);
    // The transport dies (not a namespace disconnect): the session stays, with fresh state.
    drop(ws);
    loop {
        if let Rec::Disconnected { reason, .. } = t.next().await {
            // Dropped without a closing handshake: a transport error, which is recoverable.
            assert!(reason.is_recoverable(), "{reason:?}");
            break;
        }
    }
    assert_eq!(t.store.len(), 1);

    let (mut ws, _) = ws_open(t.addr).await;
    ws.send(&format!(
        r#"40{{"pid":"{pid}","offset":"o-5","token":"x"}}"#
    ))
    .await;
    let reply = ws.text().await;
    let v: Value = serde_json::from_str(reply.strip_prefix("40").unwrap()).unwrap();
    assert_eq!(
        (v["sid"].as_str().unwrap(), v["pid"].as_str().unwrap()),
        (sid.as_str(), pid.as_str())
    );
    assert_eq!(
        ws.text().await,
        format!(r#"42["replayed","o-5",{{"was":"{sid}"}},"o-9"]"#)
    );
    let Rec::Connected { id, recovered, .. } = next_connected(&mut t).await else {
        unreachable!()
    };
    assert_eq!((id, recovered), (sid, Some("o-5".to_owned())));
    assert_eq!(t.store.len(), 1, "the recovered socket is saved again");
    // Leaving the namespace for good forgets the session.
    ws.send("41").await;
    loop {
        if let Rec::Disconnected { reason, .. } = t.next().await {
            assert_eq!(reason, DisconnectReason::ClientNamespaceDisconnect);
            break;
        }
    }
    assert!(t.store.is_empty());

    // A second use of the same pid finds nothing: a fresh session.
    drop(ws);
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send(r#"40{"pid":"AAAAAAAAAAAAAAAAAAAA","offset":"o-5"}"#)
        .await;
    let v: Value = serde_json::from_str(ws.text().await.strip_prefix("40").unwrap()).unwrap();
    assert_ne!(v["pid"].as_str().unwrap(), pid);
}

#[tokio::test]
async fn one_frame_fans_out_to_many_sockets_unchanged() {
    let mut t = spawn(config()).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(ws_connected(t.addr, "").await.0);
    }
    for _ in 0..20 {
        next_connected(&mut t).await;
    }
    let frame =
        Frame::event_with_offset("/", "receive_message", &(json!({"seq": 1}),), "1").unwrap();
    let sockets = t.sockets.lock().unwrap().clone();
    let report = frame.send_to(&sockets, Class::Durable);
    assert_eq!(
        report,
        sio::Fanout {
            queued: 20,
            ..Default::default()
        }
    );
    for c in &mut clients {
        assert_eq!(c.text().await, r#"42["receive_message",{"seq":1},"1"]"#);
    }
}

#[tokio::test]
async fn send_queue_sheds_volatile_first_and_disconnects_on_durable_overflow() {
    // Polling: nothing drains the queue until the client polls.
    let mut t = spawn(sio::Config {
        queue_capacity: 8,
        ..config()
    })
    .await;
    let (sid, _) = polling_open(t.addr).await;
    post(t.addr, &sid, "40").await;
    next_connected(&mut t).await;
    let s = t.sockets.lock().unwrap()[0].clone();
    let durable = Frame::event("/", "d", &()).unwrap();
    let volatile = Frame::event("/", "v", &()).unwrap();
    // The queue holds the CONNECT reply (1) + 5 volatile; volatile stops at 3/4 of 8.
    for _ in 0..5 {
        s.send(&volatile, Class::Volatile).unwrap();
    }
    assert_eq!(s.send(&volatile, Class::Volatile), Err(SendError::Dropped));
    // Durable frames evict volatile ones when full...
    for _ in 0..7 {
        s.send(&durable, Class::Durable).unwrap();
    }
    // ...until none is left: then the connection is closed.
    assert_eq!(s.send(&durable, Class::Durable), Err(SendError::Overflow));
    assert_eq!(s.send(&durable, Class::Durable), Err(SendError::Closed));
    loop {
        if let Rec::Disconnected { reason, .. } = t.next().await {
            assert_eq!(reason, DisconnectReason::QueueOverflow);
            break;
        }
    }
    let r = poll(t.addr, &sid).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn graceful_shutdown_tells_clients_whether_to_come_back() {
    let t = spawn_with(config(), true).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    t.server.shutdown(false, Duration::from_secs(5)).await;
    assert_eq!(ws.text().await, "41");
    ws.closed().await;
    assert_eq!(t.server.session_count(), 0);
    assert!(
        t.store.is_empty(),
        "clients told not to come back leave no session behind"
    );
    // New sessions are refused (the listener is closed, or answers 503 while draining).
    assert!(ws_raw(t.addr, "EIO=4&transport=websocket").await.is_err());

    let t = spawn_with(config(), true).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    t.server.shutdown(true, Duration::from_secs(5)).await;
    ws.closed().await;
    assert_eq!(
        t.store.len(),
        1,
        "clients invited back can recover elsewhere"
    );
}

#[tokio::test]
async fn polling_session_does_socketio_end_to_end() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    post(t.addr, &sid, "40/custom,{\"token\":\"t\"}").await;
    let r = poll(t.addr, &sid).await;
    assert!(r.body.starts_with("40/custom,{\"sid\":"), "{r:?}");
    post(
        t.addr,
        &sid,
        "42/custom,3[\"ack\",\"a\"]\x1e42/custom,[\"echo\",\"b\"]",
    )
    .await;
    let mut got = String::new();
    while !got.contains("echo") {
        got.push_str(&poll(t.addr, &sid).await.body);
        got.push('\x1e');
    }
    assert_eq!(
        got.trim_end_matches('\x1e'),
        "43/custom,3[\"a\"]\x1e42/custom,[\"echo\",\"b\"]"
    );
}

fn connect_reply(text: &str, nsp_prefix: &str) -> (String, String) {
    let v: Value = serde_json::from_str(text.strip_prefix(nsp_prefix).unwrap()).unwrap();
    (
        v["sid"].as_str().unwrap().to_owned(),
        v["pid"].as_str().unwrap().to_owned(),
    )
}

async fn next_disconnected(t: &mut TestServer, nsp: &str) -> DisconnectReason {
    loop {
        if let Rec::Disconnected { nsp: n, reason } = t.next().await {
            if n == nsp {
                return reason;
            }
        }
    }
}

/// Waits (bounded) until the store holds `n` sessions.
async fn store_holds(t: &TestServer, n: usize) {
    for _ in 0..200 {
        if t.store.len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the store holds {} sessions, not {n}", t.store.len());
}

#[tokio::test]
async fn control_packets_for_a_client_that_never_polls_are_bounded() {
    let mut t = spawn(sio::Config {
        queue_capacity: 8,
        ..config()
    })
    .await;
    let (sid, _) = polling_open(t.addr).await;
    post(t.addr, &sid, "40").await;
    next_connected(&mut t).await;
    // 40 acks never collected: the queue may pass its capacity by a small margin, then the
    // connection is closed as not reading.
    let acks: Vec<String> = (0..40).map(|i| format!(r#"42{i}["ack",{i}]"#)).collect();
    assert_eq!(post(t.addr, &sid, &acks.join("\x1e")).await.status, 200);
    assert_eq!(
        next_disconnected(&mut t, "/").await,
        DisconnectReason::QueueOverflow
    );
    assert_eq!(poll(t.addr, &sid).await.status, 400);
    // CONNECT_ERRORs for unknown namespaces likewise.
    let (sid, _) = polling_open(t.addr).await;
    let connects = vec!["40/nope,"; 40].join("\x1e");
    assert_eq!(post(t.addr, &sid, &connects).await.status, 200);
    t.assert_no_sessions().await;
    assert_eq!(poll(t.addr, &sid).await.status, 400);
}

#[tokio::test]
async fn acks_may_carry_no_arguments() {
    let t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(r#"427["ack-none"]"#).await;
    assert_eq!(ws.text().await, "437[]");
}

// A current-thread runtime: the server's tasks run on this thread, under its log subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_emit_with_ack_forgets_its_pending_ack() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    next_connected(&mut t).await;
    let s = t.sockets.lock().unwrap()[0].clone();
    // Polled once (the question goes out), then dropped by its caller.
    let asked = s.emit_with_ack("question", &(), Duration::from_secs(60));
    assert!(futures_util::FutureExt::now_or_never(asked).is_none());
    assert_eq!(ws.text().await, r#"420["question"]"#);
    // The late answer finds no pending entry (acks are routed before later events are handled).
    ws.send(r#"430["late"]"#).await;
    ws.send(r#"421["ack","after"]"#).await;
    assert_eq!(ws.text().await, r#"431["after"]"#);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("ack for an unknown id: ignored"), "{text}");
}

#[tokio::test]
async fn a_replay_does_not_make_the_next_broadcast_overflow_the_queue() {
    // Polling: nothing drains the queue until the client polls.
    let mut t = spawn_with(
        sio::Config {
            queue_capacity: 4,
            ..config()
        },
        true,
    )
    .await;
    let (sid, _) = polling_open(t.addr).await;
    post(t.addr, &sid, "40").await;
    let (_, pid) = connect_reply(&poll(t.addr, &sid).await.body, "40");
    next_connected(&mut t).await;
    assert_eq!(post(t.addr, &sid, "1").await.status, 200);
    assert!(next_disconnected(&mut t, "/").await.is_recoverable());

    let (sid, _) = polling_open(t.addr).await;
    post(
        t.addr,
        &sid,
        &format!(r#"40{{"pid":"{pid}","offset":"o-1","replay":10}}"#),
    )
    .await;
    next_connected(&mut t).await;
    let s = t.sockets.lock().unwrap().last().unwrap().clone();
    let frame = Frame::event("/", "room", &(1,)).unwrap();
    // The CONNECT reply and 10 replayed frames wait, far over the capacity of 4: the replay
    // counts as backlog the broadcasts that follow it may exceed.
    for _ in 0..3 {
        assert_eq!(s.send(&frame, Class::Durable), Ok(()));
    }
    let mut records: Vec<String> = Vec::new();
    while records.len() < 14 {
        let r = poll(t.addr, &sid).await;
        assert_eq!(r.status, 200);
        records.extend(r.body.split('\x1e').map(str::to_owned));
    }
    assert!(records[0].starts_with("40{"), "{records:?}");
    assert!(records[1..11]
        .iter()
        .all(|r| r.starts_with(r#"42["replayed","o-1","#)));
    assert!(records[11..].iter().all(|r| r == r#"42["room",1]"#));
    // Once sent, the replay no longer counts: the configured capacity applies again.
    for _ in 0..4 {
        assert_eq!(s.send(&frame, Class::Durable), Ok(()));
    }
    assert_eq!(s.send(&frame, Class::Durable), Err(SendError::Overflow));
}

#[tokio::test]
async fn a_pid_whose_socket_is_still_live_here_gets_a_fresh_socket_and_no_kick() {
    let mut t = spawn_with(config(), true).await;
    let (mut old, _) = ws_open(t.addr).await;
    old.send("40").await;
    let (sid, pid) = connect_reply(&old.text().await, "40");
    next_connected(&mut t).await;
    // A client whose old transport the server has not yet seen die presents the live socket's pid
    // (as would anyone who learned it): it is not recovered, and the live socket is not touched.
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send(&format!(r#"40{{"pid":"{pid}","offset":"o-1"}}"#))
        .await;
    let (new_sid, new_pid) = connect_reply(&ws.text().await, "40");
    assert_ne!(new_sid, sid);
    assert_ne!(new_pid, pid);
    let Rec::Connected { id, recovered, .. } = t.next().await else {
        panic!("expected a fresh socket")
    };
    assert_eq!((id, recovered), (new_sid, None));
    old.send(r#"42["echo","old"]"#).await;
    assert_eq!(old.text().await, r#"42["echo","old"]"#);
    ws.send(r#"42["echo","new"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","new"]"#);
    assert_eq!(t.server.session_count(), 2);
    assert_eq!(t.store.len(), 2, "each socket keeps its own session");
}

#[tokio::test]
async fn a_refused_or_abandoned_recovery_keeps_the_session() {
    let mut t = spawn_with(config(), true).await;
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send("40").await;
    let (sid, pid) = connect_reply(&ws.text().await, "40");
    next_connected(&mut t).await;
    drop(ws);
    next_disconnected(&mut t, "/").await;
    assert_eq!(t.store.len(), 1);

    // The connect hook refuses: the session is put back.
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send(&format!(
        r#"40{{"pid":"{pid}","offset":"o-1","token":"bad"}}"#
    ))
    .await;
    assert!(ws.text().await.starts_with("44{"));
    assert_eq!(t.store.len(), 1);

    // The connection closes while the hook runs: put back too.
    let (mut gone, _) = ws_open(t.addr).await;
    gone.send(&format!(
        r#"40{{"pid":"{pid}","offset":"o-2","token":"slow"}}"#
    ))
    .await;
    gone.send("1").await;
    gone.closed().await;
    store_holds(&t, 1).await;

    // So the client still recovers.
    ws.send(&format!(r#"40{{"pid":"{pid}","offset":"o-3"}}"#))
        .await;
    assert_eq!(connect_reply(&ws.text().await, "40"), (sid, pid));
}

#[tokio::test]
async fn a_pid_presented_on_another_namespace_leaves_its_session_alone() {
    let mut t = spawn_with(config(), true).await;
    let (mut a, _) = ws_open(t.addr).await;
    a.send("40").await;
    let (sid, pid) = connect_reply(&a.text().await, "40");
    next_connected(&mut t).await;
    // While the socket is live: /custom gets a fresh socket, and "/" stays connected.
    let (mut b, _) = ws_open(t.addr).await;
    b.send(&format!(r#"40/custom,{{"pid":"{pid}","offset":"o-1"}}"#))
        .await;
    let (bsid, bpid) = connect_reply(&b.text().await, "40/custom,");
    assert!(bsid != sid && bpid != pid);
    a.send(r#"42["echo",1]"#).await;
    assert_eq!(a.text().await, r#"42["echo",1]"#);
    // After it dropped: the same, and the session stays in the store for "/".
    drop(a);
    next_disconnected(&mut t, "/").await;
    let (mut c, _) = ws_open(t.addr).await;
    c.send(&format!(r#"40/custom,{{"pid":"{pid}","offset":"o-2"}}"#))
        .await;
    let (csid, cpid) = connect_reply(&c.text().await, "40/custom,");
    assert!(csid != sid && cpid != pid);
    let (mut d, _) = ws_open(t.addr).await;
    d.send(&format!(r#"40{{"pid":"{pid}","offset":"o-3"}}"#))
        .await;
    assert_eq!(connect_reply(&d.text().await, "40"), (sid, pid));
}
