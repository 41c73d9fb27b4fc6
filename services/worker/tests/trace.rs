//! One message, one trace, through the real path: a Socket.IO client sends on gateway A (span
//! `chat.send`), the room script carries its `traceparent` into the stream envelope and, as `tp`, into
//! the published event; gateways A and B deliver it in `chat.fanout` spans that are children of
//! `chat.send`; the real worker persists it in a `chat.persist_batch` span linked to `chat.send`. The
//! spans are exported by the real OTLP/HTTP exporter to a receiver in this test, which decodes them.
//! The same for a message sent over the API's REST endpoint, whose request span starts the trace.
//!
//! A test binary of its own: the tracing subscriber is global to the process.
#![allow(clippy::unwrap_used)]

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use chat_config::{Config, LogFormat};
use futures_util::{SinkExt as _, StreamExt as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;
use uuid::Uuid;

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace: String,
    id: String,
    parent: String,
    links: Vec<(String, String)>,
    attrs: HashMap<String, String>,
}

type Received = Arc<Mutex<Vec<Got>>>;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// POST /v1/traces: OTLP/HTTP protobuf.
async fn receive(State(got): State<Received>, body: Bytes) -> &'static [u8] {
    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf request");
    let mut out = got.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                let attrs = s
                    .attributes
                    .iter()
                    .map(|kv| {
                        let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(AnyValue::StringValue(s)) => s.clone(),
                            Some(AnyValue::IntValue(i)) => i.to_string(),
                            Some(other) => format!("{other:?}"),
                            None => String::new(),
                        };
                        (kv.key.clone(), v)
                    })
                    .collect();
                out.push(Got {
                    service: service.clone(),
                    name: s.name,
                    trace: hex(&s.trace_id),
                    id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    links: s
                        .links
                        .iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    attrs,
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    b""
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A bare Socket.IO v5 client over one WebSocket.
struct Client {
    ws: WsStream,
    /// Events received while waiting for something else.
    events: Vec<String>,
}

impl Client {
    async fn connect(port: u16, token: &str) -> Self {
        let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        ws.send(Ws::text(format!(r#"40{{"token":"{token}"}}"#)))
            .await
            .unwrap();
        let mut c = Self {
            ws,
            events: Vec::new(),
        };
        let connected = c
            .wait_for(|t| t.starts_with("40") || t.starts_with("44"))
            .await;
        assert!(connected.starts_with("40{"), "connect refused: {connected}");
        c
    }

    /// The next text packet matching `want` (answering heartbeats, keeping events), within 10 s.
    async fn wait_for(&mut self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .expect("a packet within 10 s")
                .expect("socket open")
                .unwrap();
            let Ws::Text(t) = frame else { continue };
            let t = t.as_str().to_owned();
            if t == "2" {
                self.ws.send(Ws::text("3")).await.unwrap();
            } else if want(&t) {
                return t;
            } else if t.starts_with("42") {
                self.events.push(t);
            }
        }
    }

    /// Emits `event` with ack id `id`; returns the ack's first argument.
    async fn call(&mut self, id: u32, event: &str, data: Value) -> Value {
        let packet = format!("42{id}{}", serde_json::json!([event, data]));
        self.ws.send(Ws::text(packet)).await.unwrap();
        let prefix = format!("43{id}[");
        let ack = self.wait_for(|t| t.starts_with(&prefix)).await;
        let args: Value = serde_json::from_str(&ack[prefix.len() - 1..]).unwrap();
        args[0].clone()
    }

    /// The payload of the next `event` (already received, or arriving within 10 s).
    async fn event(&mut self, event: &str) -> Value {
        let prefix = format!("42[\"{event}\"");
        let text = match self.events.iter().position(|t| t.starts_with(&prefix)) {
            Some(i) => self.events.remove(i),
            None => self.wait_for(|t| t.starts_with(&prefix)).await,
        };
        let args: Value = serde_json::from_str(&text[2..]).unwrap();
        args[1].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_from_the_gateway_through_the_worker_and_the_fan_out() {
    // The collector.
    let got: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(Arc::clone(&got));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let settings = chat_telemetry::OtelSettings::from_lookup("chat-e2e", |k| {
        (k == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| format!("http://127.0.0.1:{collector}"))
    });
    chat_telemetry::init_with("chat-e2e", LogFormat::Text, &settings);
    assert!(chat_telemetry::enabled(), "export is on");

    // MySQL, Redis, two users in one room; the worker and two gateways in this process.
    let env = chat_testkit::TestEnv::new()
        .await
        .expect("test database (run scripts/deps.sh)");
    let store = env.store().await.unwrap();
    let seeded = chat_testkit::seed_users_and_rooms(&store, 2, 1, true)
        .await
        .unwrap();
    let (alice, bob, room) = (seeded.users[0], seeded.users[1], seeded.rooms[0]);
    let config = |extra: &[(&str, &str)]| {
        let mut vars: HashMap<String, String> = env.vars().into_iter().collect();
        for (k, v) in [
            ("BIND_HOST", "127.0.0.1"),
            ("GATEWAY_PORT", "0"),
            ("WORKER_PORT", "0"),
            ("API_PORT", "0"),
            ("WORKER_CONSUMER", "w"),
        ]
        .iter()
        .chain(extra)
        {
            vars.insert((*k).into(), (*v).into());
        }
        Config::from_map(&vars).unwrap()
    };
    let mut stops = Vec::new();
    let worker = chat_worker::Application::build(config(&[])).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    stops.push(tx);
    let worker = tokio::spawn(worker.run_until(async move {
        let _ = rx.await;
    }));
    let mut ports = Vec::new();
    let mut gateways = Vec::new();
    for id in ["gw-a", "gw-b"] {
        let gw = chat_gateway::Application::build(config(&[("GATEWAY_ID", id)]))
            .await
            .unwrap();
        ports.push(gw.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        gateways.push(tokio::spawn(gw.run(async move {
            let _ = rx.await;
        })));
    }
    let api = chat_api::Application::build(config(&[])).await.unwrap();
    let api_port = api.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    stops.push(tx);
    let api = tokio::spawn(api.run_until(async move {
        let _ = rx.await;
    }));
    let cfg = config(&[]);
    let keys = chat_auth::TokenKeys::new(cfg.jwt_secret.expose().as_bytes(), cfg.access_token_ttl);
    let token = |u: Uuid| keys.issue(u, chrono::Utc::now()).unwrap().0;

    // Alice on gateway A, Bob on gateway B, both in the room; Alice sends.
    let mut a = Client::connect(ports[0], &token(alice)).await;
    let mut b = Client::connect(ports[1], &token(bob)).await;
    for c in [&mut a, &mut b] {
        let ack = c
            .call(0, "join_room", serde_json::json!({"roomId": room}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = a
        .call(
            1,
            "send_message",
            serde_json::json!({"roomId": room, "content": "secret words"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let id = ack["message"]["id"].as_str().unwrap().to_owned();
    let delivered = b.event("receive_message").await;
    assert_eq!(delivered["id"], id.as_str(), "{delivered}");
    assert_eq!(a.event("receive_message").await["id"], id.as_str());

    // Bob over REST.
    let res = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{api_port}/api/v1/rooms/{room}/messages"
        ))
        .bearer_auth(token(bob))
        .json(&serde_json::json!({"content": "more secret words"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let rest_id = res.json::<Value>().await.unwrap()["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a.event("receive_message").await["id"], rest_id.as_str());
    assert_eq!(b.event("receive_message").await["id"], rest_id.as_str());

    // The worker stores both.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in [&id, &rest_id] {
        while store
            .message(Uuid::parse_str(id).unwrap())
            .await
            .unwrap()
            .is_none()
        {
            assert!(Instant::now() < deadline, "the worker stored the messages");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The spans: flush until the collector has the send, both fan-outs and the batch.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        tokio::task::spawn_blocking(chat_telemetry::flush)
            .await
            .unwrap();
        let spans = got.lock().unwrap().clone();
        let n = |name: &str| spans.iter().filter(|s| s.name == name).count();
        let linked = |s: &Got| {
            spans
                .iter()
                .filter(|b| b.name == "chat.persist_batch")
                .any(|b| b.links.contains(&(s.trace.clone(), s.id.clone())))
        };
        let sends_linked = spans
            .iter()
            .filter(|s| s.name == "chat.send" || s.name.ends_with("/messages"))
            .filter(|s| linked(s))
            .count();
        if n("chat.send") >= 1 && n("chat.fanout") >= 4 && sends_linked >= 2 {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans exported; so far: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let send: Vec<&Got> = spans.iter().filter(|s| s.name == "chat.send").collect();
    assert_eq!(send.len(), 1, "{send:#?}");
    let send = send[0];
    assert_eq!(send.service, "chat-e2e");
    assert_eq!(
        send.parent, "",
        "chat.send is the root of the message's trace"
    );
    assert_eq!(send.attrs.get("room"), Some(&room.to_string()), "{send:?}");
    assert_eq!(send.attrs.get("user"), Some(&alice.to_string()), "{send:?}");
    assert!(
        !format!("{spans:?}").contains("secret words"),
        "message content is never a span attribute"
    );

    // Both gateways' fan-outs continue the trace, as children of chat.send.
    let fanouts: Vec<&Got> = spans
        .iter()
        .filter(|s| s.name == "chat.fanout" && s.trace == send.trace)
        .collect();
    let mut gws: Vec<&str> = fanouts
        .iter()
        .map(|f| f.attrs.get("gateway").map_or("", String::as_str))
        .collect();
    gws.sort_unstable();
    assert_eq!(gws, ["gw-a", "gw-b"], "{fanouts:#?}");
    for f in &fanouts {
        assert_eq!(
            (f.trace.as_str(), f.parent.as_str()),
            (send.trace.as_str(), send.id.as_str()),
            "{f:?}"
        );
        assert_eq!(f.attrs.get("room"), Some(&room.to_string()));
        assert_eq!(f.attrs.get("sockets").map(String::as_str), Some("1"));
    }

    // The worker's batch is a trace of its own, linked to the send.
    let batch: Vec<&Got> = spans
        .iter()
        .filter(|s| s.name == "chat.persist_batch")
        .filter(|s| s.links.contains(&(send.trace.clone(), send.id.clone())))
        .collect();
    assert_eq!(
        batch.len(),
        1,
        "a batch span links to chat.send: {spans:#?}"
    );
    assert_ne!(batch[0].trace, send.trace);
    assert_eq!(batch[0].parent, "");

    // Over REST: the API's request span (named after the route) starts the trace.
    let request: Vec<&Got> = spans
        .iter()
        .filter(|s| s.name == "POST /api/v1/rooms/{id}/messages")
        .collect();
    assert_eq!(request.len(), 1, "{spans:#?}");
    let request = request[0];
    assert_eq!(
        request.attrs.get("http.route").map(String::as_str),
        Some("/api/v1/rooms/{id}/messages")
    );
    assert_eq!(
        request.attrs.get("http.status_code").map(String::as_str),
        Some("201")
    );
    let mut gws: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "chat.fanout" && s.trace == request.trace)
        .inspect(|f| assert_eq!(f.parent, request.id, "{f:?}"))
        .map(|f| f.attrs.get("gateway").map_or("", String::as_str))
        .collect();
    gws.sort_unstable();
    assert_eq!(gws, ["gw-a", "gw-b"]);
    assert!(
        spans
            .iter()
            .filter(|s| s.name == "chat.persist_batch")
            .any(|b| b
                .links
                .contains(&(request.trace.clone(), request.id.clone()))),
        "a batch links to the REST request"
    );

    for s in stops {
        let _ = s.send(());
    }
    worker.await.unwrap().unwrap();
    api.await.unwrap().unwrap();
    drop((a, b));
    for g in gateways {
        let _ = tokio::time::timeout(Duration::from_secs(15), g).await;
    }
    tokio::task::spawn_blocking(chat_telemetry::shutdown)
        .await
        .unwrap();
}
