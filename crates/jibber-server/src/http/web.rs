//! The web client at `/`: every request no route matched goes to `jibber_web`, which serves the
//! embedded single-page app; what it leaves (`/api/*`, `/socket.io/*`, `/metrics`, methods
//! other than GET and HEAD) gets the API's JSON 404.

use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};

/// Fallback of the router: the web client, else `404 NOT_FOUND`.
pub async fn fallback(method: Method, uri: Uri) -> Response {
    match jibber_web::serve(&method, uri.path()) {
        Some(response) => response,
        None => super::ops::not_found().await.into_response(),
    }
}
