//! Registration, login, tokens.

use std::time::Duration;

use jibber_proto::B64;
use reqwest::StatusCode;
use serde_json::json;
use time::OffsetDateTime;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn register_and_login_with_opaque() {
    let app = spawn_app().await;
    let r = app.register("Alice_1", "correct horse").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.data()["user"]["username"], json!("Alice_1"));
    let id = r.data()["user"]["id"].as_str().expect("id").to_owned();
    // Usernames are case-insensitive: the same name in another case is taken.
    app.register("alice_1", "x")
        .await
        .assert_error(409, "CONFLICT");

    let login = app
        .login("ALICE_1", "correct horse")
        .await
        .map_err(|e| e.map(|r| r.body))
        .expect("login");
    let d = login.data();
    assert_eq!(d["user"]["id"], json!(id));
    assert_eq!(d["expiresIn"], json!(900));
    let cookie = login
        .headers
        .get("set-cookie")
        .expect("cookie")
        .to_str()
        .expect("ascii");
    assert!(cookie.starts_with("jibber_refresh="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "no TLS in this test: {cookie}");
    let access = d["accessToken"].as_str().expect("token");
    let me = app.get("/users/me", access).await;
    assert_eq!(me.data()["id"], json!(id));
    assert_eq!(me.data()["publicIdKey"], json!(B64::encode(&[1u8; 32])));
    let bundle = app.get("/users/me/key-bundle", access).await;
    assert_eq!(bundle.data()["keyBundle"], json!(B64::encode(&[3u8; 120])));
    // The stored record is never served.
    assert!(!me.body.to_string().contains("registrationRecord"));
    app.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = spawn_app().await;
    let u = app.user("bob").await;
    // Both get a normal-looking login response of the same size...
    let (known, _) = app.login_start(&u.username, "wrong").await;
    let (unknown, _) = app.login_start("nobody_here", "wrong").await;
    assert_eq!(known.status, StatusCode::OK);
    assert_eq!(unknown.status, StatusCode::OK);
    let len = |r: &crate::helpers::Reply| {
        B64::decode(r.data()["loginResponse"].as_str().expect("resp"))
            .expect("b64")
            .len()
    };
    assert_eq!(len(&known), len(&unknown));
    // ...the client cannot finish either...
    assert!(
        app.login(&u.username, "wrong")
            .await
            .expect_err("wrong password")
            .is_none()
    );
    assert!(
        app.login("nobody_here", "wrong")
            .await
            .expect_err("unknown user")
            .is_none()
    );
    // ...and a forged finish gets the same answer for both.
    let forged = B64::encode(&[7u8; 64]);
    let a = app
        .post(
            "/auth/login/finish",
            None,
            json!({"loginId": known.data()["loginId"], "finishLoginRequest": forged}),
        )
        .await;
    let b = app
        .post(
            "/auth/login/finish",
            None,
            json!({"loginId": unknown.data()["loginId"], "finishLoginRequest": forged}),
        )
        .await;
    a.assert_error(401, "UNAUTHENTICATED");
    b.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(a.body["error"]["message"], b.body["error"]["message"]);
    // A login id is single-use.
    let again = app
        .post(
            "/auth/login/finish",
            None,
            json!({"loginId": known.data()["loginId"], "finishLoginRequest": forged}),
        )
        .await;
    again.assert_error(401, "UNAUTHENTICATED");
    app.stop().await;
}

#[tokio::test]
async fn expired_invalid_and_missing_tokens() {
    let app = spawn_app().await;
    let u = app.user("carol").await;
    let (expired, _) = app.state.tokens.issue_at(
        u.id,
        OffsetDateTime::now_utc() - time::Duration::hours(1),
        Duration::from_secs(60),
    );
    app.get("/users/me", &expired)
        .await
        .assert_error(401, "TOKEN_EXPIRED");
    app.get("/users/me", "not.a.token")
        .await
        .assert_error(401, "INVALID_TOKEN");
    // alg: none with the same claims.
    let payload = u.access.split('.').nth(1).expect("payload");
    let none = format!(
        "{}.{payload}.",
        B64::encode(br#"{"alg":"none","typ":"JWT"}"#)
    );
    app.get("/users/me", &none)
        .await
        .assert_error(401, "INVALID_TOKEN");
    let r = app
        .request(reqwest::Method::GET, "/users/me", None, None)
        .await;
    r.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(r.body["error"]["message"], json!("No token provided"));
    app.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let u = app.user("dave").await;
    let first = app
        .post("/auth/refresh", None, json!({"refreshToken": u.refresh}))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let new_refresh = first.data()["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let new_access = first.data()["accessToken"]
        .as_str()
        .expect("access")
        .to_owned();
    assert_ne!(new_refresh, u.refresh);
    assert_eq!(
        app.get("/users/me", &new_access).await.status,
        StatusCode::OK
    );
    // The socket-token route issues an access token without spending the refresh token.
    let socket = app
        .post(
            "/auth/refresh-socket-token",
            None,
            json!({"refreshToken": new_refresh}),
        )
        .await;
    assert_eq!(socket.status, StatusCode::OK, "{}", socket.body);
    assert!(socket.data()["accessToken"].is_string());
    // Reusing the spent token is refused and kills the whole family.
    app.post("/auth/refresh", None, json!({"refreshToken": u.refresh}))
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.post("/auth/refresh", None, json!({"refreshToken": new_refresh}))
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.post(
        "/auth/refresh-socket-token",
        None,
        json!({"refreshToken": new_refresh}),
    )
    .await
    .assert_error(401, "INVALID_TOKEN");
    app.post("/auth/refresh", None, json!({}))
        .await
        .assert_error(401, "UNAUTHENTICATED");
    app.stop().await;
}

#[tokio::test]
async fn refresh_and_logout_with_the_cookie() {
    let app = spawn_app().await;
    let u = app.user("erin").await;
    let cookie = format!("jibber_refresh={}", u.refresh);
    let res = app
        .http
        .post(app.url("/auth/refresh"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    let set = res
        .headers()
        .get("set-cookie")
        .expect("rotated cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: serde_json::Value = res.json().await.expect("json");
    let rotated = body["data"]["refreshToken"]
        .as_str()
        .expect("token")
        .to_owned();
    assert!(
        set.starts_with(&format!("jibber_refresh={rotated}")),
        "{set}"
    );
    // Logout with the cookie revokes it.
    let res = app
        .http
        .post(app.url("/auth/logout"))
        .header("cookie", format!("jibber_refresh={rotated}"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), StatusCode::OK);
    app.post("/auth/refresh", None, json!({"refreshToken": rotated}))
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_username() {
    let app = spawn_app_with(&[("auth_rate_per_username", "3")]).await;
    let mut last = None;
    for _ in 0..4 {
        let (r, _) = app.login_start("victim", "guess").await;
        last = Some(r);
    }
    let r = last.expect("reply");
    r.assert_error(429, "RATE_LIMITED");
    let retry: u64 = r
        .headers
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!((1..=61).contains(&retry), "{retry}");
    // Another username from the same address is not affected.
    let (other, _) = app.login_start("someone_else", "guess").await;
    assert_eq!(other.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn bad_registration_input_is_refused_with_the_field() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/auth/register/start",
            None,
            json!({"username": "a b", "registrationRequest": "AAAA"}),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.message().starts_with("username"));
    let r = app
        .post(
            "/auth/register/start",
            None,
            json!({"username": "valid_name", "registrationRequest": "!!"}),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.message().contains("registrationRequest"), "{}", r.body);
    let r = app
        .post(
            "/auth/register/start",
            None,
            json!({"username": "valid_name", "registrationRequest": B64::encode(&[1u8; 5])}),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    app.stop().await;
}
