//! The Socket.IO v4 gateway (socketioxide) at `/socket.io/`.
//!
//! - [`auth`]: the connect middleware (access token from `auth.token`), per-socket sessions,
//!   in-band token refresh and expiry.
//! - [`registry`]: which devices of which users are connected here, and their open chats.
//! - [`events`]: the client → server events.
//! - [`notify`]: server → client fan-out, used by the events and by the REST handlers alike.
//! - [`nodes`]: several nodes over Redis (relays, presence, open chats, shared rate limits).
//!
//! Every device joins the room `user:<id>`; events for a user go to that room. Delivery is never
//! at-most-once in effect: everything is stored first, and a client catches up from the database
//! (`GET /api/v1/sync`) after any gap, so a lost emit never loses a message.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use socketioxide::layer::SocketIoLayer;
use socketioxide::{SocketIo, TransportType};
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::state::AppState;

pub mod auth;
pub mod events;
pub mod nodes;
pub mod notify;
pub mod order;
pub mod registry;

pub use registry::Registry;

/// The gateway's shared state.
pub struct Realtime {
    pub io: SocketIo,
    pub registry: Registry,
    /// Per-chat send order (see [`order`]).
    pub send_order: order::ChatLocks,
    /// The link to the other nodes (disabled without Redis).
    pub cluster: Cluster,
    /// The cluster tasks (publisher, receiver, monitor), stopped on shutdown.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    per_second: u32,
    burst: u32,
    limiter: DefaultKeyedRateLimiter<(Uuid, &'static str)>,
    clock: DefaultClock,
    /// Live typing indicators: (user, chat) → (generation, the other member).
    typing: Mutex<HashMap<(Uuid, Uuid), (u64, Uuid)>>,
    typing_generation: AtomicU64,
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Realtime {
    /// Counts one `event` of `user`; RATE_LIMITED with the wait when over the limit. With
    /// Redis the bucket is shared by every node; while Redis is down each node limits alone.
    pub async fn check_rate(&self, user: Uuid, event: &'static str) -> Result<(), ApiError> {
        let interval = Duration::from_secs(1) / self.per_second.max(1);
        let wait = self
            .cluster
            .limit(&format!("{user}:{event}"), interval, self.burst, || {
                self.limiter
                    .check_key(&(user, event))
                    .err()
                    .map(|not_until| not_until.wait_time_from(self.clock.now()))
            })
            .await;
        match wait {
            None => Ok(()),
            Some(wait) => {
                metrics::counter!("jibber_rate_limited_total", "scope" => "socket_event", "event" => event).increment(1);
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                Err(ApiError {
                    retry_after: Some(ms),
                    ..ApiError::rate_limited(1)
                })
            }
        }
    }

    /// Stops the cluster tasks (on shutdown).
    pub fn stop_tasks(&self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }

    fn typing_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Uuid, Uuid), (u64, Uuid)>> {
        self.typing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Number of live typing indicators (for tests and metrics).
    pub fn typing_count(&self) -> usize {
        self.typing_lock().len()
    }

    /// Forgets rate-limit keys that have recovered.
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Publishes the connection counts to the health state and the metrics.
    fn publish_counts(&self, state: &AppState) {
        let (sockets, users) = self.registry.counts();
        state.sockets.store(sockets, Ordering::Relaxed);
        state.socket_users.store(users, Ordering::Relaxed);
        metrics::gauge!("jibber_sockets_connected").set(sockets as f64);
        metrics::gauge!("jibber_socket_users_connected").set(users as f64);
    }
}

/// Builds the Socket.IO layer and the gateway state from the settings.
pub fn build(settings: &crate::config::Settings) -> anyhow::Result<(SocketIoLayer, Realtime)> {
    let (layer, io) = SocketIo::builder()
        .ping_interval(settings.socket_ping_interval)
        .ping_timeout(settings.socket_ping_timeout)
        .max_payload(settings.socket_max_payload)
        .max_buffer_size(settings.socket_send_queue)
        .ws_read_buffer_size(settings.socket_ws_read_buffer)
        .transports([TransportType::Polling, TransportType::Websocket])
        .build_layer();
    let rate = NonZeroU32::new(settings.socket_events_per_second).unwrap_or(NonZeroU32::MIN);
    let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
    let realtime = Realtime {
        io,
        registry: Registry::default(),
        send_order: order::ChatLocks::default(),
        cluster: Cluster::from_settings(settings)?,
        tasks: Mutex::new(Vec::new()),
        per_second: rate.get(),
        burst: burst.get(),
        limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        clock: DefaultClock::default(),
        typing: Mutex::new(HashMap::new()),
        typing_generation: AtomicU64::new(0),
    };
    Ok((layer, realtime))
}

/// Registers the namespace handlers; called once the [`AppState`] exists.
pub fn attach(state: &AppState) {
    use socketioxide::extract::{SocketRef, TryData};
    use socketioxide::handler::ConnectHandler;
    let handler_state = state.clone();
    let middleware_state = state.clone();
    let on_connect = move |socket: SocketRef| events::on_connect(handler_state.clone(), socket);
    let middleware =
        move |socket: SocketRef, auth: TryData<jibber_proto::events::HandshakeAuth>| {
            auth::authenticate(middleware_state.clone(), socket, auth)
        };
    state.realtime.io.ns("/", on_connect.with(middleware));
    nodes::start(state);
    start_idle_sweeper(state);
}

/// Every quarter of `away_after`, tells the peers of users whose heartbeats stopped that they
/// are away (nothing when `away_after` is zero).
fn start_idle_sweeper(state: &AppState) {
    let after = state.settings.away_after;
    if after.is_zero() {
        return;
    }
    let sweeper = state.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval((after / 4).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = std::time::Instant::now();
            for user in sweeper.realtime.registry.sweep_idle(now, after) {
                notify::presence(&sweeper, user, jibber_proto::events::USER_AWAY, None).await;
            }
        }
    });
    state
        .realtime
        .tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(task.abort_handle());
}

/// Begins shutdown: tells every client, takes this node's users offline (announced to the other
/// nodes, which the clients will reconnect to), leaves the cluster, then closes every transport
/// so that the official clients see "transport close" and reconnect by themselves.
pub async fn shutdown(state: &AppState) {
    notify::broadcast_shutdown(state).await;
    for user in state.realtime.registry.take_all() {
        if state.realtime.leave(user).await {
            nodes::went_offline(state, user).await;
        }
    }
    state.realtime.publish_counts(state);
    state.realtime.cluster.flush(Duration::from_secs(2)).await;
    state.realtime.cluster.leave_cluster().await;
    state.realtime.stop_tasks();
    let closing = state.realtime.io.close();
    if tokio::time::timeout(Duration::from_secs(5), closing)
        .await
        .is_err()
    {
        tracing::warn!("closing socket transports took more than 5 s");
    }
}
