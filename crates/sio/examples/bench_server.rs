//! The server side of the connection benchmarks in `docs/BENCHMARKS.md` (run by
//! `crates/sio/bench/conn-bench.sh`).
//!
//! Clients CONNECT with `{token}` (refused without one), then emit `join` to enter the one room.
//! `fanout` (with an ack) encodes one frame and queues it on every socket of the room, and acks
//! with the nanoseconds the send loop took. Heartbeat settings come from `PING_INTERVAL_MS` /
//! `PING_TIMEOUT_MS` (defaults 25000 / 20000). Prints `PORT=<port>` once listening.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use sio::{
    Accept, Class, ConnectError, ConnectRequest, DisconnectReason, Event, Frame, Namespace, Server,
    Socket,
};

#[derive(Default)]
struct Bench {
    room: Mutex<Vec<Socket<Box<str>>>>,
}

impl Namespace for Bench {
    type Data = Box<str>;

    async fn connect(&self, req: ConnectRequest) -> Result<Accept<Box<str>>, ConnectError> {
        match req
            .auth
            .as_ref()
            .and_then(|a| a.get("token"))
            .and_then(Value::as_str)
        {
            Some(t) => Ok(Accept::new(t.into())),
            None => Err(ConnectError::new("unauthorized")),
        }
    }

    async fn event(&self, socket: Socket<Box<str>>, event: Event) {
        match event.name.as_str() {
            "join" => self
                .room
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(socket),
            "fanout" => {
                let seq = event.args.first().cloned().unwrap_or(Value::Null);
                let frame = Frame::event("/", "tick", &(seq,)).expect("encodes");
                let room = self.room.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let start = Instant::now();
                for s in &room {
                    let _ = s.send(&frame, Class::Durable);
                }
                let ns = start.elapsed().as_nanos() as u64;
                if let Some(ack) = event.ack {
                    let _ = ack.send(&(ns, room.len()));
                }
            }
            _ => {}
        }
    }

    async fn disconnect(&self, socket: Socket<Box<str>>, _reason: DisconnectReason) {
        let mut room = self.room.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = room.iter().position(|s| s.id() == socket.id()) {
            room.swap_remove(i);
        }
    }
}

fn env_ms(key: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

fn main() -> std::io::Result<()> {
    let threads = std::env::var("WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(async {
            let server = Server::builder()
                .ping_interval(env_ms("PING_INTERVAL_MS", 25_000))
                .ping_timeout(env_ms("PING_TIMEOUT_MS", 20_000))
                .namespace("/", Bench::default())
                .build();
            let port: u16 = std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            println!("PORT={}", listener.local_addr()?.port());
            server.serve(listener).await
        })
}
