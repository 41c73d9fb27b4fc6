//! Building and running the API: connect MySQL and Redis, optionally migrate, bind, serve until a
//! shutdown signal, then drain in-flight requests.

use crate::http;
use crate::state::AppState;
use anyhow::Context;
use chat_auth::{PasswordHasher, TokenKeys};
use chat_bus::Bus;
use chat_config::Config;
use chat_realtime::{Realtime, RtConfig};
use chat_store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
}

impl Application {
    /// Connects to the dependencies and binds the listener (port 0 picks a free port).
    ///
    /// # Errors
    /// Unreachable MySQL, a failed migration, an invalid Redis URL or a port in use.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(
            config.database_url.expose(),
            config.database_max_connections,
        )
        .await
        .context("connecting to MySQL (DATABASE_URL)")?;
        if config.run_migrations {
            store.migrate().await.context("applying migrations")?;
        }
        let bus = Bus::from_config(&config).context("configuring Redis")?;
        let tokens = TokenKeys::new(
            config.jwt_secret.expose().as_bytes(),
            config.access_token_ttl,
        );
        let addr = SocketAddr::new(config.bind_host, config.api_port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let port = listener.local_addr()?.port();
        let hash_slots = config.password_hash_concurrency.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        let rt = Realtime::new(bus.clone(), store.clone(), RtConfig::from_config(&config));
        let state = AppState {
            config: Arc::new(config),
            store,
            bus,
            rt,
            tokens,
            hasher: Arc::new(PasswordHasher::new()),
            hash_slots: Arc::new(tokio::sync::Semaphore::new(hash_slots)),
            metrics: Arc::default(),
        };
        Ok(Self {
            listener,
            port,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    ///
    /// # Errors
    /// Accept-loop I/O errors.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = http::router(self.state);
        tracing::info!(port = self.port, "API listening");
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        Ok(())
    }

    /// Serves until SIGTERM or Ctrl-C.
    ///
    /// # Errors
    /// Accept-loop I/O errors.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(chat_telemetry::shutdown_signal()).await
    }
}
