//! The server: builder, session table, router, serve and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::routing::any;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::config::Config;
use crate::conn::{Conn, In};
use crate::recovery::RecoveryStore;
use crate::sid::Sid;
use crate::socket::{AnySocket, ErasedNamespace, Namespace, NamespaceAdapter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    SocketIo,
    /// A bare Engine.IO server echoing every message (conformance testing).
    EngineEcho,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) mode: Mode,
    pub(crate) namespaces: HashMap<String, (Arc<str>, Arc<dyn ErasedNamespace>)>,
    pub(crate) recovery: Option<Arc<dyn RecoveryStore>>,
    sessions: Mutex<HashMap<Sid, Arc<Conn>>>,
    live: AtomicUsize,
    drained: Notify,
    pub(crate) shutting_down: AtomicBool,
    shutdown_started: Notify,
    /// With recovery on: the sockets connected here, by private id, so that a client presenting the
    /// pid of a socket still live here (its old transport not yet noticed dead) is not handed that
    /// socket's session.
    live_pids: Mutex<HashMap<Sid, Weak<dyn AnySocket>>>,
}

impl Shared {
    pub(crate) fn insert_session(&self, conn: Arc<Conn>) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(conn.sid, conn);
    }

    pub(crate) fn remove_session(&self, sid: Sid) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sid);
    }

    pub(crate) fn register_live(&self, pid: Sid, socket: &Arc<dyn AnySocket>) {
        self.live_pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pid, Arc::downgrade(socket));
    }

    /// The socket with private id `pid`, if it is connected here.
    pub(crate) fn live_socket(&self, pid: Sid) -> Option<Arc<dyn AnySocket>> {
        self.live_pids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pid)
            .and_then(Weak::upgrade)
    }

    /// `socket` is gone: forget it (unless its pid now belongs to a newer socket).
    pub(crate) fn unregister_live(&self, socket: &Arc<dyn AnySocket>) {
        let Some(pid) = socket.core().pid else { return };
        let mut live = self.live_pids.lock().unwrap_or_else(|e| e.into_inner());
        if live
            .get(&pid)
            .is_some_and(|w| std::ptr::addr_eq(w.as_ptr(), Arc::as_ptr(socket)))
        {
            live.remove(&pid);
        }
    }

    pub(crate) fn session(&self, sid: Sid) -> Option<Arc<Conn>> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sid)
            .cloned()
    }
}

/// Counts a live connection driver; the last one out wakes [`Server::shutdown`].
pub(crate) struct LiveGuard(Arc<Shared>);

impl LiveGuard {
    pub(crate) fn new(shared: &Arc<Shared>) -> Self {
        shared.live.fetch_add(1, Ordering::AcqRel);
        Self(shared.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Builds a [`Server`].
pub struct ServerBuilder {
    config: Config,
    mode: Mode,
    namespaces: HashMap<String, (Arc<str>, Arc<dyn ErasedNamespace>)>,
    recovery: Option<Arc<dyn RecoveryStore>>,
}

impl ServerBuilder {
    /// Replaces the whole configuration.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Engine.IO `pingInterval`.
    #[must_use]
    pub fn ping_interval(mut self, d: Duration) -> Self {
        self.config.ping_interval = d;
        self
    }

    /// Engine.IO `pingTimeout`.
    #[must_use]
    pub fn ping_timeout(mut self, d: Duration) -> Self {
        self.config.ping_timeout = d;
        self
    }

    /// Engine.IO `maxPayload`, in bytes.
    #[must_use]
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// How long a connection may stay without any namespace.
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// Per-connection send queue capacity, in frames.
    #[must_use]
    pub fn queue_capacity(mut self, frames: usize) -> Self {
        self.config.queue_capacity = frames;
        self
    }

    /// The HTTP path (default `/socket.io/`).
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// Turns connection state recovery on, with `store` keeping disconnected sessions.
    #[must_use]
    pub fn recovery(mut self, store: Arc<dyn RecoveryStore>) -> Self {
        self.recovery = Some(store);
        self
    }

    /// Registers the handler of namespace `name` (e.g. `/` or `/admin`). CONNECTs to namespaces
    /// without a handler are refused with `Invalid namespace`.
    #[must_use]
    pub fn namespace<N: Namespace>(mut self, name: impl Into<String>, handler: N) -> Self {
        let name = name.into();
        let shared_name: Arc<str> = Arc::from(name.as_str());
        let handler: Arc<dyn ErasedNamespace> = Arc::new(NamespaceAdapter(Arc::new(handler)));
        self.namespaces.insert(name, (shared_name, handler));
        self
    }

    /// Makes a bare Engine.IO server that echoes every message back (for the Engine.IO conformance
    /// suite); namespaces are ignored.
    #[doc(hidden)]
    #[must_use]
    pub fn engine_echo(mut self) -> Self {
        self.mode = Mode::EngineEcho;
        self
    }

    /// Builds the server.
    pub fn build(self) -> Server {
        Server {
            shared: Arc::new(Shared {
                config: self.config,
                mode: self.mode,
                namespaces: self.namespaces,
                recovery: self.recovery,
                sessions: Mutex::new(HashMap::new()),
                live: AtomicUsize::new(0),
                drained: Notify::new(),
                shutting_down: AtomicBool::new(false),
                shutdown_started: Notify::new(),
                live_pids: Mutex::new(HashMap::new()),
            }),
        }
    }
}

/// A Socket.IO server. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Server {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("path", &self.shared.config.path)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts building a server with the default [`Config`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: Config::default(),
            mode: Mode::SocketIo,
            namespaces: HashMap::new(),
            recovery: None,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// An axum router serving the configured path (with and without its trailing slash). Merge it
    /// with the application's own routes.
    pub fn router(&self) -> Router {
        let path = self.shared.config.path.clone();
        let trimmed = path.trim_end_matches('/').to_owned();
        let mut router = Router::new().route(&path, any(crate::http::handle));
        if !trimmed.is_empty() && trimmed != path {
            router = router.route(&trimmed, any(crate::http::handle));
        }
        router.with_state(self.shared.clone())
    }

    /// Serves [`Server::router`] on `listener` until [`Server::shutdown`] is called.
    ///
    /// # Errors
    /// An I/O error of the listener.
    pub async fn serve(&self, listener: TcpListener) -> std::io::Result<()> {
        self.serve_router(listener, self.router()).await
    }

    /// Serves `router` (which should include [`Server::router`]) on `listener` until
    /// [`Server::shutdown`] is called. Accepted sockets get `TCP_NODELAY` unless [`Config::tcp_nodelay`]
    /// is false; if you serve the router yourself, set it too.
    ///
    /// # Errors
    /// An I/O error of the listener.
    pub async fn serve_router(&self, listener: TcpListener, router: Router) -> std::io::Result<()> {
        use axum::serve::ListenerExt as _;
        let shared = self.shared.clone();
        // Socket.IO sends many small frames; Nagle's algorithm would hold each second one back
        // until the client's delayed ACK (~40 ms).
        let nodelay = self.shared.config.tcp_nodelay;
        let listener = listener.tap_io(move |tcp| {
            if let Err(e) = tcp.set_nodelay(nodelay) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let started = shared.shutdown_started.notified();
                if !shared.shutting_down.load(Ordering::Acquire) {
                    started.await;
                }
            })
            .await
    }

    /// The number of open Engine.IO sessions.
    pub fn session_count(&self) -> usize {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Closes every connection and waits (at most `timeout`) for their handlers to finish.
    ///
    /// With `reconnect`, clients see a transport close and reconnect on their own (to another server
    /// behind the load balancer), recovering their session if a shared recovery store is configured.
    /// Without it, each socket first gets a DISCONNECT packet, so stock clients stay disconnected.
    /// New handshakes are refused from the start of the shutdown.
    pub fn shutdown(
        &self,
        reconnect: bool,
        timeout: Duration,
    ) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        shared.shutting_down.store(true, Ordering::Release);
        shared.shutdown_started.notify_waiters();
        let conns: Vec<Arc<Conn>> = shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for conn in conns {
            conn.send_mailbox(In::Shutdown { reconnect });
        }
        async move {
            let wait = async {
                loop {
                    let drained = shared.drained.notified();
                    if shared.live.load(Ordering::Acquire) == 0 {
                        return;
                    }
                    drained.await;
                }
            };
            let _ = tokio::time::timeout(timeout, wait).await;
        }
    }
}
