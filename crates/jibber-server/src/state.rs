//! The state every handler shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use jibber_crypto::Suite;
use jibber_crypto::opaque_ke::ServerSetup;
use jibber_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::limits::AuthLimits;
use crate::auth::tokens::AccessTokens;
use crate::config::Settings;

/// Cheap to clone: everything sits behind one `Arc`.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    pub tokens: AccessTokens,
    pub opaque: ServerSetup<Suite>,
    pub auth_limits: AuthLimits,
    pub realtime: crate::realtime::Realtime,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// Set when shutdown begins: /ready answers 503 from then on.
    pub shutting_down: AtomicBool,
    /// Connected sockets and distinct users (the realtime gateway keeps these).
    pub sockets: AtomicU64,
    pub socket_users: AtomicU64,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
