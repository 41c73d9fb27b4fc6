//! Server configuration.

use std::time::Duration;

/// Tunables of a [`crate::Server`]. Every field has a production default ([`Config::default`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// The path the server answers on, with a trailing slash (default `/socket.io/`).
    pub path: String,
    /// Engine.IO `pingInterval`: how long after a pong the server sends the next ping (default 25 s).
    pub ping_interval: Duration,
    /// Engine.IO `pingTimeout`: how long the client has to answer a ping (default 20 s).
    pub ping_timeout: Duration,
    /// Engine.IO `maxPayload` in bytes: the largest WebSocket message and the largest polling body
    /// (default 1,000,000).
    pub max_payload: usize,
    /// How long a fresh connection may stay without a namespace before it is closed (default 45 s).
    pub connect_timeout: Duration,
    /// How long a polling → WebSocket upgrade may take between the WebSocket opening and the client's
    /// `5` packet (default 10 s).
    pub upgrade_timeout: Duration,
    /// Capacity of each connection's send queue, in frames (default 256). See [`crate::Class`] for the
    /// overflow policy.
    pub queue_capacity: usize,
    /// How long a write to a WebSocket may block (a client that does not read) before the connection
    /// is dropped (default 10 s).
    pub write_timeout: Duration,
    /// Bytes read from a WebSocket at a time, and the initial size of its read buffer (default 256).
    /// The buffer grows on demand for larger messages; keeping this small is what keeps idle
    /// connections cheap.
    pub ws_read_buffer_size: usize,
    /// Outgoing bytes a WebSocket batches before writing to the socket (default 16 KiB). This is a
    /// threshold, not an allocation.
    pub ws_write_buffer_size: usize,
    /// Allowed origins for cross-origin polling requests. `None` (the default) reflects any origin;
    /// `Some(list)` allows only those.
    pub cors_allowed_origins: Option<Vec<String>>,
    /// Whether to offer the polling → WebSocket upgrade (default true).
    pub allow_upgrades: bool,
    /// Whether [`crate::Server::serve`] sets `TCP_NODELAY` on accepted sockets (default true: small
    /// frames go out at once instead of waiting for the client's delayed ACK).
    pub tcp_nodelay: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            path: "/socket.io/".to_owned(),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            upgrade_timeout: Duration::from_secs(10),
            queue_capacity: 256,
            write_timeout: Duration::from_secs(10),
            ws_read_buffer_size: 256,
            ws_write_buffer_size: 16 * 1024,
            cors_allowed_origins: None,
            allow_upgrades: true,
            tcp_nodelay: true,
        }
    }
}
