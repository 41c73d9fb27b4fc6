//! `/rooms/{id}/messages`: history by `seq` cursor.
//!
//! Pages are ascending by `seq`. Without cursors the newest `limit` messages come back; `before=S` pages
//! backwards (older than S), `after=S` forwards (newer than S). `hasMore` tells whether another page
//! exists in the direction read, and `nextBefore`/`nextAfter` are the cursors for it.

use super::error::{ApiError, ErrorBody, Result};
use super::extract::{parse_id, AuthUser, Query};
use super::rooms::authorize_member;
use crate::state::AppState;
use axum::extract::{Path, State};
use chat_domain::FieldErrors;
use chat_store::messages::HistoryQuery;
use chat_store::Message;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

pub const DEFAULT_PAGE: i64 = 50;
pub const MAX_PAGE: i64 = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(history))
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
        .store
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
