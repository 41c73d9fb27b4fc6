//! Engine.IO v4 on the wire: handshake, query checks, both transports, the upgrade, heartbeats,
//! limits, and every way a client can get it wrong.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

#[tokio::test]
async fn polling_handshake_announces_the_configured_session() {
    let t = spawn(config()).await;
    let (sid, open) = polling_open(t.addr).await;
    assert_eq!(sid.len(), 20);
    assert_eq!(
        open,
        json!({"sid": sid, "upgrades": ["websocket"], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 10000})
    );
}

#[tokio::test]
async fn websocket_handshake_offers_no_upgrade() {
    let t = spawn(config()).await;
    let (_ws, open) = ws_open(t.addr).await;
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], json!(25000));
}

#[tokio::test]
async fn bad_queries_are_refused_with_the_reference_codes() {
    let t = spawn(config()).await;
    let cases = [
        ("GET", "/socket.io/?transport=polling", 5),
        ("GET", "/socket.io/?EIO=3&transport=polling", 5),
        ("GET", "/socket.io/?EIO=abc&transport=polling", 5),
        ("GET", "/socket.io/?EIO=4", 0),
        ("GET", "/socket.io/?EIO=4&transport=abc", 0),
        ("POST", "/socket.io/?EIO=4&transport=polling", 2),
        ("PUT", "/socket.io/?EIO=4&transport=polling", 2),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
        ),
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=not-a-sid",
            1,
        ),
        (
            "POST",
            "/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
        ),
        ("GET", "/socket.io/?EIO=4&transport=websocket", 3),
    ];
    for (method, path, code) in cases {
        let r = http(t.addr, method, path, "", &[]).await;
        assert_eq!(r.status, 400, "{method} {path}");
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["code"], json!(code), "{method} {path}: {body}");
    }
    let (sid, _) = polling_open(t.addr).await;
    let r = http(t.addr, "PUT", &format!("{EIO}&sid={sid}"), "", &[]).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn websocket_with_unknown_sid_is_refused() {
    let t = spawn(config()).await;
    let r = ws_raw(t.addr, "EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA").await;
    assert!(r.is_err(), "handshake must fail");
    let r = ws_raw(t.addr, "EIO=5&transport=websocket").await;
    assert!(r.is_err());
}

#[tokio::test]
async fn polling_answers_cors_preflight_and_reflects_the_origin() {
    let t = spawn(config()).await;
    let r = http(
        t.addr,
        "OPTIONS",
        EIO,
        "",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    let r = http(t.addr, "GET", EIO, "", &[("Origin", "https://app.example")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
}

#[tokio::test]
async fn cors_allow_list_is_enforced() {
    let t = spawn(sio::Config {
        cors_allowed_origins: Some(vec!["https://ok.example".into()]),
        ..config()
    })
    .await;
    let r = http(
        t.addr,
        "GET",
        EIO,
        "",
        &[("Origin", "https://evil.example")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = http(t.addr, "GET", EIO, "", &[("Origin", "https://ok.example")]).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
}

#[tokio::test]
async fn polling_carries_text_and_base64_binary_both_ways() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    // CONNECT, then a binary event split as text + base64 attachment in one payload.
    let r = post(
        t.addr,
        &sid,
        "40\x1e451-[\"echo\",{\"_placeholder\":true,\"num\":0}]\x1ebAQIDBA==",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let mut body = String::new();
    while !body.contains("451-") {
        let r = poll(t.addr, &sid).await;
        assert_eq!(r.status, 200);
        body.push_str(&r.body);
        body.push('\x1e');
    }
    let records: Vec<&str> = body.trim_end_matches('\x1e').split('\x1e').collect();
    assert!(records[0].starts_with("40{\"sid\":"), "{records:?}");
    let i = records.iter().position(|r| r.starts_with("451-")).unwrap();
    assert_eq!(records[i], r#"451-["echo",{"_placeholder":true,"num":0}]"#);
    assert_eq!(records[i + 1], "bAQIDBA==");
}

#[tokio::test]
async fn polling_post_of_an_invalid_packet_closes_the_session() {
    let t = spawn(config()).await;
    for bad in ["abc", "4", "9", "bnot-base64!", "40\x1e42[", ""] {
        let (sid, _) = polling_open(t.addr).await;
        let r = post(t.addr, &sid, bad).await;
        // "4" alone is a valid empty message at the Engine.IO level; Socket.IO then refuses it.
        assert!(r.status == 400 || r.status == 200, "{bad:?}: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = poll(t.addr, &sid).await;
        // The session is gone, or its last GET gets the close packet.
        assert!(r.status == 400 || r.body.ends_with('1'), "{bad:?}: {r:?}");
    }
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn polling_post_over_max_payload_is_refused_and_closes_the_session() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    let big = format!("4{}", "x".repeat(20_000));
    let r = post(t.addr, &sid, &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(poll(t.addr, &sid).await.status, 400);
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn overlapping_polls_close_the_session() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    let addr = t.addr;
    let s2 = sid.clone();
    let first = tokio::spawn(async move { poll(addr, &s2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = poll(t.addr, &sid).await;
    assert_eq!(second.status, 400);
    let first = first.await.unwrap();
    assert_eq!((first.status, first.body.as_str()), (200, "1"));
    assert_eq!(poll(t.addr, &sid).await.status, 400);
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn a_close_packet_ends_a_polling_session_and_its_pending_poll() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    let addr = t.addr;
    let s2 = sid.clone();
    let pending = tokio::spawn(async move { poll(addr, &s2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post(t.addr, &sid, "1").await.status, 200);
    let r = pending.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "6"));
    assert_eq!(poll(t.addr, &sid).await.status, 400);
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn a_close_packet_ends_a_websocket_session() {
    let t = spawn(config()).await;
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send("1").await;
    ws.closed().await;
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn websocket_frames_over_max_payload_close_the_connection() {
    let t = spawn(config()).await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    ws.send(&format!("42[\"echo\",\"{}\"]", "x".repeat(20_000)))
        .await;
    ws.closed().await;
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn unknown_engine_packet_types_close_the_websocket() {
    let t = spawn(config()).await;
    for bad in ["9", "abc", "", "0{}"] {
        let (mut ws, _) = ws_open(t.addr).await;
        ws.send(bad).await;
        ws.closed().await;
    }
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    assert_eq!(post(t.addr, &sid, "40").await.status, 200);
    let connect = poll(t.addr, &sid).await;
    assert!(connect.body.starts_with("40{"), "{connect:?}");

    // A poll is pending when the upgrade starts: the probe releases it with a noop.
    let addr = t.addr;
    let s2 = sid.clone();
    let pending = tokio::spawn(async move { poll(addr, &s2).await });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut ws = ws_raw(t.addr, &format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .unwrap();
    ws.send("2probe").await;
    assert_eq!(ws.text().await, "3probe");
    let r = pending.await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "6"));
    // A second WebSocket while upgrading is closed at once.
    let mut second = ws_raw(t.addr, &format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .unwrap();
    second.closed().await;
    ws.send("5").await;
    ws.send(r#"42["echo","over ws"]"#).await;
    assert_eq!(ws.text().await, r#"42["echo","over ws"]"#);
    // Polling is over for this session; so is any further WebSocket.
    assert_eq!(poll(t.addr, &sid).await.status, 400);
    assert_eq!(post(t.addr, &sid, "3").await.status, 400);
    let mut third = ws_raw(t.addr, &format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .unwrap();
    third.closed().await;
    ws.send(r#"42["echo",2]"#).await;
    assert_eq!(ws.text().await, r#"42["echo",2]"#);
}

#[tokio::test]
async fn an_upgrade_without_probe_falls_back_to_polling() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    let mut ws = ws_raw(t.addr, &format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .unwrap();
    ws.send("4nonsense").await;
    ws.closed().await;
    assert_eq!(post(t.addr, &sid, "40").await.status, 200);
    assert!(poll(t.addr, &sid).await.body.starts_with("40{"));
}

#[tokio::test(start_paused = true)]
async fn websocket_heartbeat_pings_and_times_out() {
    let t = spawn(sio::Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let (mut ws, _) = ws_connected(t.addr, "").await;
    for _ in 0..3 {
        assert_eq!(ws.text().await, "2");
        ws.send("3").await;
    }
    assert_eq!(ws.text().await, "2");
    // No pong this time.
    ws.closed().await;
    assert_eq!(t.server.session_count(), 0);
    let mut t = t;
    loop {
        if let Rec::Disconnected { reason, .. } = t.next().await {
            assert_eq!(reason, sio::DisconnectReason::PingTimeout);
            break;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn polling_heartbeat_pings_and_times_out() {
    let t = spawn(sio::Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let (sid, _) = polling_open(t.addr).await;
    for _ in 0..3 {
        let r = poll(t.addr, &sid).await;
        assert_eq!(r.body, "2");
        assert_eq!(post(t.addr, &sid, "3").await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(501)).await;
    assert_eq!(poll(t.addr, &sid).await.status, 400);
    t.assert_no_sessions().await;
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_sends_connect_is_closed_after_the_connect_timeout() {
    let t = spawn(sio::Config {
        connect_timeout: Duration::from_secs(3),
        ..config()
    })
    .await;
    let (mut ws, _) = ws_open(t.addr).await;
    let started = tokio::time::Instant::now();
    ws.closed().await;
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "closed by the connect timeout, not the heartbeat"
    );
    t.assert_no_sessions().await;
}

#[tokio::test(start_paused = true)]
async fn client_pings_close_the_session_and_pongs_still_work() {
    let t = spawn(sio::Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    // Normal heartbeat: the server pings, the client pongs, the session lives on.
    let (sid, _) = polling_open(t.addr).await;
    for _ in 0..2 {
        assert_eq!(poll(t.addr, &sid).await.body, "2");
        assert_eq!(post(t.addr, &sid, "3").await.status, 200);
    }
    // A client that pings (the wrong direction) without ever polling would grow the send queue
    // with pongs: the session is closed instead, and nothing is queued for it.
    let pings = vec!["2xxxx"; 500].join("\x1e");
    let r = post(t.addr, &sid, &pings).await;
    assert!(r.status == 200 || r.status == 400, "{r:?}");
    t.assert_no_sessions().await;
    assert_eq!(poll(t.addr, &sid).await.status, 400);

    // Same over a WebSocket.
    let (mut ws, _) = ws_open(t.addr).await;
    ws.send("2hello").await;
    ws.closed().await;
    t.assert_no_sessions().await;
}

#[tokio::test]
async fn the_polling_mailbox_is_capped_in_bytes_while_the_handler_is_busy() {
    let t = spawn(config()).await;
    let (sid, _) = polling_open(t.addr).await;
    // The handler never returns, and 40 more packets wait: 32 are taken as pending, the rest
    // stays in the mailbox, and so does everything posted from now on.
    let mut first = vec![r#"40"#, r#"42["hang"]"#];
    first.extend(std::iter::repeat_n(r#"42["x"]"#, 40));
    assert_eq!(post(t.addr, &sid, &first.join("\x1e")).await.status, 200);
    // maxPayload is 10 000: two bodies of 8 000 bytes fit in 2 × maxPayload, a third does not.
    let big = format!(r#"42["x","{}"]"#, "a".repeat(8_000));
    assert_eq!(post(t.addr, &sid, &big).await.status, 200);
    assert_eq!(post(t.addr, &sid, &big).await.status, 200);
    assert_eq!(post(t.addr, &sid, &big).await.status, 413);
    assert_eq!(poll(t.addr, &sid).await.status, 400);
    t.assert_no_sessions().await;
}
