//! `/api/v1/messages/*` and `/api/v1/sync`: history, catch-up, send, receipts.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jibber_proto::api::{DeliveredReceipt, Envelope, Message, ReadReceipt, SendMessageResponse};
use jibber_proto::api::{MarkReadRequest, Pagination, SendMessageRequest, SyncResponse};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, AuthUser, IdPath, limit, ok, page, with_status};
use crate::error::{ApiError, ApiResult};
use crate::service::{self, chat_not_found};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    #[serde(default)]
    #[param(minimum = 1)]
    before: Option<i64>,
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "messages", params(("id" = Uuid, Path, description = "A chat id"), HistoryQuery), responses((status = 200, body = Envelope<Vec<Message>>)), security(("bearer" = [])))]
/// GET /api/v1/messages/{chatId}?before=&limit=: a page of history, chronological, ending
/// before sequence `before` (or at the newest message).
pub async fn history(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    IdPath(chat): IdPath,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit, 50)?;
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::validation(
            "before: must be a sequence number of 1 or more",
        ));
    }
    let mut messages = state
        .store
        .messages_before(me, chat, q.before, limit + 1)
        .await
        .map_err(chat_not_found)?;
    let has_more = messages.len() > limit as usize;
    if has_more {
        messages.remove(0);
    }
    let next_before = if has_more {
        messages.first().map(|m| m.sequence_number)
    } else {
        None
    };
    Ok(page(
        messages,
        Pagination {
            has_more,
            next_before,
            ..Pagination::default()
        },
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SinceQuery {
    #[serde(default)]
    #[param(minimum = 0)]
    since: Option<i64>,
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/messages/{id}/sync", tag = "messages", params(("id" = Uuid, Path, description = "A chat id"), SinceQuery), responses((status = 200, body = Envelope<Vec<Message>>)), security(("bearer" = [])))]
/// GET /api/v1/messages/{chatId}/sync?since=: every message after `since`, chronological,
/// in pages (`nextSince` continues).
pub async fn chat_sync(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    IdPath(chat): IdPath,
    ApiQuery(q): ApiQuery<SinceQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit, jibber_proto::PAGE_MAX)?;
    let since = q.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::validation("since: must be zero or more"));
    }
    let mut messages = state
        .store
        .messages_since(me, chat, since, limit + 1)
        .await
        .map_err(chat_not_found)?;
    let has_more = messages.len() > limit as usize;
    messages.truncate(limit as usize);
    let next_since = Some(messages.last().map_or(since, |m| m.sequence_number));
    Ok(page(
        messages,
        Pagination {
            has_more,
            next_since,
            ..Pagination::default()
        },
    ))
}

#[utoipa::path(get, path = "/api/v1/sync", tag = "messages", params(SinceQuery), responses((status = 200, body = Envelope<SyncResponse>)), security(("bearer" = [])))]
/// GET /api/v1/sync?since=: the caller's change feed after a cursor (0 for everything).
pub async fn sync(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<SinceQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit, jibber_proto::PAGE_MAX)?;
    let since = q.since.unwrap_or(0);
    if since < 0 {
        return Err(ApiError::validation("since: must be zero or more"));
    }
    let mut changes = state.store.changes_since(me, since, limit + 1).await?;
    let has_more = changes.len() > limit as usize;
    changes.truncate(limit as usize);
    let next_cursor = changes.last().map_or(since, |c| c.cursor());
    Ok(ok(SyncResponse {
        changes,
        next_cursor,
        has_more,
    }))
}

#[utoipa::path(post, path = "/api/v1/messages/{id}", tag = "messages", request_body = SendMessageRequest, params(("id" = Uuid, Path, description = "A chat id")), responses((status = 201, body = Envelope<SendMessageResponse>), (status = 200, description = "A repeated tempMessageId: the first copy, duplicate: true", body = Envelope<SendMessageResponse>)), security(("bearer" = [])))]
/// POST /api/v1/messages/{chatId}: stores a message (201), or returns the first copy of a
/// repeated `tempMessageId` (200, `duplicate: true`).
pub async fn send(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    IdPath(chat): IdPath,
    ApiJson(body): ApiJson<SendMessageRequest>,
) -> ApiResult<Response> {
    let sent = service::send_message(&state, me, chat, body, None)
        .await?
        .sent;
    let ack = crate::service::ack_of(&sent);
    Ok(if sent.duplicate {
        ok(ack)
    } else {
        with_status(StatusCode::CREATED, ack)
    })
}

#[utoipa::path(post, path = "/api/v1/messages/{id}/delivered", tag = "messages", params(("id" = Uuid, Path, description = "A message id")), responses((status = 200, body = Envelope<DeliveredReceipt>)), security(("bearer" = [])))]
/// POST /api/v1/messages/{messageId}/delivered: marks a received message delivered, once.
pub async fn delivered(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    IdPath(id): IdPath,
) -> ApiResult<Response> {
    Ok(ok(service::mark_delivered(&state, me, id).await?))
}

#[utoipa::path(post, path = "/api/v1/messages/{id}/read", tag = "messages", request_body = MarkReadRequest, params(("id" = Uuid, Path, description = "A chat id")), responses((status = 200, body = Envelope<ReadReceipt>)), security(("bearer" = [])))]
/// POST /api/v1/messages/{chatId}/read `{upToSequence}`: marks read and resets the unread
/// count, atomically.
pub async fn read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    IdPath(chat): IdPath,
    ApiJson(body): ApiJson<MarkReadRequest>,
) -> ApiResult<Response> {
    Ok(ok(service::mark_read(
        &state,
        me,
        chat,
        body.up_to_sequence,
    )
    .await?))
}
