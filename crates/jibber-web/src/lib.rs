//! The web client, embedded in the binary and served at `/` on the API's origin.
//!
//! `build.rs` runs `npm run build` in `web/` into `$OUT_DIR/dist`; this crate embeds that folder
//! and answers GET and HEAD requests for it:
//!
//! - files with their content type; Vite's hashed `/assets/*` are cached for a year as immutable,
//!   everything else (`index.html`, the manifest, the icons) is `no-cache`;
//! - any other path without a file extension gets `index.html` (the app routes in the browser),
//!   except `/api/*`, `/socket.io/*` and `/metrics`, which stay the server's (`None`);
//! - every response carries the security headers of [`SECURITY_HEADERS`].

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use include_dir::{Dir, include_dir};

static DIST: Dir<'static> = include_dir!("$OUT_DIR/dist");

/// The Content-Security-Policy of every web response. `'wasm-unsafe-eval'` is what
/// `@serenity-kit/opaque` needs to compile its WebAssembly (it carries it inline, so no
/// `unsafe-eval` and no extra origin); the app has no inline script or style, and talks only to
/// its own origin (REST and the Socket.IO WebSocket, which `'self'` covers).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'; object-src 'none'";

/// Headers on every response of the web client.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ),
];

/// Paths that belong to the server, never to the web client.
fn is_server_path(path: &str) -> bool {
    ["/api", "/socket.io", "/metrics"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// True when this binary carries the real web client, not the placeholder page that says how
/// to build it.
pub fn is_built() -> bool {
    DIST.get_file("manifest.webmanifest").is_some()
}

/// The web client's answer to `method path`, or `None` when the path is not the web client's
/// (the server answers those itself, with its JSON 404 or 405).
pub fn serve(method: &Method, path: &str) -> Option<Response> {
    if (method != Method::GET && method != Method::HEAD) || is_server_path(path) {
        return None;
    }
    let name = path.trim_start_matches('/');
    let name = if name.is_empty() { "index.html" } else { name };
    if let Some(file) = DIST.get_file(name) {
        return Some(respond(name, file.contents(), method));
    }
    // A missing file (the last segment has an extension) is a 404, not the app's page.
    let last = name.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return Some(with_headers(
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .header(header::CACHE_CONTROL, "no-cache"),
            Body::from("Not found\n"),
        ));
    }
    let index = DIST.get_file("index.html")?;
    Some(respond("index.html", index.contents(), method))
}

fn respond(name: &str, contents: &'static [u8], method: &Method) -> Response {
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(contents)
    };
    with_headers(
        Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, content_type(name))
            .header(header::CONTENT_LENGTH, contents.len())
            .header(header::CACHE_CONTROL, cache),
        body,
    )
}

fn with_headers(mut builder: axum::http::response::Builder, body: Body) -> Response {
    for (name, value) in SECURITY_HEADERS {
        builder = builder.header(*name, HeaderValue::from_static(value));
    }
    builder
        .body(body)
        .expect("static header names and values are valid")
}

/// The content type of an embedded file, from its extension.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<Response> {
        serve(&Method::GET, path)
    }

    fn header<'a>(r: &'a Response, name: &str) -> &'a str {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    #[test]
    fn index_is_served_at_the_root_without_caching_and_with_the_security_headers() {
        let r = get("/").expect("the root is the web client's");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(header(&r, name), *value, "{name}");
        }
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn app_routes_fall_back_to_index_but_missing_files_are_404() {
        let index = DIST.get_file("index.html").expect("index").contents();
        for path in ["/chats", "/chats/0193-abc", "/login"] {
            let r = get(path).expect(path);
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(header(&r, "content-length"), index.len().to_string());
        }
        let r = get("/assets/nope-123.js").expect("a missing asset is ours");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(header(&r, "content-security-policy").contains("default-src 'none'"));
    }

    #[test]
    fn server_paths_and_other_methods_are_left_to_the_server() {
        for path in ["/api", "/api/v1/nope", "/socket.io/", "/metrics"] {
            assert!(get(path).is_none(), "{path}");
        }
        assert!(serve(&Method::POST, "/").is_none());
        assert!(serve(&Method::DELETE, "/chats").is_none());
        // Paths that merely start with the same letters are the app's.
        assert!(get("/apiary").is_some());
    }

    #[test]
    fn hashed_assets_are_immutable_and_typed() {
        let Some(asset) = DIST.get_dir("assets").and_then(|d| {
            d.files()
                .find(|f| f.path().extension().is_some_and(|e| e == "js"))
        }) else {
            // The placeholder build has no assets; `is_built` says which one this is.
            assert!(!is_built());
            return;
        };
        let path = format!("/{}", asset.path().display());
        let r = get(&path).expect("asset");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
        assert_eq!(
            header(&r, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        let head = serve(&Method::HEAD, &path).expect("HEAD");
        assert_eq!(
            header(&head, "content-length"),
            asset.contents().len().to_string()
        );
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type("manifest.webmanifest"),
            "application/manifest+json"
        );
        assert_eq!(content_type("icon.svg"), "image/svg+xml");
        assert_eq!(content_type("x.wasm"), "application/wasm");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
