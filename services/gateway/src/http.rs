//! `/health`, `/ready` and `/metrics`, served on the gateway's port next to `/socket.io/`.

use crate::state::Gateway;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(gw)
}

/// Ready while not draining and Redis answers. MySQL is reported but does not decide: with MySQL
/// down, connected members keep chatting (memberships are cached, the stream buffers for the worker),
/// and taking every gateway out of the load balancer would stop that too.
async fn ready(State(gw): State<Arc<Gateway>>) -> Response {
    if !gw.ready.load(Ordering::Acquire) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "draining"})),
        )
            .into_response();
    }
    let (redis, mysql) = tokio::join!(gw.bus.ping(), gw.store.ping());
    let ok = redis.is_ok();
    let body = Json(json!({
        "status": if ok { "ready" } else { "unavailable" },
        "redis": if redis.is_ok() { "ok" } else { "down" },
        "mysql": if mysql.is_ok() { "ok" } else { "down" },
    }));
    if ok {
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        gw.metrics.render(),
    )
        .into_response()
}
