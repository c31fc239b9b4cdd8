//! Jibber's server as a library.
//!
//! [`App::build`] turns [`Settings`] into a ready application (storage opened and migrated,
//! secrets loaded, routes wired); [`App::serve`] runs it on a bound listener until a shutdown
//! signal. `jibber serve` and the integration tests (which bind port 0) both go through here.
//!
//! Layout:
//! - [`config`]: layered settings and their validation.
//! - [`secrets`]: the generated or configured JWT secret and OPAQUE server setup.
//! - [`state`]: what every handler shares.
//! - [`error`]: the one error type and its envelope.
//! - [`auth`]: OPAQUE, access/refresh tokens, rate limits on attempts.
//! - [`service`]: message operations shared by REST and the realtime gateway.
//! - [`http`]: routes, extractors and the request middleware.
//! - [`realtime`]: the Socket.IO gateway.
//! - [`cluster`]: the Redis link between nodes (optional).
//! - [`telemetry`]: logs and metrics.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use jibber_store::Store;
use jibber_store_postgres::{PgStore, redact_url};
use jibber_store_sqlite::{Durability, SqliteConfig, SqliteStore};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

pub mod auth;
pub mod cluster;
pub mod config;
pub mod error;
pub mod http;
pub mod net;
pub mod realtime;
pub mod secrets;
pub mod service;
pub mod state;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{Settings, Sources};
pub use state::AppState;

/// A built server, not yet listening.
pub struct App {
    pub state: AppState,
    store: Arc<dyn Store>,
    socket_layer: socketioxide::layer::SocketIoLayer,
}

/// Opens the store the settings name: SQLite for `sqlite:` URLs, PostgreSQL for
/// `postgres://` and `postgresql://` ones.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = &settings.database_url;
    let context = || format!("cannot open the database at {}", redact_url(url));
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::open(&settings.pg_config())
            .await
            .with_context(context)?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("sqlite:") && *url == default_db_url(settings) {
        secrets::ensure_private_dir(&settings.data_dir)?;
    }
    let mut config = SqliteConfig::new(url.clone());
    config.durability = if settings.sqlite_full_sync {
        Durability::Full
    } else {
        Durability::Normal
    };
    config.commit_interval = settings.sqlite_commit_interval;
    let store = SqliteStore::open(&config).await.with_context(context)?;
    Ok(Arc::new(store))
}

fn default_db_url(settings: &Settings) -> String {
    format!("sqlite://{}", settings.data_dir.join("jibber.db").display())
}

impl App {
    /// Opens storage, loads or creates secrets, and wires the routes.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        let secrets = secrets::load(&settings)?;
        // Before the store: its query timers take their histograms from the recorder installed
        // at their first use (jibber_store::query_timer!).
        let metrics = telemetry::metrics_handle();
        let store = open_store(&settings).await?;
        let opaque = auth::opaque::parse_server_setup(secrets.opaque_setup.expose_secret())
            .map_err(|_| anyhow::anyhow!("the OPAQUE server setup is invalid"))?;
        let tokens = auth::tokens::AccessTokens::new(&secrets.jwt, settings.access_token_ttl);
        let auth_limits = auth::limits::AuthLimits::new(
            settings.auth_rate_per_ip,
            settings.auth_rate_per_username,
        );
        let (socket_layer, realtime) = realtime::build(&settings)?;
        let state = AppState(Arc::new(state::Inner {
            store: store.clone(),
            tokens,
            opaque,
            auth_limits,
            realtime,
            metrics,
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            sockets: AtomicU64::new(0),
            socket_users: AtomicU64::new(0),
            settings,
        }));
        realtime::attach(&state);
        Ok(App {
            state,
            store,
            socket_layer,
        })
    }

    /// The router, for in-process tests (`oneshot`).
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone(), self.socket_layer.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then shuts down within
    /// `shutdown_timeout` of it: clients told and disconnected, requests and writes in flight
    /// finished, the database closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let router = http::router(state.clone(), self.socket_layer.clone());
        let janitor = tokio::spawn(janitor(state.clone()));
        // The whole shutdown, from the signal to the exit, takes at most `shutdown_timeout`:
        // the gateway's part gets what is left after a reserve for draining requests.
        let timeout = state.settings.shutdown_timeout;
        let (began_tx, mut began) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
        let flag = state.clone();
        let signal = async move {
            shutdown.await;
            began_tx.send_replace(Some(tokio::time::Instant::now()));
            flag.shutting_down.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            let gateway_budget = timeout.mul_f64(0.7);
            if tokio::time::timeout(gateway_budget, realtime::shutdown(&flag))
                .await
                .is_err()
            {
                tracing::warn!(?gateway_budget, "the gateway's shutdown was cut short");
            }
        };
        let server = net::serve_connections(
            listener,
            router,
            net::Limits {
                header_read: state.settings.request_timeout,
                write_stall: state.settings.socket_ping_timeout,
            },
            signal,
        );
        let mut server = std::pin::pin!(server);
        tokio::select! {
            res = &mut server => res.context("server failed")?,
            () = async {
                match began.wait_for(Option::is_some).await.map(|b| *b) {
                    Ok(Some(at)) => tokio::time::sleep_until(at + timeout.mul_f64(0.9)).await,
                    // The server ended without a shutdown signal: the other branch reports it.
                    _ => std::future::pending().await,
                }
            } => tracing::warn!(?timeout, "work still in flight at the shutdown timeout; stopping anyway"),
        }
        janitor.abort();
        // Closing waits for a batch being committed; it too stays within the deadline.
        let left = (*began.borrow()).map_or(timeout, |at| {
            (at + timeout).saturating_duration_since(tokio::time::Instant::now())
        });
        if tokio::time::timeout(left.max(Duration::from_millis(500)), self.store.close())
            .await
            .is_err()
        {
            tracing::warn!("the database did not close in time");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds and serves: what `jibber serve` runs.
pub async fn launch(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    App::build(settings).await?.serve(listener, shutdown).await
}

/// Periodic housekeeping: expired logins and refresh tokens, recovered rate-limit keys.
async fn janitor(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        match state
            .store
            .purge_expired(jibber_store::util::now_ms())
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(removed = n, "purged expired logins and tokens"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging expired rows failed"),
        }
        state.auth_limits.shrink();
        state.realtime.shrink();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
