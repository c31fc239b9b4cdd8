//! Socket authentication: the connect middleware, the per-socket session, in-band refresh and
//! expiry of the socket's authorisation.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jibber_proto::ErrorCode;
use jibber_proto::events::{self, HandshakeAuth, Notice};
use socketioxide::extract::{SocketRef, TryData};
use time::OffsetDateTime;
use tokio::task::AbortHandle;
use uuid::Uuid;

use crate::auth::tokens::TokenError;
use crate::state::AppState;

/// Why a handshake was refused. The texts and codes are part of the protocol (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NoToken,
    Expired,
    Invalid,
    ShuttingDown,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoToken => "No token provided",
            Refusal::Expired => "Token expired",
            Refusal::Invalid => "Invalid token",
            Refusal::ShuttingDown => "Server shutting down",
        }
    }

    pub fn code(self) -> ErrorCode {
        match self {
            Refusal::NoToken => ErrorCode::Unauthenticated,
            Refusal::Expired => ErrorCode::TokenExpired,
            Refusal::Invalid => ErrorCode::InvalidToken,
            Refusal::ShuttingDown => ErrorCode::ServiceUnavailable,
        }
    }
}

/// socketioxide sends a middleware error's text as the `connect_error` message. The text is the
/// whole Socket.IO error object `{"message", "data": {"code"}}`, which the patched common parser
/// (vendor/socketioxide-parser-common) writes as it is, so clients read `err.data.code`.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let object = serde_json::json!({
            "message": self.message(),
            "data": { "code": self.code() },
        });
        write!(f, "{object}")
    }
}

impl std::error::Error for Refusal {}

/// What a connected socket knows about its user.
#[derive(Debug)]
pub struct Session {
    pub user: Uuid,
    /// Unix seconds at which the socket's authorisation ends, unless refreshed.
    expires_at: AtomicI64,
    /// Set when an emit to this socket was dropped; the next emit that fits says `syncRequired`.
    pub lagging: AtomicBool,
    expiry: Mutex<Option<AbortHandle>>,
}

impl Session {
    pub fn expires_at(&self) -> i64 {
        self.expires_at.load(Ordering::Relaxed)
    }

    /// Stops the expiry timer (on disconnect).
    pub fn stop_timer(&self) {
        if let Some(handle) = self
            .expiry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            handle.abort();
        }
    }
}

/// The session of a connected socket (set by [`authenticate`]).
pub fn session(socket: &SocketRef) -> Option<Arc<Session>> {
    socket.extensions.get::<Arc<Session>>()
}

/// The connect middleware: verifies `auth.token` before anything is emitted.
pub async fn authenticate(
    state: AppState,
    socket: SocketRef,
    auth: TryData<HandshakeAuth>,
) -> Result<(), Refusal> {
    let refusal = |r: Refusal| {
        metrics::counter!("jibber_socket_refused_total", "reason" => format!("{r:?}")).increment(1);
        Err(r)
    };
    if state.is_shutting_down() {
        return refusal(Refusal::ShuttingDown);
    }
    let token = match auth.0.ok().and_then(|a| a.token).filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => return refusal(Refusal::NoToken),
    };
    let claims = match state.tokens.verify(&token) {
        Ok(c) => c,
        Err(TokenError::Expired) => return refusal(Refusal::Expired),
        Err(TokenError::Invalid) => return refusal(Refusal::Invalid),
    };
    socket.extensions.insert(Arc::new(Session {
        user: claims.sub,
        expires_at: AtomicI64::new(claims.exp),
        lagging: AtomicBool::new(false),
        expiry: Mutex::new(None),
    }));
    Ok(())
}

/// Extends the socket's authorisation with a fresh access token of the same user.
pub fn refresh(
    state: &AppState,
    session: &Session,
    token: &str,
) -> Result<i64, crate::error::ApiError> {
    use crate::error::ApiError;
    let claims = state.tokens.verify(token).map_err(|e| match e {
        TokenError::Expired => {
            ApiError::new(jibber_proto::ErrorCode::TokenExpired, "Token expired")
        }
        TokenError::Invalid => ApiError::invalid_token("Invalid token"),
    })?;
    if claims.sub != session.user {
        return Err(ApiError::invalid_token("The token belongs to another user"));
    }
    session.expires_at.fetch_max(claims.exp, Ordering::Relaxed);
    Ok(session.expires_at())
}

/// Watches the session's expiry: when it passes unrefreshed, emits `sessionExpired` and
/// disconnects the socket.
pub fn start_timer(socket: SocketRef, session: Arc<Session>) {
    let watched = session.clone();
    let task = tokio::spawn(async move {
        loop {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            let left = watched.expires_at() - now;
            if left <= 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0))).await;
        }
        metrics::counter!("jibber_socket_sessions_expired_total").increment(1);
        let _ = socket.emit(
            events::SESSION_EXPIRED,
            &Notice {
                reason: "Token expired".to_owned(),
            },
        );
        let _ = socket.disconnect();
    });
    *session
        .expiry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task.abort_handle());
}
