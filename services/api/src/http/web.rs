//! The web client (`web/`): its built page (`WEB_DIR`, default `web/dist`) at `/` and at
//! `/invite/{code}` (the client reads the code from its path), its files under `/assets/`, and its
//! settings at `/config.json`. Nothing else is served from the directory, and every other path gets the
//! API's JSON 404.
//!
//! The pages get their own Content-Security-Policy: scripts, styles and images from this origin only,
//! and connections to this origin and to the configured gateways (`WEB_GATEWAY_URL`). The client renders
//! user text with `textContent` only; the policy is the second line of defence.

use super::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chat_config::Config;
use std::path::PathBuf;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// The routes of the web client, and the fallback serving its files (or answering 404).
pub fn routes(config: &Config) -> Router<AppState> {
    let csp = HeaderValue::from_str(&content_security_policy(&config.web_gateway_urls))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"));
    let mut router = Router::new()
        .route("/", get(index))
        .route("/invite/{code}", get(index))
        .route("/config.json", get(client_config));
    if let Some(dir) = &config.web_dir {
        // `/assets/…` from WEB_DIR/assets (a route, so the metrics count it as `/assets/{*file}`);
        // a missing file, a directory or another method than GET/HEAD gets the JSON 404.
        let files = ServeDir::new(dir)
            .append_index_html_on_directories(false)
            .call_fallback_on_method_not_allowed(true)
            .fallback(axum::routing::any(not_found).with_state(()));
        router = router.route_service("/assets/{*file}", files);
    }
    router
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            csp,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
}

/// The policy of the web client's pages.
fn content_security_policy(gateways: &[String]) -> String {
    let mut connect = String::from("'self'");
    for url in gateways {
        // socket.io-client opens ws(s):// to the gateway (and http(s):// when it falls back to polling).
        let ws = url.replacen("http", "ws", 1);
        connect.push_str(&format!(" {url} {ws}"));
    }
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `index.html`, for `/` and `/invite/{code}`; 404 with a hint when the client is not built.
async fn index(State(st): State<AppState>) -> Response {
    let Some(dir) = st.config.web_dir.as_deref() else {
        return not_built("the web client is disabled (WEB_DIR is empty)");
    };
    match tokio::fs::read(PathBuf::from(dir).join("index.html")).await {
        Ok(page) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response(),
        Err(e) => {
            tracing::debug!(error = %e, dir, "web client index not readable");
            not_built(&format!(
                "the web client is not built in {dir}: run `make up` (or `cd web && npm ci && node build.mjs`)"
            ))
        }
    }
}

fn not_built(message: &str) -> Response {
    ApiError::NotFound(message.to_owned().into()).into_response()
}

/// Paths no route and no file claims: the API's JSON 404 (405 is reported by the routes themselves).
async fn not_found() -> Response {
    ApiError::NotFound("no such route".into()).into_response()
}

/// What the client needs to know about this deployment.
async fn client_config(State(st): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({
            "apiBase": "/api/v1",
            // Empty: connect to the page's own origin (a proxy routes /socket.io/ to the gateways).
            "gatewayUrls": st.config.web_gateway_urls,
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::content_security_policy;

    #[test]
    fn policy_names_the_gateways() {
        let p = content_security_policy(&["http://localhost:3000".into()]);
        assert!(
            p.contains("connect-src 'self' http://localhost:3000 ws://localhost:3000;"),
            "{p}"
        );
        assert!(p.contains("script-src 'self';"));
        let p = content_security_policy(&["https://gw.example".into()]);
        assert!(p.contains("wss://gw.example"), "{p}");
        assert!(content_security_policy(&[]).contains("connect-src 'self';"));
    }
}
