//! One error type for every handler, rendered as the error envelope of API.md.
//!
//! A handler returns [`ApiError`]; its `IntoResponse` sets the status and attaches an
//! [`ErrorInfo`] extension. The request middleware ([`crate::http::context`]) then writes the
//! final body with the request ID, logs internals with that ID, counts the error by code, and
//! hides internal details in production. Errors raised below the handlers (unknown route, wrong
//! method, body too large, timeout) get the same envelope there, from their status.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jibber_proto::ErrorCode;
use jibber_store::StoreError;

/// An error a handler answers with.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    /// Safe to show to the caller.
    pub message: Cow<'static, str>,
    /// For the log only (never sent in production).
    pub detail: Option<String>,
    /// Seconds, for RATE_LIMITED.
    pub retry_after: Option<u64>,
}

/// What the middleware needs to render an error; travels in the response extensions.
#[derive(Debug, Clone)]
pub struct ErrorInfo(pub ApiError);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            code,
            message: message.into(),
            detail: None,
            retry_after: None,
        }
    }

    pub fn validation(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorCode::ValidationFailed, message)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthenticated(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorCode::Unauthenticated, message)
    }

    pub fn invalid_token(message: impl Into<Cow<'static, str>>) -> Self {
        ApiError::new(ErrorCode::InvalidToken, message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after_secs.max(1)),
            ..ApiError::new(ErrorCode::RateLimited, "Too many requests; try again later")
        }
    }

    /// A bug or an unexpected failure; `detail` goes to the log only.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError {
            detail: Some(detail.to_string()),
            ..ApiError::new(ErrorCode::Internal, "Internal server error")
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                ApiError::new(ErrorCode::Conflict, format!("{what} is already taken"))
            }
            StoreError::NotFound => ApiError::not_found("resource"),
            StoreError::WrongReceiver => {
                ApiError::validation("receiver: is not the other member of this chat")
            }
            StoreError::Unavailable(detail) => ApiError {
                detail: Some(detail),
                ..ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "The database is unavailable; try again shortly",
                )
            },
            StoreError::Backend(detail) => ApiError::internal(detail),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status().into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res.extensions_mut().insert(ErrorInfo(self));
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
