//! A Socket.IO v5 / Engine.IO v4 server on tokio and axum, built for many idle connections and cheap
//! fan-out.
//!
//! * **Transports**: WebSocket and HTTP long-polling, with the polling → WebSocket upgrade, the query
//!   checks and status codes of the reference server, and CORS for polling.
//! * **Socket.IO**: namespaces, an async connect hook that accepts (with typed per-socket data) or
//!   refuses (`CONNECT_ERROR {message, data?}`), events with binary attachments, acks both ways
//!   (server → client with a timeout), connection state recovery with a pluggable store.
//! * **Fan-out**: [`Frame`] encodes an event once into a shared buffer; [`Socket::send`] queues the
//!   same buffer on any number of connections. Each connection has a bounded queue with an overflow
//!   policy per [`Class`].
//! * **Lean**: one task per connection (no extra task or channel per socket), small WebSocket read
//!   buffers that grow on demand, handshake headers copied out of the HTTP connection's buffers.
//!
//! ```no_run
//! use sio::{Accept, ConnectError, ConnectRequest, Event, Namespace, Server, Socket};
//!
//! struct Chat;
//!
//! impl Namespace for Chat {
//!     type Data = String; // the user id
//!
//!     async fn connect(&self, req: ConnectRequest) -> Result<Accept<String>, ConnectError> {
//!         let token = req.auth.as_ref().and_then(|a| a.get("token")).and_then(|t| t.as_str());
//!         match token {
//!             Some(t) => Ok(Accept::new(t.to_owned())),
//!             None => Err(ConnectError::new("unauthorized")),
//!         }
//!     }
//!
//!     async fn event(&self, socket: Socket<String>, event: Event) {
//!         if let Some(ack) = event.ack {
//!             let _ = ack.send(&(serde_json::json!({"ok": true}),));
//!         } else {
//!             let _ = socket.emit("echo", &event.args);
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::builder().namespace("/", Chat).build();
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! server.serve(listener).await
//! # }
//! ```

mod config;
mod conn;
mod driver;
mod frame;
mod http;
mod recovery;
mod server;
mod sid;
mod socket;

pub use config::Config;
pub use conn::{DisconnectReason, Handshake, SendError};
pub use frame::{Class, Fanout, Frame};
pub use recovery::{MemoryStore, RecoveryStore, Session};
pub use server::{Server, ServerBuilder};
pub use sid::Sid;
pub use sio_core;
pub use socket::{
    Accept, AckError, AckResponse, AckSender, ConnectError, ConnectRequest, Event, Namespace,
    Recovery, Socket,
};

/// A boxed future, as [`RecoveryStore`] implementations return.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;
