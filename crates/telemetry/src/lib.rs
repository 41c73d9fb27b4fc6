//! Logging and tracing set-up shared by the services, and the shutdown signal they all wait for.
//!
//! Logs go to stderr, as text or as JSON lines (`LOG_FORMAT=json`), filtered by `RUST_LOG` (default
//! `info`). Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and non-empty; see [`otel`] for the settings and the
//! W3C `traceparent` helpers that carry a trace through Redis. Without an endpoint the set-up is
//! exactly the logging one and [`enabled`] is false.

mod histogram;
pub mod otel;

pub use histogram::Histogram;

pub use otel::{
    add_links, current_traceparent, enabled, flush, parse_traceparent, set_parent_from_traceparent,
    set_span_name, shutdown, traceparent_of, OtelSettings, MAX_LINKS,
};

use chat_config::LogFormat;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{fmt, EnvFilter, Layer as _};

/// Installs the global subscriber, with span export when the `OTEL_*` variables ask for it. Safe to
/// call more than once (later calls do nothing). Call [`shutdown`] before the process exits, so the
/// last spans are sent.
pub fn init(service: &'static str, format: LogFormat) {
    init_with(service, format, &OtelSettings::from_env(service));
}

/// [`init`] with explicit export settings (tests).
pub fn init_with(service: &'static str, format: LogFormat, otel: &OtelSettings) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let mut problem = None;
    let installed = if otel.traces_url.is_some() {
        match otel::provider(otel) {
            Ok(provider) => {
                let fmt_layer = match format {
                    LogFormat::Json => fmt::layer()
                        .json()
                        .with_current_span(true)
                        .with_writer(std::io::stderr)
                        .boxed(),
                    LogFormat::Text => fmt::layer().with_writer(std::io::stderr).boxed(),
                };
                // Our own spans at INFO and above (whatever RUST_LOG says), and warnings and errors
                // logged inside them as span events; nothing from dependencies.
                //
                // A *dynamic* filter on purpose: a static one makes the interest of our span
                // callsites "always", so `enabled` is skipped for them and the per-layer filter
                // state left on the thread by an earlier `enabled` call decides instead — which
                // dropped about one span in twenty from export. Asked every time, it is fresh.
                let export_filter = tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
                    meta.target().starts_with("chat_")
                        && if meta.is_span() {
                            *meta.level() <= tracing::Level::INFO
                        } else {
                            *meta.level() <= tracing::Level::WARN
                        }
                })
                .with_max_level_hint(tracing::level_filters::LevelFilter::INFO);
                let result = tracing_subscriber::registry()
                    .with(fmt_layer.with_filter(filter()))
                    .with(otel::install(provider, service).with_filter(export_filter))
                    .try_init();
                if result.is_ok() {
                    otel::set_enabled(true);
                } else {
                    otel::shutdown();
                }
                result.map(|()| true).map_err(|_| ())
            }
            Err(e) => {
                problem = Some(format!(
                    "cannot set up OTLP export ({e}); tracing stays off"
                ));
                init_logs(format, filter()).map(|()| false)
            }
        }
    } else {
        init_logs(format, filter()).map(|()| false)
    };
    if let Ok(exporting) = installed {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "starting");
        for w in otel.warnings.iter().chain(&problem) {
            tracing::warn!("{w}");
        }
        if exporting {
            tracing::info!(
                endpoint = otel.traces_url.as_deref().unwrap_or_default(),
                service_name = %otel.service_name,
                "exporting spans over OTLP/HTTP"
            );
        }
    }
}

/// Logs only: the set-up without an OTLP endpoint.
fn init_logs(format: LogFormat, filter: EnvFilter) -> Result<(), ()> {
    let result = match format {
        LogFormat::Json => fmt()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init(),
        LogFormat::Text => fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init(),
    };
    result.map_err(|_| ())
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
