//! Extractors that turn raw requests into validated input or a clear [`ApiError`]:
//!
//! - [`Json`]: 415 without a JSON content type, 413 over the body limit, 400 for malformed JSON, 422 with
//!   the offending field's path for well-formed JSON of the wrong shape;
//! - [`Query`]: 400 for unparsable query strings;
//! - [`AuthUser`]: a verified, unrevoked access token, else 401;
//! - [`parse_id`]: path ids must be UUIDs, else 400.

use super::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use chat_auth::{AuthError, Claims};
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use uuid::Uuid;

/// A JSON body, deserialized with the failing field's path reported.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let body = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
        parse_json(&body).map(Json)
    }
}

/// A JSON body that may be absent entirely (then `T::default()`).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let has_body = req.headers().contains_key(header::CONTENT_TYPE)
            || req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v != "0");
        if !has_body {
            return Ok(OptionalJson(T::default()));
        }
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| OptionalJson(v))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." { "body".to_owned() } else { path };
            ApiError::field(&field, &data_error_message(&inner))
        } else {
            ApiError::InvalidJson(inner.to_string())
        }
    })?;
    de.end().map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(value)
}

/// serde's message without its " at line 1 column 12" suffix.
fn data_error_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg,
    }
}

/// Query parameters; an unparsable query string is a 400.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Parses a path segment as a UUID.
pub fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, ApiError> {
    Uuid::try_parse(raw).map_err(|_| ApiError::BadRequest(format!("{what} must be a UUID")))
}

/// The caller, authenticated by a valid, unrevoked `Authorization: Bearer` access token.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: Uuid,
    pub claims: Claims,
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The rate-limit middleware has usually verified the token and checked revocation already.
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        if parts.extensions.get::<RevokedToken>().is_some() {
            return Err(ApiError::Unauthorized("token revoked"));
        }
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let claims = state.tokens.verify(token).map_err(|e| match e {
            AuthError::Expired => ApiError::Unauthorized("token expired"),
            _ => ApiError::Unauthorized("invalid token"),
        })?;
        if state.bus.is_jti_revoked(claims.sub, claims.jti).await? {
            return Err(ApiError::Unauthorized("token revoked"));
        }
        let user = AuthUser {
            id: claims.sub,
            claims,
        };
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// Set by the rate-limit middleware when the request's token has been revoked.
#[derive(Debug, Clone, Copy)]
pub struct RevokedToken;

/// The client's address: the peer address, or — when `TRUST_PROXY` is on — the **right-most**
/// `X-Forwarded-For` entry, the one our own proxy appended. (The left-most entries are whatever the client
/// sent, so trusting them would let anyone pick a fresh address per request.)
pub fn client_ip(
    parts_headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
    trust_proxy: bool,
) -> IpAddr {
    if trust_proxy {
        if let Some(ip) = parts_headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
    }
    peer.map(|c| c.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The client address as an extractor.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(ClientIp(client_ip(
            &parts.headers,
            peer,
            state.config.trust_proxy,
        )))
    }
}
