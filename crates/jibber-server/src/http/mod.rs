//! The REST API under `/api/v1`, the operations routes, and the middleware every request
//! passes through.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::{get, post, put};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::state::AppState;

pub mod auth;
pub mod chats;
pub mod context;
pub mod extract;
pub mod messages;
pub mod openapi;
pub mod ops;
pub mod users;
pub mod web;

/// The name of the request ID header.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route of the server.
pub fn router(state: AppState, sockets: socketioxide::layer::SocketIoLayer) -> Router {
    let api = Router::new()
        .route("/auth/register/start", post(auth::register_start))
        .route("/auth/register/finish", post(auth::register_finish))
        .route("/auth/login/start", post(auth::login_start))
        .route("/auth/login/finish", post(auth::login_finish))
        .route("/auth/refresh", post(auth::refresh))
        .route(
            "/auth/refresh-socket-token",
            post(auth::refresh_socket_token),
        )
        .route("/auth/logout", post(auth::logout))
        .route("/users/me", get(users::me))
        .route("/users/me/key-bundle", get(users::key_bundle))
        .route("/users/me/keys", put(users::rotate_keys))
        .route("/users/{id}", get(users::profile))
        .route("/contacts", get(users::contacts))
        .route("/chats", post(chats::create).get(chats::list))
        .route(
            "/messages/{id}",
            get(messages::history).post(messages::send),
        )
        .route("/messages/{id}/sync", get(messages::chat_sync))
        .route("/messages/{id}/delivered", post(messages::delivered))
        .route("/messages/{id}/read", post(messages::read))
        .route("/sync", get(messages::sync))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/openapi.json", get(openapi::serve));

    let mut app = Router::new()
        .nest(jibber_proto::API_PREFIX, api)
        .route("/metrics", get(ops::metrics))
        .fallback(web::fallback)
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            state.settings.request_timeout,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            context::context,
        ))
        .layer(sockets)
        // The router put the request's original URI into its extensions, and the Socket.IO
        // session keeps the extensions of its first request for as long as it lives; that URI
        // shares hyper's 8 KiB read buffer, which a session then kept alive (most of an idle
        // connection's memory, BENCHMARKS.md). Nothing on the socket path reads it.
        .layer(axum::middleware::map_request(
            |mut req: axum::extract::Request| async move {
                if req.uri().path().starts_with("/socket.io") {
                    req.extensions_mut().remove::<axum::extract::OriginalUri>();
                }
                req
            },
        ));

    if !state.settings.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state
            .settings
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    REQUEST_ID.clone(),
                ])
                .expose_headers([REQUEST_ID.clone(), header::RETRY_AFTER]),
        );
    }
    app.with_state(state)
}
