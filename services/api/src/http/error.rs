//! The one error type of the HTTP layer. Every failure becomes `{"error":{"code","message","fields?"}}`
//! with a stable machine-readable `code`; 5xx bodies say nothing about the cause, which is logged once
//! here, at the boundary.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chat_domain::FieldErrors;
use serde::Serialize;
use std::borrow::Cow;
use std::time::Duration;
use utoipa::ToSchema;

use crate::metrics::Dependency;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("malformed JSON: {0}")]
    InvalidJson(String),
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    #[error("{0}")]
    NotFound(Cow<'static, str>),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `VALIDATION`, `NOT_FOUND`, `RATE_LIMITED`.
    pub code: &'static str,
    pub message: String,
    /// Per-field messages for `VALIDATION` errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub fields: Option<FieldErrors>,
    /// Milliseconds to wait, for `RATE_LIMITED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// Whole seconds to wait (rounded up, as in the `Retry-After` header), for `RATE_LIMITED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::InvalidJson(_) => "INVALID_JSON",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Validation(_) => "VALIDATION",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::Conflict { code, .. } => code,
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// A single-field validation error.
    pub fn field(field: &str, message: &str) -> Self {
        let mut f = FieldErrors::new();
        f.add(field, message);
        Self::Validation(f)
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    /// A password hashing failure: 503 when every hashing slot stayed busy, else 500.
    pub fn hashing(e: anyhow::Error) -> Self {
        if e.is::<crate::state::HashingBusy>() {
            Self::Unavailable(e)
        } else {
            Self::Internal(e)
        }
    }
}

impl From<chat_store::StoreError> for ApiError {
    fn from(e: chat_store::StoreError) -> Self {
        match e {
            chat_store::StoreError::NotFound => Self::NotFound("not found".into()),
            e if e.is_transient() => Self::Unavailable(e.into()),
            e => Self::Internal(e.into()),
        }
    }
}

impl From<chat_bus::BusError> for ApiError {
    fn from(e: chat_bus::BusError) -> Self {
        Self::Unavailable(e.into())
    }
}

/// The room path's refusals keep their code: `VALIDATION` 422, `FORBIDDEN` 403, `NOT_FOUND` 404,
/// `RATE_LIMITED` 429 (with `Retry-After`), `UNAVAILABLE` 503 (also when a replica did not confirm
/// a write in time: the client retries with the same `clientMsgId`).
impl From<chat_realtime::RtError> for ApiError {
    fn from(e: chat_realtime::RtError) -> Self {
        use chat_realtime::RtError;
        match e {
            RtError::Validation(m) => Self::field("body", &m),
            RtError::Forbidden(m) => Self::Forbidden(m.into()),
            RtError::NotFound(m) => Self::NotFound(m.into()),
            RtError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            RtError::Unavailable(e) => Self::Unavailable(e),
            RtError::NotReplicated => Self::Unavailable(anyhow::anyhow!(
                "the write was not confirmed by a Redis replica in time"
            )),
        }
    }
}

impl From<FieldErrors> for ApiError {
    fn from(f: FieldErrors) -> Self {
        Self::Validation(f)
    }
}

/// The dependency a 5xx failed on, for `chat_api_{mysql,redis}_errors_total` (counted by the metrics
/// middleware from the response's extensions).
fn dependency_of(e: &anyhow::Error) -> Option<Dependency> {
    e.chain().find_map(|c| {
        if c.is::<chat_store::StoreError>() || c.is::<sqlx::Error>() {
            Some(Dependency::Mysql)
        } else if c.is::<chat_bus::BusError>() || c.is::<deadpool_redis::redis::RedisError>() {
            Some(Dependency::Redis)
        } else {
            None
        }
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let dependency = match &self {
            Self::Internal(e) | Self::Unavailable(e) => {
                tracing::error!(error = ?e, code = self.code(), "request failed");
                dependency_of(e)
            }
            _ => {
                tracing::debug!(code = self.code(), error = %self, "request refused");
                None
            }
        };
        let message = match &self {
            Self::Internal(_) => "internal error".to_owned(),
            Self::Unavailable(_) => "service temporarily unavailable".to_owned(),
            Self::Validation(f) => format!("validation failed: {f}"),
            other => other.to_string(),
        };
        let retry_after = match &self {
            Self::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        };
        let retry_after_secs = retry_after.map(|d| {
            u64::try_from(d.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1)
        });
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                fields: match self {
                    Self::Validation(f) => Some(f),
                    _ => None,
                },
                retry_after_ms: retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                retry_after: retry_after_secs,
            },
        };
        let mut res = (status, axum::Json(body)).into_response();
        if let Some(dep) = dependency {
            res.extensions_mut().insert(dep);
        }
        if let Some(secs) = retry_after_secs {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}
