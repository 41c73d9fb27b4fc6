//! The server the interop tests (`crates/sio/interop/`) drive with stock clients: npm
//! `socket.io-client` v4 and PyPI `python-socketio`.
//!
//! Binds `127.0.0.1:$PORT` (0 = any free port) and prints `PORT=<port>` once listening.
//!
//! Namespace `/` (connection state recovery on, token required) and `/custom` (no auth):
//! * `echo(...args)`: answers through the ack if there is one, else emits `echo` with the same
//!   arguments (binary attachments included);
//! * `ask()`: emits `question` with an ack to the client, then emits `answer` with the reply;
//! * `publish(text)`: appends `text` to a log with the next offset and emits `msg(text)` with it;
//! * `drop-me(...texts)`: closes the connection, then publishes `texts` while the client is away,
//!   so a recovering client must get them replayed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sio::{
    Accept, Class, ConnectError, ConnectRequest, Event, Frame, MemoryStore, Namespace, Server,
    Socket,
};

#[derive(Default)]
struct Log {
    /// (offset, frame) of every published message, in order.
    entries: Mutex<Vec<(u64, Frame)>>,
}

impl Log {
    fn publish(&self, nsp: &str, text: &Value) -> Frame {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let offset = entries.len() as u64 + 1;
        let frame =
            Frame::event_with_offset(nsp, "msg", &(text,), &offset.to_string()).expect("encodes");
        entries.push((offset, frame.clone()));
        frame
    }

    fn after(&self, offset: &str) -> Vec<Frame> {
        let from: u64 = offset.parse().unwrap_or(0);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .iter()
            .filter(|(o, _)| *o > from)
            .map(|(_, f)| f.clone())
            .collect()
    }
}

struct App {
    require_token: bool,
    log: Arc<Log>,
}

impl Namespace for App {
    type Data = Option<String>;

    async fn connect(&self, req: ConnectRequest) -> Result<Accept<Option<String>>, ConnectError> {
        let token = req
            .auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if self.require_token && token.as_deref().is_none_or(|t| t == "bad") {
            return Err(ConnectError::with_data(
                "unauthorized",
                serde_json::json!({"code": "AUTH"}),
            ));
        }
        let replay = req
            .recovery
            .as_ref()
            .map(|r| self.log.after(&r.offset))
            .unwrap_or_default();
        Ok(Accept::new(token).with_replay(replay))
    }

    async fn event(&self, socket: Socket<Option<String>>, event: Event) {
        match event.name.as_str() {
            "echo" => {
                let sent = match (event.ack, event.binary.is_empty()) {
                    (Some(ack), true) => ack.send(&event.args),
                    (Some(ack), false) => ack.send_binary(&event.args, event.binary),
                    (None, true) => socket.emit("echo", &event.args),
                    (None, false) => {
                        Frame::binary_event(socket.nsp(), "echo", &event.args, event.binary)
                            .map_err(Into::into)
                            .and_then(|f| socket.send(&f, Class::Durable))
                    }
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "echo failed");
                }
            }
            "ask" => {
                let reply = socket
                    .emit_with_ack("question", &("ping?",), Duration::from_secs(5))
                    .await;
                let args = reply.map(|r| r.args).unwrap_or_default();
                let _ = socket.emit("answer", &args);
            }
            "publish" => {
                let text = event.args.first().cloned().unwrap_or(Value::Null);
                let frame = self.log.publish(socket.nsp(), &text);
                let _ = socket.send(&frame, Class::Durable);
            }
            "drop-me" => {
                socket.close_connection();
                for text in &event.args {
                    self.log.publish(socket.nsp(), text);
                }
            }
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let server = Server::builder()
        .namespace(
            "/",
            App {
                require_token: true,
                log: Arc::default(),
            },
        )
        .namespace(
            "/custom",
            App {
                require_token: false,
                log: Arc::default(),
            },
        )
        .recovery(Arc::new(MemoryStore::new(Duration::from_secs(120))))
        .build();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("PORT={}", listener.local_addr()?.port());
    server.serve(listener).await
}
