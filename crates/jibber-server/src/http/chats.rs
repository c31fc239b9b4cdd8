//! `/api/v1/chats`: create-or-get a 1:1 chat, and the chat list.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jibber_proto::B64;
use jibber_proto::api::{Chat, Envelope};
use jibber_proto::api::{CreateChatRequest, Pagination};
use jibber_store::ChatCursor;
use jibber_store::util::{now_ms, to_ms};
use serde::Deserialize;
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, AuthUser, limit, ok, page, with_status};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[utoipa::path(post, path = "/api/v1/chats", tag = "chats", request_body = CreateChatRequest, responses((status = 200, body = Envelope<Chat>), (status = 201, body = Envelope<Chat>)), security(("bearer" = [])))]
/// POST /api/v1/chats `{userId}`: the chat with that user, created if absent (201) or
/// existing (200).
pub async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    ApiJson(body): ApiJson<CreateChatRequest>,
) -> ApiResult<Response> {
    if body.user_id == me {
        return Err(ApiError::validation(
            "userId: cannot start a chat with yourself",
        ));
    }
    let result = state
        .store
        .create_or_get_chat(me, body.user_id, Uuid::now_v7(), now_ms())
        .await
        .map_err(|e| match e {
            jibber_store::StoreError::NotFound => ApiError::not_found("user"),
            other => other.into(),
        })?;
    if result.created {
        metrics::counter!("jibber_chats_created_total").increment(1);
        crate::realtime::notify::new_conversation(&state, result.chat.id, me, body.user_id).await;
        Ok(with_status(StatusCode::CREATED, result.chat))
    } else {
        Ok(ok(result.chat))
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

fn encode_cursor(c: ChatCursor) -> String {
    B64::encode(format!("{}.{}", c.activity_ms, c.chat_id).as_bytes())
}

fn decode_cursor(s: &str) -> Option<ChatCursor> {
    let text = String::from_utf8(B64::decode(s).ok()?).ok()?;
    let (ms, id) = text.split_once('.')?;
    Some(ChatCursor {
        activity_ms: ms.parse().ok()?,
        chat_id: Uuid::parse_str(id).ok()?,
    })
}

#[utoipa::path(get, path = "/api/v1/chats", tag = "chats", params(ListQuery), responses((status = 200, body = Envelope<Vec<Chat>>)), security(("bearer" = [])))]
/// GET /api/v1/chats?cursor=&limit=: the caller's chats, most recent activity first, each
/// with the other member, the last message and the unread count. One query per page.
pub async fn list(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit, 50)?;
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            decode_cursor(c)
                .ok_or_else(|| ApiError::validation("cursor: not a cursor this server issued"))?,
        ),
    };
    let mut chats = state.store.list_chats(me, after, limit + 1).await?;
    let has_more = chats.len() > limit as usize;
    chats.truncate(limit as usize);
    let next_cursor = if has_more {
        chats.last().map(|c| {
            encode_cursor(ChatCursor {
                activity_ms: to_ms(c.updated_at),
                chat_id: c.id,
            })
        })
    } else {
        None
    };
    Ok(page(
        chats,
        Pagination {
            has_more,
            next_cursor,
            ..Pagination::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage() {
        let c = ChatCursor {
            activity_ms: 1_763_000_000_123,
            chat_id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        assert_eq!(decode_cursor("not a cursor"), None);
        assert_eq!(decode_cursor(&B64::encode(b"12.notauuid")), None);
    }
}
