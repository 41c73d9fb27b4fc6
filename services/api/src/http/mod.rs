//! The HTTP layer: one module per resource, each exposing `router()`, merged here under `/api/v1` with the
//! cross-cutting layers (rate limit, CORS, security headers, body limit, tracing).

mod auth;
pub mod error;
pub mod extract;
mod messages;
mod rooms;
mod users;
mod web;

use crate::metrics::{Dependency, UNMATCHED};
use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use error::ApiError;
use extract::{bearer, client_ip};
use std::time::{Duration, Instant};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Chat API", description = "REST API of the chat backend: auth, users, rooms, members, history, and sending, editing, deleting and marking read messages."),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

/// The OpenAPI document of every `/api/v1` route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        "/api/v1",
        OpenApiRouter::new()
            .merge(auth::router())
            .merge(users::router())
            .merge(rooms::router())
            .merge(messages::router()),
    )
}

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let doc_json = doc.to_pretty_json().unwrap_or_else(|_| "{}".into());
    let api = api.layer(middleware::from_fn_with_state(state.clone(), rate_limit));

    let mut app = Router::new()
        .merge(api)
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route(
            "/api/v1/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc_json) }),
        )
        .route("/api/v1/docs", get(docs_page))
        .route("/metrics", get(metrics))
        // The web client's page, files and settings, and the JSON 404 for every unknown path.
        .merge(web::routes(&state.config))
        .method_not_allowed_fallback(|| async {
            (StatusCode::METHOD_NOT_ALLOWED, axum::Json(serde_json::json!({
                "error": {"code": "METHOD_NOT_ALLOWED", "message": "method not allowed on this route"}
            })))
        })
        // Inside the routing, so the matched route template is known (outside the CORS layer:
        // preflights are not counted).
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state.clone())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    for (name, value) in SECURITY_HEADERS {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    app.layer(cors(&state.config.cors_origin))
        .layer(
            // One span per request (method, path, request id) and one INFO line per response with its
            // status and latency; as JSON lines with LOG_FORMAT=json.
            TraceLayer::new_for_http()
                // Probes and scrapes (`/health`, `/ready`, `/metrics`) at DEBUG: they come every few
                // seconds and say nothing.
                .make_span_with(|req: &Request| {
                    let request_id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let path = log_path(req.uri().path());
                    let empty = tracing::field::Empty;
                    if is_ops_path(req.uri().path()) {
                        tracing::debug_span!("request", method = %req.method(), path = %path, request_id)
                    } else {
                        tracing::info_span!("request", method = %req.method(), path = %path, request_id, http.route = empty, http.status_code = empty)
                    }
                })
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    let latency = format_args!("{} ms", latency.as_millis());
                    let status = res.status().as_u16();
                    // The target and fields of tower-http's DefaultOnResponse, so filters and log
                    // readers see the same lines as before.
                    const TARGET: &str = "tower_http::trace::on_response";
                    if res.extensions().get::<Quiet>().is_some() {
                        tracing::debug!(target: TARGET, %latency, status, "finished processing request");
                    } else {
                        tracing::info!(target: TARGET, %latency, status, "finished processing request");
                    }
                }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The operational endpoints, logged at DEBUG rather than INFO.
fn is_ops_path(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/metrics")
}

/// Marks a response of an operational endpoint, so its line is logged at DEBUG.
#[derive(Clone, Copy)]
struct Quiet;

/// Counts every routed request by route template and status, and the dependency errors its response
/// reports; with tracing export on, names the request span after the route.
async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = chat_telemetry::enabled().then(|| req.method().clone());
    let quiet = is_ops_path(req.uri().path());
    let mut res = next.run(req).await;
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    st.metrics
        .observe(route, res.status().as_u16(), started.elapsed());
    if let Some(dep) = res.extensions().get::<Dependency>() {
        st.metrics.dependency_error(*dep);
    }
    if let Some(method) = method {
        let span = tracing::Span::current();
        chat_telemetry::set_span_name(&span, format!("{method} {route}"));
        span.record("http.route", route);
        span.record("http.status_code", res.status().as_u16());
    }
    if quiet {
        res.extensions_mut().insert(Quiet);
    }
    res
}

/// `/metrics`: Prometheus text.
async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

/// The path as logged: invite codes are secrets (they admit people to private rooms), so they are
/// replaced by a placeholder.
fn log_path(path: &str) -> std::borrow::Cow<'_, str> {
    if path.starts_with("/api/v1/invites/") {
        "/api/v1/invites/{code}".into()
    } else if path.starts_with("/invite/") {
        "/invite/{code}".into()
    } else {
        path.into()
    }
}

/// `/ready`: 200 when MySQL and Redis answer, 503 naming what does not.
async fn ready(State(st): State<AppState>) -> Response {
    let (db, redis) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(2), st.store.ping()),
        tokio::time::timeout(Duration::from_secs(2), st.bus.ping())
    );
    let db_ok = matches!(db, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let status = if db_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if status != StatusCode::OK {
        tracing::warn!(db_ok, redis_ok, "not ready");
    }
    let word = |ok| if ok { "ok" } else { "unreachable" };
    (
        status,
        axum::Json(serde_json::json!({
            "status": if status == StatusCode::OK { "ready" } else { "not ready" },
            "mysql": word(db_ok),
            "redis": word(redis_ok),
        })),
    )
        .into_response()
}

async fn docs_page() -> impl IntoResponse {
    (
        [(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net; style-src 'self' 'unsafe-inline' \
             https://cdn.jsdelivr.net; font-src https://cdn.jsdelivr.net data:; img-src 'self' data:",
        )],
        Html(
            r#"<!doctype html><html><head><meta charset="utf-8"><title>Chat API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>
<script id="api-reference" data-url="/api/v1/openapi.json"></script>
<script src="https://cdn.jsdelivr.net/npm/@scalar/api-reference"></script>
<noscript>The API description is at <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</noscript>
</body></html>"#,
        ),
    )
}

/// 100 requests per minute per user (per client address when anonymous), counted in Redis so every API
/// replica shares the budget. For a signed-in request the same round trip checks whether the token was
/// revoked, and the verified caller is handed to the [`extract::AuthUser`] extractor. If Redis is down the
/// request goes through (logged): availability first; authentication then fails closed.
async fn rate_limit(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let limit = st.config.api_rate_limit_per_minute;
    let window = Duration::from_secs(60);
    let claims = bearer(req.headers()).and_then(|t| st.tokens.verify(t).ok());
    let checked = match &claims {
        Some(c) => st.bus.api_gate(c.sub, c.jti, limit, window).await,
        None => {
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
            let ip = client_ip(req.headers(), peer, st.config.trust_proxy);
            let key = st.bus.keys().rate_limit("api:ip", &ip.to_string());
            st.bus
                .hit_rate_limit(&key, limit, window)
                .await
                .map(|d| (d, false))
        }
    };
    match checked {
        Ok((d, _)) if !d.allowed => ApiError::RateLimited {
            retry_after: d.retry_after,
        }
        .into_response(),
        Ok((d, revoked)) => {
            if let Some(claims) = claims {
                if revoked {
                    req.extensions_mut().insert(extract::RevokedToken);
                } else {
                    req.extensions_mut().insert(extract::AuthUser {
                        id: claims.sub,
                        claims,
                    });
                }
            }
            let mut res = next.run(req).await;
            res.headers_mut().insert(
                HeaderName::from_static("ratelimit-limit"),
                HeaderValue::from(limit),
            );
            res.headers_mut().insert(
                HeaderName::from_static("ratelimit-remaining"),
                HeaderValue::from(d.remaining),
            );
            res
        }
        Err(e) => {
            st.metrics.dependency_error(Dependency::Redis);
            tracing::warn!(error = ?e, "rate limiter unavailable; request allowed");
            next.run(req).await
        }
    }
}

/// Headers every response carries unless its handler set them (the docs page sets its own CSP).
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (
        header::STRICT_TRANSPORT_SECURITY,
        "max-age=63072000; includeSubDomains",
    ),
];

fn cors(origin: &str) -> CorsLayer {
    let allow = if origin.trim() == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origin
                .split(',')
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
