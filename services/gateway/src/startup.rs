//! Building and running a gateway.

use crate::fanout::FanoutHandle;
use crate::handler::Chat;
use crate::metrics::Metrics;
use crate::recovery::RedisRecovery;
use crate::state::Gateway;
use crate::typing::Typing;
use anyhow::Context;
use chat_auth::TokenKeys;
use chat_bus::Bus;
use chat_config::Config;
use chat_realtime::{Realtime, RtConfig};
use chat_store::Store;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// Every this many heartbeats, local sockets' tokens and rooms are re-checked (see `recheck`).
const RECHECK_EVERY: u64 = 3;

pub struct Application {
    listener: TcpListener,
    port: u16,
    gw: Arc<Gateway>,
    server: sio::Server,
}

impl Application {
    /// Connects to MySQL and Redis and binds the port (0 picks a free one).
    ///
    /// # Errors
    /// Unreachable MySQL, an invalid Redis URL or a port in use.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = Store::connect(
            config.database_url.expose(),
            config.database_max_connections,
        )
        .await
        .context("connecting to MySQL (DATABASE_URL)")?;
        let bus = Bus::from_config(&config).context("configuring Redis")?;
        let rt = Realtime::new(bus.clone(), store.clone(), RtConfig::from_config(&config));
        let g = &config.gateway;
        let recovery = Arc::new(RedisRecovery::new(bus.clone(), g.recovery_window));
        let (fanout_handle, fanout_rx) = FanoutHandle::new();
        let gw = Arc::new(Gateway {
            tokens: TokenKeys::new(
                config.jwt_secret.expose().as_bytes(),
                config.access_token_ttl,
            ),
            typing: Typing::new(rt.clone(), g.typing_timeout),
            members: crate::members::MemberCache::default(),
            fanout: fanout_handle,
            metrics: Arc::new(Metrics::default()),
            recovery: recovery.clone(),
            sockets: Mutex::new(HashMap::new()),
            ready: false.into(),
            revocations_read: 0.into(),
            beat_failed_at: Mutex::new(None),
            rt,
            store,
            bus,
            config: Arc::new(config),
        });
        let g = &gw.config.gateway;
        let mut sio_config = sio::Config {
            ping_interval: g.ping_interval,
            ping_timeout: g.ping_timeout,
            max_payload: g.max_payload,
            queue_capacity: g.queue_capacity,
            ..sio::Config::default()
        };
        if gw.config.cors_origin != "*" {
            sio_config.cors_allowed_origins = Some(
                gw.config
                    .cors_origin
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect(),
            );
        }
        let server = sio::Server::builder()
            .config(sio_config)
            .recovery(recovery)
            .namespace("/", Chat(gw.clone()))
            .build();
        tokio::spawn(crate::subscriber::run(gw.clone(), fanout_rx));
        let addr = SocketAddr::new(gw.config.bind_host, gw.config.gateway_port);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let port = listener.local_addr()?.port();
        Ok(Self {
            listener,
            port,
            gw,
            server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// Serves until SIGTERM/SIGINT, then drains.
    ///
    /// # Errors
    /// Listener failures.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run(chat_telemetry::shutdown_signal()).await
    }

    /// Serves until `stop` completes, then: not ready, stop accepting, tell clients to reconnect
    /// elsewhere (they recover their sessions there), wait for the sockets to go (at most
    /// `SHUTDOWN_DRAIN_SECS`), clear this gateway's presence.
    ///
    /// # Errors
    /// Listener failures.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let gw = self.gw.clone();
        let server = self.server.clone();
        let app = server.router().merge(crate::http::router(gw.clone()));
        gw.ready.store(true, Ordering::Release);
        tracing::info!(port = self.port, id = %gw.config.gateway.id, "gateway listening");

        let ticker = {
            let gw = gw.clone();
            tokio::spawn(async move {
                let mut beat = tokio::time::interval(gw.config.gateway.presence_heartbeat);
                let mut typing = tokio::time::interval(Duration::from_millis(250));
                let mut beats = 0u64;
                // The re-check (Redis and MySQL over every socket) runs beside this loop, so typing
                // expiry and heartbeats do not wait for it; one at a time.
                let mut rechecking: Option<tokio::task::JoinHandle<()>> = None;
                loop {
                    tokio::select! {
                        _ = beat.tick() => {
                            gw.heartbeat().await;
                            beats += 1;
                            if beats.is_multiple_of(RECHECK_EVERY)
                                && rechecking.as_ref().is_none_or(tokio::task::JoinHandle::is_finished)
                            {
                                let gw = gw.clone();
                                rechecking = Some(tokio::spawn(async move { gw.recheck().await }));
                            }
                        }
                        _ = typing.tick() => gw.typing.expire(),
                    }
                }
            })
        };
        let drain = {
            let gw = gw.clone();
            let server = server.clone();
            tokio::spawn(async move {
                stop.await;
                tracing::info!(
                    "draining: not ready, closing connections so clients reconnect elsewhere"
                );
                gw.ready.store(false, Ordering::Release);
                server
                    .shutdown(true, gw.config.gateway.shutdown_drain)
                    .await;
            })
        };
        let served = server.serve_router(self.listener, app).await;
        let _ = drain.await;
        ticker.abort();
        gw.presence_shutdown().await;
        tracing::info!("gateway stopped");
        served.context("serving")
    }
}
