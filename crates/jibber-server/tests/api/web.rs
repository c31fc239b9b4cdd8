//! The web client at `/` (crates/jibber-web) next to the API: pages with security headers, the
//! SPA fallback, and the API's own JSON 404 where the web client must not answer.

use crate::helpers::spawn_app;

#[tokio::test]
async fn web_client_is_served_at_the_root_and_api_errors_stay_json() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let root = app.base.trim_end_matches('/');
    for path in ["/", "/chats/some-chat"] {
        let res = client
            .get(format!("{root}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(h.contains_key("x-request-id"), "the request middleware ran");
        let body = res.text().await.expect("body");
        assert!(body.contains("<title>Jibber</title>"), "{body}");
    }
    // Socket.IO's path belongs to its layer (a bad handshake is its 400), never to the page.
    let res = client
        .get(format!("{root}/socket.io/"))
        .send()
        .await
        .expect("get");
    assert_ne!(res.status(), 200);
    assert!(!res.text().await.expect("body").contains("<title>Jibber"));
    for path in ["/api/v1/nope", "/api/nope", "/metricsx/../api/v1/nope"] {
        let res = client
            .get(format!("{root}{path}"))
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 404, "{path}");
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{path}: {body}");
    }
    let res = client.post(format!("{root}/")).send().await.expect("post");
    assert_eq!(res.status(), 404);
    app.stop().await;
}
