//! Building and running the worker: connect MySQL and Redis, optionally migrate, bind the HTTP port,
//! then run one consumer loop per shard and the housekeeping task until a stop signal; each loop
//! finishes the batch in hand before the process exits.

use crate::housekeeping;
use crate::http::{router, HttpState};
use crate::metrics::Metrics;
use crate::shard::{ShardLoop, Shared};
use anyhow::Context;
use chat_bus::Bus;
use chat_config::Config;
use chat_store::Store;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct Application {
    listener: TcpListener,
    port: u16,
    shards: u16,
    shared: Arc<Shared>,
    bus: Bus,
}

impl Application {
    /// Connects to the dependencies and binds the HTTP listener (port 0 picks a free port).
    ///
    /// # Errors
    /// Unreachable MySQL, a failed migration, an invalid Redis URL or a port in use.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let shards = config.shards;
        if config.worker.missing_target_timeout <= config.worker.claim_idle {
            tracing::warn!(
                missing_target_ms = config.worker.missing_target_timeout.as_millis(),
                claim_idle_ms = config.worker.claim_idle.as_millis(),
                "WORKER_MISSING_TARGET_MS should exceed WORKER_CLAIM_IDLE_MS: an edit or delete whose \
                 message is pending on a dead replica may be dead-lettered before the message is claimed"
            );
        }
        // One connection per shard loop, plus room for readiness probes.
        let pool_size = config.database_max_connections.max(u32::from(shards) + 2);
        let store = Store::connect(config.database_url.expose(), pool_size)
            .await
            .context("connecting to MySQL (DATABASE_URL)")?;
        if config.run_migrations {
            store.migrate().await.context("applying migrations")?;
        }
        let bus = Bus::from_config(&config).context("configuring Redis")?;
        let addr = SocketAddr::new(config.bind_host, config.worker_port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            store,
            bus: bus.clone(),
            keys: bus.keys().clone(),
            settings: config.worker.clone(),
            metrics: Arc::new(Metrics::new(shards)),
        });
        Ok(Self {
            listener,
            port,
            shards,
            shared,
            bus,
        })
    }

    /// The HTTP port (`/health`, `/ready`, `/metrics`).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Runs until `shutdown` completes, then lets every shard loop finish its batch.
    ///
    /// Dropping the returned future (aborting its task) stops everything at once, mid-batch: what was
    /// not acknowledged stays pending in Redis.
    ///
    /// # Errors
    /// HTTP accept-loop I/O errors.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let consumer = self.shared.settings.consumer.clone();
        tracing::info!(
            port = self.port,
            shards = self.shards,
            consumer,
            "worker running"
        );

        // Dropping the set aborts the loops, so an aborted `run_until` leaves nothing behind.
        let mut loops = JoinSet::new();
        for shard in 0..self.shards {
            loops.spawn(ShardLoop::new(Arc::clone(&self.shared), shard).run(stop_rx.clone()));
        }
        loops.spawn(housekeeping::run(
            Arc::clone(&self.shared),
            self.bus.clone(),
            self.shards,
            stop_rx.clone(),
        ));

        let state = HttpState {
            store: self.shared.store.clone(),
            bus: self.bus.clone(),
            metrics: Arc::clone(&self.shared.metrics),
            stopping: stop_rx.clone(),
        };
        // The HTTP port outlives the loops, so `/ready` says 503 while the last batches finish.
        let (http_tx, http_rx) = tokio::sync::oneshot::channel::<()>();
        let server = axum::serve(self.listener, router(state)).with_graceful_shutdown(async move {
            let _ = http_rx.await;
        });
        let mut server = std::pin::pin!(server.into_future());

        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            res = &mut server => {
                res?;
                anyhow::bail!("the HTTP server stopped unexpectedly");
            }
        }
        tracing::info!("stopping: finishing the current batches");
        let _ = stop_tx.send(true);
        // Keep serving HTTP while the loops finish.
        let drained = async { while loops.join_next().await.is_some() {} };
        tokio::select! {
            () = drained => {}
            res = &mut server => {
                res?;
                anyhow::bail!("the HTTP server stopped unexpectedly");
            }
        }
        let _ = http_tx.send(());
        server.await?;
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Runs until SIGTERM or Ctrl-C.
    ///
    /// # Errors
    /// HTTP accept-loop I/O errors.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(chat_telemetry::shutdown_signal()).await
    }
}
