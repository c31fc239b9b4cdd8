//! Operations routes, request IDs, and the error envelope for bad input.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_ready_and_metrics() {
    let app = spawn_app().await;
    let h = app
        .request(reqwest::Method::GET, "/health", None, None)
        .await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.body);
    assert_eq!(h.data()["status"], json!("ok"));
    assert_eq!(h.data()["database"]["ok"], json!(true));
    assert_eq!(h.data()["database"]["backend"], json!("sqlite"));
    assert!(h.data()["memory"]["rssBytes"].as_u64().expect("rss") > 0);
    assert!(h.data()["uptimeSeconds"].is_u64());
    assert_eq!(h.data()["sockets"]["connected"], json!(0));
    let r = app
        .request(reqwest::Method::GET, "/ready", None, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // Produce an error so its counter exists, then read the metrics.
    app.request(reqwest::Method::GET, "/users/me", None, None)
        .await;
    let text = app.metrics().await;
    assert!(text.contains("jibber_http_requests_total"), "{text}");
    assert!(text.contains("route=\"/api/v1/health\""), "{text}");
    assert!(
        text.contains("jibber_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("jibber_db_query_duration_seconds"), "{text}");
    assert!(
        text.contains("jibber_errors_total{code=\"UNAUTHENTICATED\"}"),
        "{text}"
    );
    app.stop().await;
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "client-123")
        .send()
        .await
        .expect("send");
    assert_eq!(res.headers()["x-request-id"], "client-123");
    let res = app.http.get(app.url("/health")).send().await.expect("send");
    let made = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&made)
            .expect("uuid")
            .get_version_num(),
        7
    );
    // An unreasonable one is replaced, not echoed.
    let res = app
        .http
        .get(app.url("/health"))
        .header("x-request-id", "a b<script>")
        .send()
        .await
        .expect("send");
    assert_ne!(res.headers()["x-request-id"], "a b<script>");
    app.stop().await;
}

#[tokio::test]
async fn oversized_malformed_and_unknown_requests_get_the_envelope() {
    let app = spawn_app().await;
    let u = app.user("bad_input").await;
    // 413 for a body over max_body_bytes (256 KiB by default).
    let big = "x".repeat(300 * 1024);
    app.post_raw("/chats", &u.access, format!("{{\"userId\":\"{big}\"}}"))
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    // Malformed JSON.
    let reply = app
        .post_raw("/chats", &u.access, "{\"userId\": ".to_owned())
        .await;
    reply.assert_error(400, "VALIDATION_FAILED");
    assert!(
        reply.message().starts_with("Malformed JSON"),
        "{}",
        reply.body
    );
    // A wrong type names the field.
    let r = app
        .post("/chats", Some(&u.access), json!({"userId": 42}))
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.message().starts_with("userId"), "{}", r.body);
    // A missing field is named too.
    let r = app.post("/chats", Some(&u.access), json!({})).await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.message().contains("userId"), "{}", r.body);
    // A message over max_message_bytes.
    let b = app.user("bad_input_b").await;
    let chat = app.chat(&u, &b).await;
    let mut body = crate::helpers::message_body(chat, b.id, "huge");
    body["cipher"] = json!(jibber_proto::B64::encode(&vec![0u8; 70 * 1024]));
    app.post(&format!("/messages/{chat}"), Some(&u.access), body)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    // Unknown route and wrong method.
    app.request(reqwest::Method::GET, "/nope", None, None)
        .await
        .assert_error(404, "NOT_FOUND");
    app.request(reqwest::Method::DELETE, "/chats", Some(&u.access), None)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    app.stop().await;
}

#[tokio::test]
async fn secrets_are_generated_once_and_private() {
    let app = spawn_app().await;
    let dir = app.dir.path().join("secrets");
    let jwt = std::fs::read_to_string(dir.join("jwt_secret")).expect("jwt secret");
    let setup = std::fs::read_to_string(dir.join("opaque_server_setup")).expect("setup");
    assert!(jwt.len() >= 32);
    assert_eq!(setup.len(), 171);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["jwt_secret", "opaque_server_setup"] {
            let mode = std::fs::metadata(dir.join(f))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert_eq!(
            std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
            0o700
        );
    }
    // A user made now can still log in after a restart on the same data directory.
    let u = app.user("persist").await;
    let data_dir = app.dir.path().to_path_buf();
    let settings = jibber_server::Settings::for_data_dir(&data_dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let second = jibber_server::App::build(settings).await.expect("build");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(second.serve(listener, async move {
        let _ = rx.await;
    }));
    assert_eq!(
        std::fs::read_to_string(dir.join("jwt_secret")).expect("jwt"),
        jwt,
        "not regenerated"
    );
    // The old access token is still valid on the restarted server (same key).
    let res = app
        .http
        .get(format!("http://{addr}/api/v1/users/me"))
        .bearer_auth(&u.access)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let _ = tx.send(());
    server.await.expect("join").expect("serve");
    app.stop().await;
}

#[tokio::test]
async fn production_hides_internals_and_enforces_cors() {
    let setup = jibber_server::auth::opaque::new_server_setup();
    let secret = jibber_server::auth::tokens::new_jwt_secret();
    let app = crate::helpers::spawn_app_with(&[
        ("mode", "production"),
        ("jwt_secret", &secret),
        ("opaque_server_setup", &setup),
        ("cors_origins", "https://chat.example.com"),
    ])
    .await;
    let u = app.user("prod").await;
    // The login cookie is Secure in production.
    let login = app
        .login(&u.username, &format!("pw-{}", u.username))
        .await
        .expect("login");
    let cookie = login.headers["set-cookie"].to_str().expect("ascii");
    assert!(cookie.contains("Secure"), "{cookie}");
    // Corrupt a row behind the server's back so that reading it is an internal error.
    corrupt_a_user_row(&app).await;
    let r = app.get("/contacts", &u.access).await;
    r.assert_error(500, "INTERNAL");
    assert_eq!(r.message(), "Internal server error");
    assert!(!r.body.to_string().contains("uuid"), "{}", r.body);
    // CORS: the configured origin is allowed with credentials, a foreign one is not.
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, app.url("/chats"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://chat.example.com")
        .await
        .expect("preflight");
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://chat.example.com"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let foreign = preflight("https://evil.example").await.expect("preflight");
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    app.stop().await;
}

#[tokio::test]
async fn development_shows_internal_detail() {
    let app = spawn_app().await;
    let u = app.user("dev").await;
    corrupt_a_user_row(&app).await;
    let r = app.get("/contacts", &u.access).await;
    r.assert_error(500, "INTERNAL");
    assert!(r.message().contains("bad uuid"), "{}", r.body);
    app.stop().await;
}

/// Writes a user row with an invalid id behind the server's back, so that listing contacts
/// fails inside the server (an internal error).
async fn corrupt_a_user_row(app: &crate::helpers::TestApp) {
    let url = format!("sqlite://{}", app.dir.path().join("jibber.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect");
    sqlx::query(
        "INSERT INTO users (id, username, username_lower, registration_record, public_id_key, \
         public_signing_key, key_bundle, created_at) \
         VALUES ('not-a-uuid', 'zzz_broken', 'zzz_broken', x'00', x'00', x'00', x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .expect("insert");
}

#[tokio::test]
async fn health_is_503_and_requests_are_service_unavailable_without_the_database() {
    let app = spawn_app().await;
    let u = app.user("nodb").await;
    app.state.store.close().await;
    let h = app
        .request(reqwest::Method::GET, "/health", None, None)
        .await;
    assert_eq!(h.status, StatusCode::SERVICE_UNAVAILABLE, "{}", h.body);
    assert_eq!(h.body["success"], json!(false));
    assert_eq!(h.data()["status"], json!("unavailable"));
    assert_eq!(h.data()["database"]["ok"], json!(false));
    let r = app.get("/chats", &u.access).await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(!r.message().contains("pool"), "no internals: {}", r.body);
    app.stop().await;
}
