//! Operations: `/api/v1/health`, `/api/v1/ready`, `/metrics`, and the fallback.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use jibber_proto::api::{
    DatabaseHealth, Envelope, Health, MemoryHealth, RedisHealth, SocketHealth,
};

use crate::error::ApiError;
use crate::state::AppState;

/// The resident set size of this process, from /proc (0 where there is none).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

#[utoipa::path(get, path = "/api/v1/health", tag = "operations", responses((status = 200, body = Envelope<Health>), (status = 503, description = "The database does not answer", body = Envelope<Health>)))]
/// GET /api/v1/health: 200 when the database answers, 503 otherwise; with socket counts,
/// memory and uptime. A Redis link that is down makes the status "degraded" but stays 200: the
/// node still serves its own clients.
pub async fn health(State(state): State<AppState>) -> Response {
    let start = Instant::now();
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let error = match ping {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: database ping failed");
            Some("database ping failed".to_owned())
        }
        Err(_) => Some("database ping timed out".to_owned()),
    };
    let healthy = error.is_none();
    let redis = redis_health(&state).await;
    let degraded = redis.as_ref().is_some_and(|r| !r.ok);
    let rss = rss_bytes();
    metrics::gauge!("jibber_process_resident_memory_bytes").set(rss as f64);
    let body = Health {
        status: match (healthy, degraded) {
            (false, _) => "unavailable",
            (true, true) => "degraded",
            (true, false) => "ok",
        }
        .to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: state.started.elapsed().as_secs(),
        database: DatabaseHealth {
            ok: healthy,
            backend: state.store.backend().to_owned(),
            latency_ms,
            error,
        },
        redis,
        sockets: SocketHealth {
            connected: state.sockets.load(Ordering::Relaxed),
            users: state.socket_users.load(Ordering::Relaxed),
        },
        memory: MemoryHealth { rss_bytes: rss },
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Envelope {
            success: healthy,
            data: body,
            message: None,
            pagination: None,
        }),
    )
        .into_response()
}

/// The Redis link as /health reports it (None without Redis).
async fn redis_health(state: &AppState) -> Option<RedisHealth> {
    let cluster = &state.realtime.cluster;
    let node = cluster.node()?.to_owned();
    let (ok, latency_ms, error) = match cluster.ping().await {
        Ok(rtt) if cluster.is_up() => (true, rtt.as_secs_f64() * 1000.0, None),
        Ok(rtt) => (
            false,
            rtt.as_secs_f64() * 1000.0,
            Some("redis answers; the link is being restored".to_owned()),
        ),
        Err(e) => {
            tracing::debug!(error = %e, "health: redis ping failed");
            (false, 0.0, Some("redis is unreachable".to_owned()))
        }
    };
    Some(RedisHealth {
        ok,
        latency_ms,
        node,
        error,
    })
}

#[utoipa::path(get, path = "/api/v1/ready", tag = "operations", responses((status = 200, body = crate::http::openapi::ReadyEnvelope), (status = 503, description = "Shutting down", body = crate::http::openapi::ReadyEnvelope)))]
/// GET /api/v1/ready: 200 while serving, 503 once shutdown has begun.
pub async fn ready(State(state): State<AppState>) -> Response {
    let ready = !state.is_shutting_down();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let data = serde_json::json!({ "ready": ready });
    (
        status,
        Json(Envelope {
            success: ready,
            data,
            message: None,
            pagination: None,
        }),
    )
        .into_response()
}

/// GET /metrics: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    metrics::gauge!("jibber_uptime_seconds").set(state.started.elapsed().as_secs_f64());
    metrics::gauge!("jibber_sockets_connected").set(state.sockets.load(Ordering::Relaxed) as f64);
    metrics::gauge!("jibber_socket_users_connected")
        .set(state.socket_users.load(Ordering::Relaxed) as f64);
    if state.realtime.cluster.is_enabled() {
        let up = state.realtime.cluster.is_up();
        metrics::gauge!("jibber_redis_up").set(if up { 1.0 } else { 0.0 });
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::new(jibber_proto::ErrorCode::NotFound, "No such route")
}
