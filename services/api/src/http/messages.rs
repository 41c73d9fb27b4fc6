//! Messages: history by `seq` cursor, and sending, editing, deleting and marking read over REST.
//!
//! History pages are ascending by `seq`. Without cursors the newest `limit` messages come back;
//! `before=S` pages backwards (older than S), `after=S` forwards (newer than S). `hasMore` tells whether
//! another page exists in the direction read, and `nextBefore`/`nextAfter` are the cursors for it. Pages
//! merge MySQL with the room's recent messages in Redis, so a message appears as soon as it is acked,
//! before the persistence worker has written it (read-your-writes).
//!
//! Writes go through the room path the gateway uses ([`chat_realtime::Realtime`]): one Redis script per
//! message (rate limit, dedupe by `clientMsgId`, `seq`, persistence stream, room log, publish), so
//! REST-sent messages reach live sockets exactly like Socket.IO ones.

use super::error::{ApiError, ErrorBody, Result};
use super::extract::{parse_id, AuthUser, Json, Query};
use super::rooms::authorize_member;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chat_domain::{ClientMsgId, FieldErrors, MessageContent, MessageType};
use chat_realtime::{CursorKind, SendRequest};
use chat_store::messages::HistoryQuery;
use chat_store::Message;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history, send_message))
        .routes(routes!(edit_message, delete_message))
        .routes(routes!(mark_read))
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Only messages with a smaller `seq`.
    #[param(minimum = 0)]
    pub before: Option<i64>,
    /// Only messages with a greater `seq`.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    /// Ascending by `seq`. Deleted messages have `content: null` and `deletedAt`.
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// Cursor for the previous (older) page, when reading backwards.
    pub next_before: Option<i64>,
    /// Cursor for the next (newer) page, when reading forwards.
    pub next_after: Option<i64>,
}

/// A page of a room's history (members only).
#[utoipa::path(get, path = "/rooms/{id}/messages", tag = "messages", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), HistoryParams),
    responses((status = 200, body = HistoryResponse), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn history(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Query(p): Query<HistoryParams>,
) -> Result<axum::Json<HistoryResponse>> {
    let id = parse_id(&id, "room id")?;
    let limit = p.limit.unwrap_or(DEFAULT_PAGE);
    let mut errs = FieldErrors::new();
    if !(1..=MAX_PAGE).contains(&limit) {
        errs.add("limit", format!("must be between 1 and {MAX_PAGE}"));
    }
    if p.before.is_some_and(|b| b < 0) {
        errs.add("before", "must not be negative");
    }
    if p.after.is_some_and(|a| a < 0) {
        errs.add("after", "must not be negative");
    }
    errs.into_result().map_err(ApiError::Validation)?;
    authorize_member(&st, id, user.id).await?;
    let page = st
        .rt
        .history(
            id,
            HistoryQuery {
                before: p.before,
                after: p.after,
                limit,
            },
        )
        .await?;
    let forward = p.after.is_some();
    let next_before = (!forward && page.has_more)
        .then(|| page.messages.first().map(|m| m.seq))
        .flatten();
    let next_after = (forward && page.has_more)
        .then(|| page.messages.last().map(|m| m.seq))
        .flatten();
    Ok(axum::Json(HistoryResponse {
        messages: page.messages,
        has_more: page.has_more,
        next_before,
        next_after,
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageRequest {
    /// 1–4,000 characters, not only whitespace.
    #[schema(required = true, min_length = 1, max_length = 4000)]
    pub content: Option<String>,
    /// `text` (default), `image` or `file`.
    #[serde(rename = "type")]
    #[schema(pattern = "^(text|image|file)$")]
    pub kind: Option<String>,
    /// The client's id for this message (1–64 printable ASCII characters): a retry with the same id
    /// returns the original message instead of sending it twice.
    #[schema(min_length = 1, max_length = 64, pattern = "^[!-~]{1,64}$")]
    pub client_msg_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageResponse {
    pub message: Message,
    /// True when this was a retry of a `clientMsgId` already sent: `message` is the original.
    pub duplicate: bool,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct EditMessageRequest {
    /// 1–4,000 characters, not only whitespace.
    #[schema(required = true, min_length = 1, max_length = 4000)]
    pub content: Option<String>,
}

/// An edit, as every member of the room receives it (`message_edited`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageEdited {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub content: String,
    pub edited_at: DateTime<Utc>,
}

/// A deletion, as every member of the room receives it (`message_deleted`).
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageDeleted {
    pub message_id: Uuid,
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub deleted_at: DateTime<Utc>,
    pub deleted_by: Uuid,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MarkReadRequest {
    /// Everything up to this `seq` is read (clamped to the room's last message). Give this or
    /// `messageId`.
    #[schema(minimum = 0)]
    pub seq: Option<i64>,
    /// Everything up to this message is read.
    #[schema(format = Uuid)]
    pub message_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkReadResponse {
    pub room_id: Uuid,
    /// The caller's read cursor afterwards (it never moves backwards).
    pub read_seq: i64,
    /// Whether it moved (and a read receipt went to the room).
    pub moved: bool,
}

/// Send a message to a room (members only), through the same path as the gateway's `send_message`:
/// rate limited per user and room (429 `RATE_LIMITED` with `Retry-After`), deduplicated by
/// `clientMsgId` (a retry answers 200 with the original and `duplicate: true`), and visible in the
/// room's history at once.
#[utoipa::path(post, path = "/rooms/{id}/messages", tag = "messages", request_body = SendMessageRequest,
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 201, body = SendMessageResponse, description = "sent"),
        (status = 200, body = SendMessageResponse, description = "a retry of a clientMsgId already sent: the original"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn send_message(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<SendMessageRequest>,
) -> Result<(StatusCode, axum::Json<SendMessageResponse>)> {
    let id = parse_id(&id, "room id")?;
    let mut errs = FieldErrors::new();
    let content = errs.required("content", req.content.as_deref(), MessageContent::parse);
    let kind = errs
        .optional("type", req.kind.as_deref(), MessageType::parse)
        .unwrap_or_default();
    let client_msg_id = errs.optional(
        "clientMsgId",
        req.client_msg_id.as_deref(),
        ClientMsgId::parse,
    );
    let (Some(content), true) = (content, errs.is_empty()) else {
        return Err(errs.into());
    };
    authorize_member(&st, id, user.id).await?;
    let sent = st
        .rt
        .send(&SendRequest {
            room: id,
            sender: user.id,
            kind,
            content,
            client_msg_id,
            traceparent: chat_telemetry::current_traceparent(),
        })
        .await?;
    let status = if sent.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        axum::Json(SendMessageResponse {
            message: sent.message,
            duplicate: sent.duplicate,
        }),
    ))
}

/// Edit one of your messages (members of its room; only its sender).
#[utoipa::path(patch, path = "/messages/{id}", tag = "messages", request_body = EditMessageRequest,
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MessageEdited), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown, deleted, or in a room you are not in"),
        (status = 422, body = ErrorBody)))]
async fn edit_message(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<EditMessageRequest>,
) -> Result<axum::Json<MessageEdited>> {
    let id = parse_id(&id, "message id")?;
    let mut errs = FieldErrors::new();
    let content = errs.required("content", req.content.as_deref(), MessageContent::parse);
    let Some(content) = content else {
        return Err(errs.into());
    };
    let edited = st
        .rt
        .edit(
            user.id,
            id,
            &content,
            chat_telemetry::current_traceparent().as_deref(),
        )
        .await?;
    Ok(axum::Json(
        serde_json::from_value(edited).map_err(ApiError::internal)?,
    ))
}

/// Delete a message (soft: it keeps its place with `content: null`): its sender or an admin of its
/// room may.
#[utoipa::path(delete, path = "/messages/{id}", tag = "messages", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MessageDeleted), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "unknown, already deleted, or in a room you are not in")))]
async fn delete_message(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<axum::Json<MessageDeleted>> {
    let id = parse_id(&id, "message id")?;
    let deleted = st
        .rt
        .delete(
            user.id,
            id,
            chat_telemetry::current_traceparent().as_deref(),
        )
        .await?;
    Ok(axum::Json(
        serde_json::from_value(deleted).map_err(ApiError::internal)?,
    ))
}

/// Mark a room read up to a `seq` or a message (members only). The cursor only moves forward and
/// never past the room's last message; when it moves, the room gets a read receipt.
#[utoipa::path(post, path = "/rooms/{id}/read", tag = "messages", request_body = MarkReadRequest,
    security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = MarkReadResponse), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn mark_read(
    State(st): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    Json(req): Json<MarkReadRequest>,
) -> Result<axum::Json<MarkReadResponse>> {
    let id = parse_id(&id, "room id")?;
    let mut errs = FieldErrors::new();
    if req.seq.is_some_and(|s| s < 0) {
        errs.add("seq", "must not be negative");
    }
    let message_id = errs.optional("messageId", req.message_id.as_deref(), |s| {
        Uuid::try_parse(s).map_err(|_| "must be a UUID".to_owned())
    });
    match (req.seq, &req.message_id) {
        (None, None) => errs.add("seq", "seq or messageId is required"),
        (Some(_), Some(_)) => errs.add("messageId", "give seq or messageId, not both"),
        _ => {}
    }
    errs.into_result()?;
    authorize_member(&st, id, user.id).await?;
    let membership = st
        .store
        .membership(id, user.id)
        .await?
        .ok_or(ApiError::Forbidden("join the room first".into()))?;
    let seq = match (req.seq, message_id) {
        (Some(seq), _) => seq,
        (None, Some(mid)) => st
            .rt
            .seq_of(id, mid)
            .await?
            .ok_or(ApiError::NotFound("message not found".into()))?,
        (None, None) => return Err(ApiError::field("seq", "seq or messageId is required")),
    };
    let (read_seq, moved) = st
        .rt
        .cursor(
            user.id,
            id,
            CursorKind::Read,
            seq,
            membership.read_seq,
            chat_telemetry::current_traceparent().as_deref(),
        )
        .await?;
    Ok(axum::Json(MarkReadResponse {
        room_id: id,
        read_seq,
        moved,
    }))
}
