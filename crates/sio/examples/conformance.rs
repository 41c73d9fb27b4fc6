//! The server the official conformance suites expect, on port 3000 (or `$PORT`):
//!
//! * `/engine.io/`: a bare Engine.IO server echoing every message (`socketio/engine.io-protocol`);
//! * `/socket.io/`: a Socket.IO server (`socketio/socket.io-protocol`) that emits `auth` with the
//!   CONNECT payload on connection, answers `message` with `message-back` and `message-with-ack`
//!   with an ack of the same arguments, in `/` and `/custom`.
//!
//! Both use pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1,000,000 and a 1 s connect timeout.
//! See the crate README for how to run the suites.

use std::time::Duration;

use serde_json::Value;
use sio::{Accept, ConnectError, ConnectRequest, Event, Frame, Namespace, Server, Socket};

struct Echo;

impl Namespace for Echo {
    type Data = Value;

    async fn connect(&self, req: ConnectRequest) -> Result<Accept<Value>, ConnectError> {
        Ok(Accept::new(
            req.auth.unwrap_or_else(|| serde_json::json!({})),
        ))
    }

    async fn connected(&self, socket: Socket<Value>) {
        let _ = socket.emit("auth", &(socket.data(),));
    }

    async fn event(&self, socket: Socket<Value>, event: Event) {
        match event.name.as_str() {
            "message" => {
                let frame = if event.binary.is_empty() {
                    Frame::event(socket.nsp(), "message-back", &event.args)
                } else {
                    Frame::binary_event(socket.nsp(), "message-back", &event.args, event.binary)
                };
                if let Ok(frame) = frame {
                    let _ = socket.send(&frame, sio::Class::Durable);
                }
            }
            "message-with-ack" => {
                if let Some(ack) = event.ack {
                    let _ = if event.binary.is_empty() {
                        ack.send(&event.args)
                    } else {
                        ack.send_binary(&event.args, event.binary)
                    };
                }
            }
            _ => {}
        }
    }
}

struct Custom;

impl Namespace for Custom {
    type Data = Value;

    async fn connect(&self, req: ConnectRequest) -> Result<Accept<Value>, ConnectError> {
        Ok(Accept::new(
            req.auth.unwrap_or_else(|| serde_json::json!({})),
        ))
    }

    async fn connected(&self, socket: Socket<Value>) {
        let _ = socket.emit("auth", &(socket.data(),));
    }

    async fn event(&self, _socket: Socket<Value>, _event: Event) {}
}

fn config(path: &str) -> sio::Config {
    sio::Config {
        path: path.to_owned(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_millis(1000),
        // The suites' `waitFor` helper attaches its listener only after the previous message was
        // handled, so two frames arriving in one TCP read lose the second (e.g. the CONNECT reply and
        // the `auth` event). Nagle's algorithm keeps them apart, as the reference server's write
        // callbacks do.
        tcp_nodelay: false,
        ..sio::Config::default()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let engine = Server::builder()
        .config(config("/engine.io/"))
        .engine_echo()
        .build();
    let socketio = Server::builder()
        .config(config("/socket.io/"))
        .namespace("/", Echo)
        .namespace("/custom", Custom)
        .build();
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000u16);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    eprintln!("conformance server on http://localhost:{port} (/engine.io/ and /socket.io/)");
    socketio
        .serve_router(listener, socketio.router().merge(engine.router()))
        .await
}
