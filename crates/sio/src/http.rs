//! The HTTP face of Engine.IO: query checks, the long-polling transport, WebSocket sessions and the
//! polling → WebSocket upgrade.
//!
//! Errors follow the reference server: HTTP 400 with a JSON body `{"code":n,"message":…}` where
//! 0 = Transport unknown, 1 = Session ID unknown, 2 = Bad handshake method, 3 = Bad request,
//! 5 = Unsupported protocol version.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use sio_core::engine::{self, PayloadItem};
use std::sync::atomic::Ordering;

use crate::conn::{Conn, DisconnectReason, Handshake, In, Out, Transport};
use crate::server::Shared;
use crate::sid::Sid;

#[derive(Debug, Clone, Copy)]
enum EioError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    UnsupportedProtocolVersion = 5,
}

impl EioError {
    fn message(self) -> &'static str {
        match self {
            Self::UnknownTransport => "Transport unknown",
            Self::UnknownSid => "Session ID unknown",
            Self::BadHandshakeMethod => "Bad handshake method",
            Self::BadRequest => "Bad request",
            Self::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    fn response(self) -> Response {
        tracing::debug!(
            code = self as u8,
            message = self.message(),
            "engine.io request refused"
        );
        let body = format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self as u8,
            self.message()
        );
        (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

struct Query<'a> {
    eio: Option<&'a str>,
    transport: Option<&'a str>,
    sid: Option<&'a str>,
}

fn parse_query(q: &str) -> Query<'_> {
    let mut out = Query {
        eio: None,
        transport: None,
        sid: None,
    };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "EIO" => out.eio = out.eio.or(Some(v)),
            "transport" => out.transport = out.transport.or(Some(v)),
            "sid" => out.sid = out.sid.or(Some(v)),
            _ => {}
        }
    }
    out
}

/// The one handler behind the Engine.IO path.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = route(shared.clone(), req).await;
    add_cors(&shared, origin, resp.headers_mut());
    resp
}

async fn route(shared: Arc<Shared>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    if parts.method == Method::OPTIONS {
        return preflight(&parts.headers);
    }
    let query = parts.uri.query().unwrap_or("").to_owned();
    let q = parse_query(&query);
    if q.eio != Some("4") {
        return EioError::UnsupportedProtocolVersion.response();
    }
    let transport = match q.transport {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return EioError::UnknownTransport.response(),
    };
    let sid = match q.sid {
        None => None,
        Some(s) => match Sid::parse(s) {
            Some(sid) => Some(sid),
            None => return EioError::UnknownSid.response(),
        },
    };
    if sid.is_none() && shared.shutting_down.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }

    if transport == Transport::WebSocket {
        let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(u) => u,
            Err(_) => return EioError::BadRequest.response(),
        };
        let cfg = &shared.config;
        let upgrade = upgrade
            .read_buffer_size(cfg.ws_read_buffer_size)
            .write_buffer_size(cfg.ws_write_buffer_size)
            .max_message_size(cfg.max_payload)
            .max_frame_size(cfg.max_payload);
        return match sid {
            None => {
                let handshake = copy_handshake(&parts.headers, &query);
                upgrade
                    .on_upgrade(move |ws| websocket_session(shared, handshake, ws))
                    .into_response()
            }
            Some(sid) => {
                let Some(conn) = shared.session(sid) else {
                    return EioError::UnknownSid.response();
                };
                {
                    let mut st = conn.state();
                    if st.transport != Transport::Polling || !shared.config.allow_upgrades {
                        drop(st);
                        // As the reference server does: complete the handshake, then close at once.
                        tracing::debug!(%sid, "second WebSocket for a session: closed");
                        return upgrade
                            .on_upgrade(|mut ws| async move {
                                let _ = ws.send(Message::Close(None)).await;
                            })
                            .into_response();
                    }
                    st.transport = Transport::ProbePending;
                }
                let failed = conn.clone();
                upgrade
                    .on_failed_upgrade(move |_| abort_upgrade(&failed))
                    .on_upgrade(move |ws| upgrade_session(conn, ws))
                    .into_response()
            }
        };
    }

    match (sid, parts.method) {
        (None, Method::GET) => polling_handshake(shared, copy_handshake(&parts.headers, &query)),
        (None, _) => EioError::BadHandshakeMethod.response(),
        (Some(sid), method) => {
            let Some(conn) = shared.session(sid) else {
                return EioError::UnknownSid.response();
            };
            match method {
                Method::GET => poll(conn).await,
                Method::POST => post(conn, body).await,
                _ => EioError::BadRequest.response(),
            }
        }
    }
}

fn preflight(headers: &HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
    );
    if let Some(req_headers) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req_headers.clone());
    }
    resp
}

fn add_cors(shared: &Shared, origin: Option<HeaderValue>, h: &mut HeaderMap) {
    let Some(origin) = origin else { return };
    let allowed = match &shared.config.cors_allowed_origins {
        None => true,
        Some(list) => origin.to_str().is_ok_and(|o| list.iter().any(|a| a == o)),
    };
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Copies the request headers the application may want, so no buffer of the HTTP connection stays
/// referenced by a long-lived session.
fn copy_handshake(headers: &HeaderMap, query: &str) -> Handshake {
    let kept = headers.iter().filter_map(|(name, value)| {
        let n = name.as_str();
        if n.starts_with("sec-websocket-") || n == "connection" || n == "upgrade" {
            return None;
        }
        Some((n, value.to_str().ok()?))
    });
    Handshake::new(kept, query)
}

fn open_packet(shared: &Shared, sid: Sid, upgrades: bool) -> String {
    let cfg = &shared.config;
    let upgrades: &[&str] = if upgrades && cfg.allow_upgrades {
        &["websocket"]
    } else {
        &[]
    };
    let json = engine::open_json(
        sid.as_str(),
        upgrades,
        cfg.ping_interval.as_millis() as u64,
        cfg.ping_timeout.as_millis() as u64,
        cfg.max_payload as u64,
    );
    format!("0{json}")
}

fn text_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body,
    )
        .into_response()
}

fn polling_handshake(shared: Arc<Shared>, handshake: Handshake) -> Response {
    let conn = Arc::new(Conn::new(shared.clone(), handshake, Transport::Polling));
    let open = open_packet(&shared, conn.sid, true);
    shared.insert_session(conn.clone());
    tracing::debug!(sid = %conn.sid, "polling session opened");
    tokio::spawn(crate::driver::run(conn, None));
    text_response(open)
}

async fn websocket_session(shared: Arc<Shared>, handshake: Handshake, ws: WebSocket) {
    let conn = Arc::new(Conn::new(shared.clone(), handshake, Transport::WebSocket));
    let open = open_packet(&shared, conn.sid, false);
    shared.insert_session(conn.clone());
    let _ = conn.push_control(Out::text(open));
    tracing::debug!(sid = %conn.sid, "websocket session opened");
    // A task of its own, sized for the driver alone, rather than running inside axum's upgrade task.
    tokio::spawn(crate::driver::run(conn, Some(Box::new(ws))));
}

fn abort_upgrade(conn: &Conn) {
    let mut st = conn.state();
    if matches!(st.transport, Transport::ProbePending | Transport::Upgrading) {
        st.transport = Transport::Polling;
    }
}

async fn upgrade_session(conn: Arc<Conn>, mut ws: WebSocket) {
    let timeout = conn.shared.config.upgrade_timeout;
    let ok = async {
        match tokio::time::timeout(timeout, ws.recv()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "2probe" => {}
            other => {
                tracing::debug!(sid = %conn.sid, ?other, "upgrade: expected a probe");
                return false;
            }
        }
        if ws.send(Message::Text("3probe".into())).await.is_err() {
            return false;
        }
        {
            let mut st = conn.state();
            if st.transport != Transport::ProbePending {
                return false;
            }
            st.transport = Transport::Upgrading;
        }
        // Release the pending GET, if any, with a noop.
        conn.wake_poller.notify_waiters();
        match tokio::time::timeout(timeout, ws.recv()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "5" => true,
            other => {
                tracing::debug!(sid = %conn.sid, ?other, "upgrade: expected the upgrade packet");
                false
            }
        }
    }
    .await;
    if ok {
        {
            let mut st = conn.state();
            if st.closed.is_some() {
                return;
            }
            st.transport = Transport::WebSocket;
            st.upgrade = Some(Box::new(ws));
        }
        tracing::debug!(sid = %conn.sid, "upgraded to websocket");
        conn.wake_driver.notify_one();
        conn.wake_poller.notify_waiters();
    } else {
        abort_upgrade(&conn);
    }
}

/// Resets `poll_active` when a GET ends, however it ends (the client may go away mid-poll).
struct PollGuard<'a>(&'a Conn);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.0.state().poll_active = false;
    }
}

async fn poll(conn: Arc<Conn>) -> Response {
    if conn.check_expired() && !conn.state().linger {
        return EioError::UnknownSid.response();
    }
    {
        let mut st = conn.state();
        if st.transport == Transport::WebSocket {
            return EioError::BadRequest.response();
        }
        if st.poll_active {
            drop(st);
            tracing::debug!(sid = %conn.sid, "overlapping polling GET: closing the session");
            conn.close(DisconnectReason::MultiplePollingRequests);
            return EioError::BadRequest.response();
        }
        st.poll_active = true;
    }
    let _guard = PollGuard(&conn);
    let max = conn.shared.config.max_payload;
    loop {
        let notified = conn.wake_poller.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = conn.state();
            let items = conn.drain_for_poll(&mut st, max);
            if let Some(reason) = st.closed {
                let mut body = encode_payload(&items);
                if !body.is_empty() {
                    body.push(engine::SEPARATOR);
                }
                // A client that closed gets a noop to end its pending request; anyone else a close.
                body.push(if reason == DisconnectReason::TransportClose {
                    '6'
                } else {
                    '1'
                });
                drop(st);
                conn.end_linger();
                return text_response(body);
            }
            if !items.is_empty() {
                return text_response(encode_payload(&items));
            }
            if matches!(st.transport, Transport::Upgrading | Transport::WebSocket) {
                return text_response("6".to_owned());
            }
        }
        notified.await;
    }
}

fn encode_payload(items: &[Out]) -> String {
    let mut body = String::new();
    for item in items {
        let push = |body: &mut String| {
            if !body.is_empty() {
                body.push(engine::SEPARATOR);
            }
        };
        match item {
            Out::Text(t) => {
                push(&mut body);
                body.push_str(t.as_str());
            }
            Out::Frame(f) => {
                push(&mut body);
                body.push_str(f.as_str());
                for a in f.attachments() {
                    body.push(engine::SEPARATOR);
                    engine::encode_binary_record(&mut body, a);
                }
            }
            Out::Binary(b) => {
                push(&mut body);
                engine::encode_binary_record(&mut body, b);
            }
        }
    }
    body
}

struct PostGuard<'a>(&'a Conn);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.state().post_active = false;
    }
}

/// The most messages a session may have waiting for its driver before it is considered abusive
/// (their bytes are capped too, at 2 × maxPayload).
const MAX_MAILBOX: usize = 1024;

async fn post(conn: Arc<Conn>, body: Body) -> Response {
    if conn.check_expired() {
        return EioError::UnknownSid.response();
    }
    {
        let mut st = conn.state();
        if st.transport == Transport::WebSocket {
            return EioError::BadRequest.response();
        }
        if st.post_active {
            drop(st);
            tracing::debug!(sid = %conn.sid, "overlapping polling POST: closing the session");
            conn.close(DisconnectReason::ParseError);
            return EioError::BadRequest.response();
        }
        st.post_active = true;
    }
    let _guard = PostGuard(&conn);
    let bytes: Bytes = match axum::body::to_bytes(body, conn.shared.config.max_payload).await {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(sid = %conn.sid, error = %e, "polling POST over maxPayload or broken: closing");
            conn.close(DisconnectReason::TransportError);
            return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        tracing::debug!(sid = %conn.sid, "polling POST is not UTF-8: closing");
        conn.close(DisconnectReason::ParseError);
        return EioError::BadRequest.response();
    };
    let mut msgs = Vec::new();
    for item in engine::decode_payload(text) {
        match item {
            Ok(PayloadItem::Text(p)) => msgs.push(In::Text(p.encode())),
            Ok(PayloadItem::Binary(b)) => msgs.push(In::Binary(Bytes::from(b))),
            Err(e) => {
                tracing::debug!(sid = %conn.sid, error = %e, "invalid polling payload: closing");
                conn.close(DisconnectReason::ParseError);
                return EioError::BadRequest.response();
            }
        }
    }
    {
        let mut st = conn.state();
        if st.closed.is_some() {
            return EioError::BadRequest.response();
        }
        if st.mailbox.len() + msgs.len() > MAX_MAILBOX {
            drop(st);
            tracing::debug!(sid = %conn.sid, "polling client floods the server: closing");
            conn.close(DisconnectReason::TransportError);
            return EioError::BadRequest.response();
        }
        // Bytes too: a client whose driver is busy (a slow handler, 32 packets pending) must not
        // buffer MAX_MAILBOX × maxPayload. Refused as an oversized payload is, and closed.
        let bytes: usize = msgs.iter().map(In::size).sum();
        if st.mailbox_bytes + bytes > conn.shared.config.max_payload.saturating_mul(2) {
            drop(st);
            tracing::debug!(sid = %conn.sid, "polling client buffers more than 2 × maxPayload: closing");
            conn.close(DisconnectReason::TransportError);
            return (StatusCode::PAYLOAD_TOO_LARGE, "payload too large").into_response();
        }
        st.mailbox_bytes += bytes;
        st.mailbox.extend(msgs);
    }
    conn.wake_driver.notify_one();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "ok").into_response()
}
