//! The middleware around every request: request ID, tracing span, HTTP metrics, and the one
//! error envelope.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jibber_proto::{ErrorBody, ErrorCode, ErrorEnvelope};
use tracing::Instrument;
use uuid::Uuid;

use super::REQUEST_ID;
use crate::error::{ApiError, ErrorInfo};
use crate::state::AppState;

/// The request ID of the current request, in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A caller's request ID is kept if it is short and plain; otherwise a new one is made.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span =
        tracing::info_span!("request", request_id = %request_id, method = %method, route = %route);

    let mut res = next.run(req).instrument(span.clone()).await;

    let status = res.status();
    let info = res.extensions_mut().remove::<ErrorInfo>();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if info.is_some() || ((status.is_client_error() || status.is_server_error()) && !is_json) {
        let err = info.map(|i| i.0).unwrap_or_else(|| {
            let code = ErrorCode::from_status(status.as_u16());
            let message = match code {
                ErrorCode::NotFound => "No such route".to_owned(),
                ErrorCode::MethodNotAllowed => format!("{method} is not allowed on this route"),
                ErrorCode::PayloadTooLarge => "The request body is too large".to_owned(),
                ErrorCode::ServiceUnavailable => "The request took too long; try again".to_owned(),
                _ => status.canonical_reason().unwrap_or("Error").to_owned(),
            };
            ApiError::new(code, message)
        });
        res = render(&state, &err, &request_id, res, &span);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(&REQUEST_ID, v);
    }

    let status = res.status().as_u16().to_string();
    let elapsed = start.elapsed().as_secs_f64();
    metrics::counter!("jibber_http_requests_total", "method" => method.to_string(), "route" => route.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("jibber_http_request_duration_seconds", "method" => method.to_string(), "route" => route.clone())
        .record(elapsed);
    span.in_scope(|| {
        tracing::info!(status = %status, latency_ms = elapsed * 1000.0, "request finished");
    });
    res
}

fn render(
    state: &AppState,
    err: &ApiError,
    request_id: &str,
    res: Response,
    span: &tracing::Span,
) -> Response {
    metrics::counter!("jibber_errors_total", "code" => err.code.as_str()).increment(1);
    span.in_scope(|| {
        if err.code == ErrorCode::Internal {
            tracing::error!(code = %err.code, detail = err.detail.as_deref().unwrap_or(""), "internal error");
        } else if let Some(detail) = &err.detail {
            tracing::warn!(code = %err.code, detail = %detail, "request failed");
        } else {
            tracing::debug!(code = %err.code, message = %err.message, "request refused");
        }
    });
    // Development shows the internal detail to help; production never does.
    let message = match (&err.detail, state.settings.is_production()) {
        (Some(detail), false) if err.code == ErrorCode::Internal => {
            format!("{}: {detail}", err.message)
        }
        _ => err.message.to_string(),
    };
    let body = ErrorEnvelope {
        success: false,
        error: ErrorBody {
            code: err.code,
            message,
            status_code: err.code.status(),
            request_id: Some(request_id.to_owned()),
        },
    };
    let (mut parts, _) = res.into_parts();
    let json = serde_json::to_vec(&body).expect("the error envelope serializes");
    parts.status = err.status();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json)).into_response()
}
