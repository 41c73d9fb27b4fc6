//! The worker's small HTTP port: `/health` (the process is alive), `/ready` (MySQL and Redis answer,
//! and the worker is not stopping) and `/metrics` (Prometheus text).

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chat_bus::Bus;
use chat_store::Store;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone)]
pub struct HttpState {
    pub store: Store,
    pub bus: Bus,
    pub metrics: Arc<Metrics>,
    pub stopping: watch::Receiver<bool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    const WITHIN: Duration = Duration::from_secs(2);
    let mysql = matches!(
        tokio::time::timeout(WITHIN, s.store.ping()).await,
        Ok(Ok(()))
    );
    let redis = matches!(tokio::time::timeout(WITHIN, s.bus.ping()).await, Ok(Ok(())));
    let stopping = *s.stopping.borrow();
    let ok = mysql && redis && !stopping;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ok { "ready" } else { "unavailable" },
            "mysql": mysql,
            "redis": redis,
            "stopping": stopping,
        })),
    )
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}
