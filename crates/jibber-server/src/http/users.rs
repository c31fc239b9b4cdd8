//! `/api/v1/users/*` and `/api/v1/contacts`.

use axum::extract::State;
use axum::response::Response;
use jibber_proto::api::{Envelope, PublicUser};
use jibber_proto::api::{KeyBundleResponse, Me, Pagination, RotateKeysRequest};
use jibber_proto::{B64, KEY_BUNDLE_MAX, PUBLIC_KEY_MAX};
use jibber_store::UserRecord;
use serde::Deserialize;

use super::auth::validate_bytes;
use super::extract::{ApiJson, ApiQuery, AuthUser, IdPath, limit, ok, page};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The caller's own view of an account.
pub fn me_of(u: &UserRecord) -> Me {
    Me {
        id: u.id,
        username: u.username.clone(),
        email: u.email.clone(),
        display_name: u.display_name.clone(),
        public_id_key: u.public_id_key.clone().into(),
        public_signing_key: u.public_signing_key.clone().into(),
        created_at: u.created_at,
    }
}

async fn load(state: &AppState, id: uuid::Uuid) -> ApiResult<UserRecord> {
    state
        .store
        .user_by_id(id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", responses((status = 200, body = Envelope<Me>)), security(("bearer" = [])))]
/// GET /api/v1/users/me
pub async fn me(State(state): State<AppState>, AuthUser(me): AuthUser) -> ApiResult<Response> {
    Ok(ok(me_of(&load(&state, me).await?)))
}

#[utoipa::path(get, path = "/api/v1/users/me/key-bundle", tag = "users", responses((status = 200, body = Envelope<KeyBundleResponse>)), security(("bearer" = [])))]
/// GET /api/v1/users/me/key-bundle: the sealed private keys, only ever to their owner.
pub async fn key_bundle(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> ApiResult<Response> {
    let u = load(&state, me).await?;
    Ok(ok(KeyBundleResponse {
        key_bundle: u.key_bundle.into(),
        public_id_key: u.public_id_key.into(),
        public_signing_key: u.public_signing_key.into(),
    }))
}

#[utoipa::path(put, path = "/api/v1/users/me/keys", tag = "users", request_body = RotateKeysRequest, responses((status = 200, body = Envelope<Me>)), security(("bearer" = [])))]
/// PUT /api/v1/users/me/keys: key rotation (new public keys and a new sealed bundle).
pub async fn rotate_keys(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    ApiJson(body): ApiJson<RotateKeysRequest>,
) -> ApiResult<Response> {
    validate_bytes("publicIdKey", body.public_id_key.as_bytes(), PUBLIC_KEY_MAX)?;
    validate_bytes(
        "publicSigningKey",
        body.public_signing_key.as_bytes(),
        PUBLIC_KEY_MAX,
    )?;
    validate_bytes("keyBundle", body.key_bundle.as_bytes(), KEY_BUNDLE_MAX)?;
    state
        .store
        .rotate_keys(
            me,
            body.public_id_key.into_bytes(),
            body.public_signing_key.into_bytes(),
            body.key_bundle.into_bytes(),
        )
        .await?;
    Ok(ok(me_of(&load(&state, me).await?)))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = Uuid, Path, description = "A user id")), responses((status = 200, body = Envelope<PublicUser>)), security(("bearer" = [])))]
/// GET /api/v1/users/{userId}: a public profile with the public keys.
pub async fn profile(
    State(state): State<AppState>,
    AuthUser(_me): AuthUser,
    IdPath(id): IdPath,
) -> ApiResult<Response> {
    Ok(ok(load(&state, id).await?.public()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactsQuery {
    #[serde(default)]
    #[param(max_length = 64)]
    search: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/contacts", tag = "users", params(ContactsQuery), responses((status = 200, body = Envelope<Vec<PublicUser>>)), security(("bearer" = [])))]
/// GET /api/v1/contacts?search=&cursor=&limit=: other users by username; none is `data: []`.
pub async fn contacts(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    ApiQuery(q): ApiQuery<ContactsQuery>,
) -> ApiResult<Response> {
    let limit = limit(q.limit, 50)?;
    let search = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > 64) {
        return Err(ApiError::validation("search: at most 64 characters"));
    }
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            B64::decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::validation("cursor: not a cursor this server issued"))?,
        ),
    };
    let mut users = state
        .store
        .contacts(me, search, after.as_deref(), limit + 1)
        .await?;
    let has_more = users.len() > limit as usize;
    users.truncate(limit as usize);
    let next_cursor = has_more
        .then(|| {
            users
                .last()
                .map(|u| B64::encode(u.username.to_lowercase().as_bytes()))
        })
        .flatten();
    Ok(page(
        users,
        Pagination {
            has_more,
            next_cursor,
            ..Pagination::default()
        },
    ))
}
