//! Extractors that turn every rejection into an [`ApiError`], and the authenticated caller.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use jibber_proto::ErrorCode;
use jibber_proto::api::Envelope;
use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::auth::tokens::TokenError;
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body; a bad one is VALIDATION_FAILED naming the field, a large one PAYLOAD_TOO_LARGE.
pub struct ApiJson<T>(pub T);

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::JsonDataError(e) => {
            ApiError::validation(invalid_field_message(&e.body_text()))
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::validation(format!("Malformed JSON: {}", strip_prefix(&e.body_text())))
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::validation("Expected a JSON body with Content-Type: application/json")
        }
        other if other.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "The request body is too large")
        }
        other => ApiError::validation(other.body_text()),
    }
}

fn strip_prefix(text: &str) -> &str {
    text.split_once(": ").map(|(_, rest)| rest).unwrap_or(text)
}

/// axum reports `Failed to deserialize the JSON body into the target type: field: problem`;
/// we keep `field: problem`, or name the body when serde could not say which field.
fn invalid_field_message(text: &str) -> String {
    let rest = strip_prefix(text);
    if rest.starts_with("missing field") || rest.starts_with("unknown field") || rest.contains(": ")
    {
        rest.to_owned()
    } else {
        format!("body: {rest}")
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Json::<Object<T>>::from_request(req, state)
            .await
            .map(|Json(Object(v))| ApiJson(v))
            .map_err(json_rejection)
    }
}

/// Parses a JSON body as [`ApiJson`] does once the body is read (used by the fuzz targets).
pub fn parse_json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    Json::<Object<T>>::from_bytes(bytes)
        .map(|Json(Object(v))| v)
        .map_err(json_rejection)
}

/// A body that must be a JSON object: serde's derived structs also accept an array of the
/// field values (`["alice", "…"]`), which is not the documented shape.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }

        deserializer
            .deserialize_map(ObjectVisitor(PhantomData))
            .map(Object)
    }
}

/// A JSON body that may be absent (an empty body yields `T::default()`).
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let has_body = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() != b"0")
            && req.headers().contains_key(header::CONTENT_TYPE);
        if !has_body {
            return Ok(OptionalJson(T::default()));
        }
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| OptionalJson(v))
    }
}

/// Query parameters; bad ones are VALIDATION_FAILED.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| {
                ApiError::validation(format!("Invalid query: {}", strip_prefix(&e.body_text())))
            })
    }
}

/// A UUID path parameter; anything else is VALIDATION_FAILED.
pub struct IdPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|Path(s)| Uuid::parse_str(&s).ok())
            .map(IdPath)
            .ok_or_else(|| ApiError::validation("The id in the path must be a UUID"))
    }
}

/// The caller, proven by `Authorization: Bearer <access token>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Uuid);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthenticated("No token provided"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::invalid_token("Invalid token"))?;
        match state.tokens.verify(token) {
            Ok(claims) => Ok(AuthUser(claims.sub)),
            Err(TokenError::Expired) => {
                Err(ApiError::new(ErrorCode::TokenExpired, "Token expired"))
            }
            Err(TokenError::Invalid) => Err(ApiError::invalid_token("Invalid token")),
        }
    }
}

/// The client's address: the socket peer, or the first `X-Forwarded-For` hop behind a
/// trusted proxy.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.settings.trust_proxy
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Ok(ClientIp(Some(ip)));
        }
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// `{"success": true, "data": ...}` with a status.
pub fn ok<T: Serialize>(data: T) -> Response {
    Json(Envelope {
        success: true,
        data,
        message: None,
        pagination: None,
    })
    .into_response()
}

/// The success envelope with pagination.
pub fn page<T: Serialize>(data: T, pagination: jibber_proto::api::Pagination) -> Response {
    Json(Envelope {
        success: true,
        data,
        message: None,
        pagination: Some(pagination),
    })
    .into_response()
}

/// The success envelope with a status other than 200.
pub fn with_status<T: Serialize>(status: axum::http::StatusCode, data: T) -> Response {
    (
        status,
        Json(Envelope {
            success: true,
            data,
            message: None,
            pagination: None,
        }),
    )
        .into_response()
}

/// A `limit` query value bounded to 1..=PAGE_MAX, with a default.
pub fn limit(value: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=jibber_proto::PAGE_MAX).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::validation(format!(
            "limit: must be between 1 and {}",
            jibber_proto::PAGE_MAX
        ))),
    }
}
