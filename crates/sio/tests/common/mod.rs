//! Test harness: a real server on port 0, a raw WebSocket client and a raw HTTP/1.1 client, so the
//! tests see exactly the frames on the wire.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sio::{
    Accept, Class, Config, ConnectError, ConnectRequest, DisconnectReason, Event, Frame, Namespace,
    Server, Socket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What the test namespace saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Rec {
    Connected {
        nsp: String,
        id: String,
        auth: Option<Value>,
        recovered: Option<String>,
    },
    Event {
        nsp: String,
        name: String,
        args: Vec<Value>,
        binary: Vec<Bytes>,
    },
    Disconnected {
        nsp: String,
        reason: DisconnectReason,
    },
    Answer(Result<Vec<Value>, String>),
}

/// The namespace every test uses: records everything, echoes `echo`, answers `ack` (and `ack-none`
/// with no arguments), asks the client on `ask`, never returns from `hang`, refuses the token
/// `bad`, replays one frame (or `auth.replay` frames) on recovery, keeps its sockets for the test.
pub struct TestNs {
    pub tx: mpsc::UnboundedSender<Rec>,
    pub sockets: Arc<std::sync::Mutex<Vec<Socket<Data>>>>,
}

pub struct Data {
    pub auth: Option<Value>,
    pub recovered: Option<String>,
}

impl Namespace for TestNs {
    type Data = Data;

    async fn connect(&self, req: ConnectRequest) -> Result<Accept<Data>, ConnectError> {
        let token = req
            .auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str);
        if token == Some("bad") {
            return Err(ConnectError::with_data(
                "unauthorized",
                json!({"code": "AUTH"}),
            ));
        }
        if token == Some("slow") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let recovered = req.recovery.as_ref().map(|r| r.offset.clone());
        // One replayed frame, or `auth.replay` of them.
        let count = req
            .auth
            .as_ref()
            .and_then(|a| a.get("replay"))
            .and_then(Value::as_u64)
            .unwrap_or(1);
        let replay = match &req.recovery {
            Some(r) => (0..count)
                .map(|_| {
                    Frame::event_with_offset(
                        &req.nsp,
                        "replayed",
                        &(r.offset.as_str(), &r.state),
                        "o-9",
                    )
                    .unwrap()
                })
                .collect(),
            None => vec![],
        };
        Ok(Accept::new(Data {
            auth: req.auth,
            recovered,
        })
        .with_replay(replay))
    }

    async fn connected(&self, socket: Socket<Data>) {
        let _ = self.tx.send(Rec::Connected {
            nsp: socket.nsp().to_owned(),
            id: socket.id().to_string(),
            auth: socket.data().auth.clone(),
            recovered: socket.data().recovered.clone(),
        });
        self.sockets.lock().unwrap().push(socket);
    }

    async fn event(&self, socket: Socket<Data>, event: Event) {
        let _ = self.tx.send(Rec::Event {
            nsp: socket.nsp().to_owned(),
            name: event.name.clone(),
            args: event.args.clone(),
            binary: event.binary.clone(),
        });
        match event.name.as_str() {
            "echo" => {
                let frame = if event.binary.is_empty() {
                    Frame::event(socket.nsp(), "echo", &event.args).unwrap()
                } else {
                    Frame::binary_event(socket.nsp(), "echo", &event.args, event.binary).unwrap()
                };
                let _ = socket.send(&frame, Class::Durable);
            }
            "ack" => {
                // Refused only when the connection is gone (or closed for not reading).
                if let Some(ack) = event.ack {
                    let _ = if event.binary.is_empty() {
                        ack.send(&event.args)
                    } else {
                        ack.send_binary(&event.args, event.binary)
                    };
                }
            }
            "ask" => {
                let r = socket
                    .emit_with_ack("question", &(1, "two"), Duration::from_secs(2))
                    .await;
                let _ = self
                    .tx
                    .send(Rec::Answer(r.map(|a| a.args).map_err(|e| e.to_string())));
            }
            "kick" => socket.disconnect(),
            // Answers with no arguments.
            "ack-none" => {
                if let Some(ack) = event.ack {
                    ack.send(&()).unwrap();
                }
            }
            // Keeps the connection's handler busy for good.
            "hang" => std::future::pending::<()>().await,
            _ => {}
        }
    }

    async fn disconnect(&self, socket: Socket<Data>, reason: DisconnectReason) {
        let _ = self.tx.send(Rec::Disconnected {
            nsp: socket.nsp().to_owned(),
            reason,
        });
    }

    fn recovery_state(&self, socket: &Socket<Data>) -> Value {
        json!({"was": socket.id().to_string()})
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub server: Server,
    pub rx: mpsc::UnboundedReceiver<Rec>,
    pub sockets: Arc<std::sync::Mutex<Vec<Socket<Data>>>>,
    pub store: Arc<sio::MemoryStore>,
}

/// The test configuration: long heartbeats (tests that need them shorten them).
pub fn config() -> Config {
    Config {
        ping_interval: Duration::from_secs(25),
        ping_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(45),
        max_payload: 10_000,
        ..Config::default()
    }
}

pub async fn spawn(cfg: Config) -> TestServer {
    spawn_with(cfg, false).await
}

pub async fn spawn_with(cfg: Config, recovery: bool) -> TestServer {
    spawn_inner(cfg, recovery, Arc::new(sio::MemoryStore::default())).await
}

/// A server with recovery on, using `store` (share it between servers to test recovery across them).
pub async fn spawn_store(cfg: Config, store: Arc<sio::MemoryStore>) -> TestServer {
    spawn_inner(cfg, true, store).await
}

async fn spawn_inner(cfg: Config, recovery: bool, store: Arc<sio::MemoryStore>) -> TestServer {
    let (tx, rx) = mpsc::unbounded_channel();
    let sockets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut b = Server::builder()
        .config(cfg)
        .namespace(
            "/",
            TestNs {
                tx: tx.clone(),
                sockets: sockets.clone(),
            },
        )
        .namespace(
            "/custom",
            TestNs {
                tx,
                sockets: sockets.clone(),
            },
        );
    if recovery {
        b = b.recovery(store.clone());
    }
    let server = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve(listener).await });
    TestServer {
        addr,
        server,
        rx,
        sockets,
        store,
    }
}

impl TestServer {
    pub async fn next(&mut self) -> Rec {
        tokio::time::timeout(Duration::from_secs(10), self.rx.recv())
            .await
            .expect("a record in time")
            .expect("open")
    }

    /// Waits until the session table is empty (no leaked connection).
    pub async fn assert_no_sessions(&self) {
        for _ in 0..200 {
            if self.server.session_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} sessions left", self.server.session_count());
    }
}

// ---------------------------------------------------------------- WebSocket client

pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

#[derive(Debug, PartialEq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Closed,
}

pub async fn ws_raw(
    addr: SocketAddr,
    query: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = format!("ws://{addr}/socket.io/?{query}");
    let (inner, _) = tokio_tungstenite::connect_async(url).await?;
    Ok(Ws { inner })
}

/// A WebSocket session past the Engine.IO handshake; returns the open packet's JSON too.
pub async fn ws_open(addr: SocketAddr) -> (Ws, Value) {
    let mut ws = ws_raw(addr, "EIO=4&transport=websocket").await.unwrap();
    let open = ws.text().await;
    let json: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet")).unwrap();
    (ws, json)
}

/// A WebSocket session connected to namespace `/` with `auth`.
pub async fn ws_connected(addr: SocketAddr, auth: &str) -> (Ws, String) {
    let (mut ws, _) = ws_open(addr).await;
    ws.send(&format!("40{auth}")).await;
    let reply = ws.text().await;
    let v: Value = serde_json::from_str(reply.strip_prefix("40").expect("connect reply")).unwrap();
    (ws, v["sid"].as_str().unwrap().to_owned())
}

impl Ws {
    pub async fn send(&mut self, text: &str) {
        self.inner.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.inner
            .send(Message::binary(data.to_vec()))
            .await
            .unwrap();
    }

    pub async fn recv(&mut self) -> Got {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.inner.next())
                .await
                .expect("a frame in time");
            return match m {
                Some(Ok(Message::Text(t))) => Got::Text(t.to_string()),
                Some(Ok(Message::Binary(b))) => Got::Binary(b.to_vec()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Got::Closed,
                Some(Ok(_)) => continue,
            };
        }
    }

    pub async fn text(&mut self) -> String {
        match self.recv().await {
            Got::Text(t) => t,
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Asserts the server closes the connection (after any frames still in flight).
    pub async fn closed(&mut self) {
        loop {
            match self.recv().await {
                Got::Closed => return,
                Got::Text(t) if t == "2" => continue,
                other => panic!("expected close, got {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------- HTTP client

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on its own connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("response in time");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub const EIO: &str = "/socket.io/?EIO=4&transport=polling";

/// Opens a polling session; returns its sid and open packet.
pub async fn polling_open(addr: SocketAddr) -> (String, Value) {
    let r = http(addr, "GET", EIO, "", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(r.body.strip_prefix('0').unwrap()).unwrap();
    (v["sid"].as_str().unwrap().to_owned(), v)
}

pub async fn poll(addr: SocketAddr, sid: &str) -> Resp {
    http(addr, "GET", &format!("{EIO}&sid={sid}"), "", &[]).await
}

pub async fn post(addr: SocketAddr, sid: &str, body: &str) -> Resp {
    http(addr, "POST", &format!("{EIO}&sid={sid}"), body, &[]).await
}
