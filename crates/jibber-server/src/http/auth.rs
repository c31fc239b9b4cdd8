//! `/api/v1/auth/*`: OPAQUE registration and login, token refresh and logout.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use jibber_proto::api::Envelope;
use jibber_proto::api::{
    AccessTokenResponse, LoginFinishRequest, LoginFinishResponse, LoginStartRequest,
    LoginStartResponse, RefreshRequest, RefreshResponse, RegisterFinishRequest,
    RegisterStartRequest, RegisterStartResponse,
};
use jibber_proto::{ErrorCode, KEY_BUNDLE_MAX, PUBLIC_KEY_MAX};
use jibber_store::util::now_ms;
use jibber_store::{NewRefreshToken, NewUser, PendingLogin, RefreshCheck};
use time::OffsetDateTime;
use uuid::Uuid;

use super::extract::{ApiJson, ClientIp, OptionalJson, ok, with_status};
use super::users::me_of;
use crate::auth::opaque;
use crate::auth::tokens::{hash_refresh_token, new_refresh_token};
use crate::config::CookieSecure;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The cookie that carries the refresh token for browsers.
pub const REFRESH_COOKIE: &str = "jibber_refresh";
const COOKIE_PATH: &str = "/api/v1/auth";

/// Unknown user, wrong password, expired or replayed login: one answer for all.
fn bad_credentials() -> ApiError {
    ApiError::unauthenticated("Invalid username or password")
}

/// Checks a username: 3-32 characters of letters, digits, `_`, `.` and `-`.
pub fn validate_username(username: &str) -> ApiResult<()> {
    let n = username.chars().count();
    if !(jibber_proto::USERNAME_MIN..=jibber_proto::USERNAME_MAX).contains(&n) {
        return Err(ApiError::validation(format!(
            "username: must be {} to {} characters",
            jibber_proto::USERNAME_MIN,
            jibber_proto::USERNAME_MAX
        )));
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(ApiError::validation(
            "username: may contain only letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// Checks that a binary field is present and not larger than `max` bytes.
pub fn validate_bytes(field: &str, bytes: &[u8], max: usize) -> ApiResult<()> {
    if bytes.is_empty() {
        return Err(ApiError::validation(format!("{field}: must not be empty")));
    }
    if bytes.len() > max {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("{field}: larger than {max} bytes"),
        ));
    }
    Ok(())
}

fn validate_optional_text(
    field: &str,
    value: &Option<String>,
    max: usize,
) -> ApiResult<Option<String>> {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if v.chars().count() > max {
        return Err(ApiError::validation(format!(
            "{field}: at most {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "{field}: must not contain control characters"
        )));
    }
    Ok(Some(v.to_owned()))
}

#[utoipa::path(post, path = "/api/v1/auth/register/start", tag = "auth", request_body = RegisterStartRequest, responses((status = 200, body = Envelope<RegisterStartResponse>)))]
/// POST /api/v1/auth/register/start: the OPAQUE registration response.
pub async fn register_start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterStartRequest>,
) -> ApiResult<Response> {
    validate_username(&body.username)?;
    state
        .auth_limits
        .check(&state.realtime.cluster, ip, &body.username)
        .await?;
    if state
        .store
        .user_by_username(&body.username)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "username is already taken",
        ));
    }
    let response = opaque::registration_response(
        &state.opaque,
        &body.username,
        body.registration_request.as_bytes(),
    )
    .map_err(|_| {
        ApiError::validation("registrationRequest: not a valid OPAQUE registration request")
    })?;
    Ok(ok(RegisterStartResponse {
        registration_response: response.into(),
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/register/finish", tag = "auth", request_body = RegisterFinishRequest, responses((status = 201, body = Envelope<crate::http::openapi::Registered>)))]
/// POST /api/v1/auth/register/finish: stores the account (201).
pub async fn register_finish(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterFinishRequest>,
) -> ApiResult<Response> {
    validate_username(&body.username)?;
    state
        .auth_limits
        .check(&state.realtime.cluster, ip, &body.username)
        .await?;
    validate_bytes("publicIdKey", body.public_id_key.as_bytes(), PUBLIC_KEY_MAX)?;
    validate_bytes(
        "publicSigningKey",
        body.public_signing_key.as_bytes(),
        PUBLIC_KEY_MAX,
    )?;
    validate_bytes("keyBundle", body.key_bundle.as_bytes(), KEY_BUNDLE_MAX)?;
    let email = validate_optional_text("email", &body.email, jibber_proto::EMAIL_MAX)?;
    if let Some(e) = &email
        && (!e.contains('@')
            || e.starts_with('@')
            || e.ends_with('@')
            || e.contains(char::is_whitespace))
    {
        return Err(ApiError::validation("email: not an e-mail address"));
    }
    let display_name = validate_optional_text(
        "displayName",
        &body.display_name,
        jibber_proto::DISPLAY_NAME_MAX,
    )?;
    let record =
        opaque::registration_record(body.registration_record.as_bytes()).map_err(|_| {
            ApiError::validation("registrationRecord: not a valid OPAQUE registration record")
        })?;
    let user = state
        .store
        .create_user(NewUser {
            id: Uuid::now_v7(),
            username: body.username,
            email,
            display_name,
            registration_record: record,
            public_id_key: body.public_id_key.into_bytes(),
            public_signing_key: body.public_signing_key.into_bytes(),
            key_bundle: body.key_bundle.into_bytes(),
            created_at: now_ms(),
        })
        .await?;
    metrics::counter!("jibber_registrations_total").increment(1);
    Ok(with_status(
        StatusCode::CREATED,
        serde_json::json!({ "user": me_of(&user) }),
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/login/start", tag = "auth", request_body = LoginStartRequest, responses((status = 200, body = Envelope<LoginStartResponse>)))]
/// POST /api/v1/auth/login/start: the OPAQUE credential response and a login id.
pub async fn login_start(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginStartRequest>,
) -> ApiResult<Response> {
    if body.username.is_empty() || body.username.len() > 256 {
        return Err(ApiError::validation(
            "username: must be 1 to 256 characters",
        ));
    }
    state
        .auth_limits
        .check(&state.realtime.cluster, ip, &body.username)
        .await?;
    let user = state.store.user_by_username(&body.username).await?;
    // An unknown user gets opaque-ke's dummy response: the client fails as with a wrong password.
    let (response, server_state) = opaque::login_start(
        &state.opaque,
        &body.username,
        user.as_ref().map(|u| u.registration_record.as_slice()),
        body.start_login_request.as_bytes(),
    )
    .map_err(|_| {
        ApiError::validation("startLoginRequest: not a valid OPAQUE credential request")
    })?;
    let login_id = Uuid::new_v4();
    let expires_at = OffsetDateTime::now_utc() + state.settings.login_timeout;
    state
        .store
        .put_pending_login(PendingLogin {
            id: login_id,
            user_id: user.map(|u| u.id),
            state: server_state,
            expires_at,
        })
        .await?;
    Ok(ok(LoginStartResponse {
        login_id,
        login_response: response.into(),
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/login/finish", tag = "auth", request_body = LoginFinishRequest, responses((status = 200, body = Envelope<LoginFinishResponse>)))]
/// POST /api/v1/auth/login/finish: verifies the client and issues tokens.
pub async fn login_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(body): ApiJson<LoginFinishRequest>,
) -> ApiResult<Response> {
    let now = OffsetDateTime::now_utc();
    let pending = state
        .store
        .take_pending_login(body.login_id, now)
        .await?
        .ok_or_else(bad_credentials)?;
    let finished = opaque::login_finish(&pending.state, body.finish_login_request.as_bytes());
    let user_id = match (pending.user_id, finished) {
        (Some(id), Ok(())) => id,
        _ => {
            metrics::counter!("jibber_logins_total", "result" => "failed").increment(1);
            return Err(bad_credentials());
        }
    };
    let user = state
        .store
        .user_by_id(user_id)
        .await?
        .ok_or_else(bad_credentials)?;
    let (access_token, expires_in) = state.tokens.issue(user.id);
    let (refresh_token, hash) = new_refresh_token();
    let now = now_ms();
    state
        .store
        .insert_refresh_token(NewRefreshToken {
            id: Uuid::now_v7(),
            user_id: user.id,
            family_id: Uuid::now_v7(),
            token_hash: hash,
            created_at: now,
            expires_at: now + state.settings.refresh_token_ttl,
        })
        .await?;
    metrics::counter!("jibber_logins_total", "result" => "ok").increment(1);
    let jar = jar.add(refresh_cookie(&state, &headers, refresh_token.clone()));
    Ok((
        jar,
        ok(LoginFinishResponse {
            access_token,
            refresh_token,
            expires_in,
            user: me_of(&user),
        }),
    )
        .into_response())
}

fn presented_refresh_token(jar: &CookieJar, body: RefreshRequest) -> ApiResult<String> {
    body.refresh_token
        .filter(|t| !t.is_empty())
        .or_else(|| jar.get(REFRESH_COOKIE).map(|c| c.value().to_owned()))
        .ok_or_else(|| ApiError::unauthenticated("No refresh token provided"))
        // A token too long to be one of ours is presented but invalid, not missing.
        .and_then(|t| {
            if t.len() <= 256 {
                Ok(t)
            } else {
                Err(ApiError::invalid_token("Invalid token"))
            }
        })
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = Option<RefreshRequest>, responses((status = 200, body = Envelope<RefreshResponse>)))]
/// POST /api/v1/auth/refresh: spends the refresh token and issues a new pair.
pub async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> ApiResult<Response> {
    let presented = presented_refresh_token(&jar, body)?;
    let (refresh_token, hash) = new_refresh_token();
    let now = now_ms();
    let next = NewRefreshToken {
        id: Uuid::now_v7(),
        // Replaced by the old token's user and family inside the store.
        user_id: Uuid::nil(),
        family_id: Uuid::nil(),
        token_hash: hash,
        created_at: now,
        expires_at: now + state.settings.refresh_token_ttl,
    };
    match state
        .store
        .rotate_refresh_token(hash_refresh_token(&presented), next, now)
        .await?
    {
        RefreshCheck::Valid { user_id, .. } => {
            let (access_token, expires_in) = state.tokens.issue(user_id);
            let jar = jar.add(refresh_cookie(&state, &headers, refresh_token.clone()));
            Ok((
                jar,
                ok(RefreshResponse {
                    access_token,
                    refresh_token,
                    expires_in,
                }),
            )
                .into_response())
        }
        RefreshCheck::Reused { .. } => {
            metrics::counter!("jibber_refresh_reuse_total").increment(1);
            tracing::warn!("refresh token reuse: the token family was revoked");
            Err(ApiError::invalid_token(
                "Refresh token was already used; this session has been signed out",
            ))
        }
        RefreshCheck::Expired => Err(ApiError::new(
            ErrorCode::TokenExpired,
            "Refresh token expired",
        )),
        RefreshCheck::Unknown => Err(ApiError::invalid_token("Invalid refresh token")),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/refresh-socket-token", tag = "auth", request_body = Option<RefreshRequest>, responses((status = 200, body = Envelope<AccessTokenResponse>)))]
/// POST /api/v1/auth/refresh-socket-token: a new access token for a live refresh token,
/// without rotating it (the name comes from the original design).
pub async fn refresh_socket_token(
    State(state): State<AppState>,
    jar: CookieJar,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> ApiResult<Response> {
    let presented = presented_refresh_token(&jar, body)?;
    match state
        .store
        .check_refresh_token(hash_refresh_token(&presented), now_ms())
        .await?
    {
        RefreshCheck::Valid { user_id, .. } => {
            let (access_token, expires_in) = state.tokens.issue(user_id);
            Ok(ok(AccessTokenResponse {
                access_token,
                expires_in,
            }))
        }
        RefreshCheck::Expired => Err(ApiError::new(
            ErrorCode::TokenExpired,
            "Refresh token expired",
        )),
        RefreshCheck::Reused { .. } | RefreshCheck::Unknown => {
            Err(ApiError::invalid_token("Invalid refresh token"))
        }
    }
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", request_body = Option<RefreshRequest>, responses((status = 200, body = crate::http::openapi::Done)))]
/// POST /api/v1/auth/logout: revokes the refresh-token family and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    jar: CookieJar,
    OptionalJson(body): OptionalJson<RefreshRequest>,
) -> ApiResult<Response> {
    if let Ok(token) = presented_refresh_token(&jar, body) {
        state
            .store
            .revoke_refresh_family(hash_refresh_token(&token), now_ms())
            .await?;
    }
    let jar = jar.remove(Cookie::build((REFRESH_COOKIE, "")).path(COOKIE_PATH));
    Ok((jar, ok(serde_json::Value::Null)).into_response())
}

fn refresh_cookie(state: &AppState, headers: &HeaderMap, token: String) -> Cookie<'static> {
    let secure = match state.settings.cookie_secure {
        CookieSecure::Always => true,
        CookieSecure::Never => false,
        CookieSecure::Auto => {
            state.settings.is_production()
                || headers
                    .get("x-forwarded-proto")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
        }
    };
    let max_age = time::Duration::try_from(state.settings.refresh_token_ttl)
        .unwrap_or(time::Duration::days(30));
    Cookie::build((REFRESH_COOKIE, token))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .path(COOKIE_PATH)
        .max_age(max_age)
        .build()
}
