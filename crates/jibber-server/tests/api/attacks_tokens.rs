//! Attacks on access tokens: every forged or stale token is refused by the REST extractor and by
//! the socket handshake alike, and a refresh token works once.

use jibber_proto::B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with};
use crate::sio::RawPolling;

const SECRET: &str = "attack-test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

/// Access-token claims as the server issues them; tests change one thing at a time.
fn claims(user: Uuid) -> Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "sub": user, "iss": "jibber", "iat": now, "exp": now + 600,
        "jti": Uuid::new_v4(), "typ": "access",
    })
}

fn sign(alg: Algorithm, key: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("sign")
}

/// Replaces the payload of a signed token and keeps its signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = B64::encode(claims.to_string().as_bytes());
    parts.join(".")
}

/// The code the server answers a token with, on REST and on the socket handshake; both must
/// agree.
async fn refusal(app: &TestApp, token: &str) -> Option<String> {
    let rest = app.get("/users/me", token).await;
    let rest_code = if rest.status.is_success() {
        None
    } else {
        rest.assert_error(401, rest.body["error"]["code"].as_str().unwrap_or("?"));
        Some(
            rest.body["error"]["code"]
                .as_str()
                .expect("code")
                .to_owned(),
        )
    };
    let socket = RawPolling::open_with(app, json!({ "token": token }))
        .await
        .connect_reply()
        .await;
    let socket_code = match socket {
        Ok(_) => None,
        Err(e) => Some(e["data"]["code"].as_str().expect("data.code").to_owned()),
    };
    assert_eq!(
        rest_code, socket_code,
        "REST and socket disagree on {token}"
    );
    rest_code
}

#[tokio::test]
async fn forged_and_stale_access_tokens_are_refused_on_rest_and_socket() {
    let app = spawn_app_with(&[("jwt_secret", SECRET)]).await;
    let victim = app.user("victim").await;
    let attacker = app.user("attacker").await;
    let invalid = Some("INVALID_TOKEN".to_owned());

    // The forging helper is right: a token it signs with the real key is accepted, so every
    // refusal below is caused by the one thing changed.
    let genuine = sign(Algorithm::HS256, SECRET, &claims(victim.id));
    assert_eq!(refusal(&app, &genuine).await, None);

    // alg: none with the victim's claims and no signature.
    let none_header = B64::encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = B64::encode(claims(victim.id).to_string().as_bytes());
    assert_eq!(
        refusal(&app, &format!("{none_header}.{payload}.")).await,
        invalid
    );
    assert_eq!(
        refusal(&app, &format!("{none_header}.{payload}")).await,
        invalid
    );
    // The right key with another HMAC algorithm.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        assert_eq!(
            refusal(&app, &sign(alg, SECRET, &claims(victim.id))).await,
            invalid,
            "{alg:?}"
        );
    }
    // A header that claims HS256 over an HS512 signature.
    let hs512 = sign(Algorithm::HS512, SECRET, &claims(victim.id));
    let hs256_header = B64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mixed = format!("{hs256_header}.{}", hs512.split_once('.').expect("dot").1);
    assert_eq!(refusal(&app, &mixed).await, invalid);
    // A wrong key.
    let wrong_key = sign(Algorithm::HS256, "another secret", &claims(victim.id));
    assert_eq!(refusal(&app, &wrong_key).await, invalid);
    // The attacker's own genuine token with the subject changed to the victim.
    let mut tampered = claims(victim.id);
    tampered["jti"] = json!(Uuid::new_v4());
    assert_eq!(
        refusal(&app, &with_payload(&attacker.access, &tampered)).await,
        invalid
    );
    // A longer life written into a genuine token.
    let mut longer = claims(attacker.id);
    longer["exp"] = json!(OffsetDateTime::now_utc().unix_timestamp() + 86_400 * 365);
    assert_eq!(
        refusal(&app, &with_payload(&attacker.access, &longer)).await,
        invalid
    );
    // Correctly signed, but of another kind, issuer, or without an expiry.
    for (field, value) in [
        ("typ", json!("refresh")),
        ("iss", json!("someone-else")),
        ("exp", Value::Null),
        ("sub", json!("not-a-uuid")),
    ] {
        let mut c = claims(victim.id);
        if value.is_null() {
            c.as_object_mut().expect("object").remove(field);
        } else {
            c[field] = value;
        }
        assert_eq!(
            refusal(&app, &sign(Algorithm::HS256, SECRET, &c)).await,
            invalid,
            "{field}"
        );
    }
    // Expired (past the 5 s leeway), correctly signed.
    let mut expired = claims(victim.id);
    expired["exp"] = json!(OffsetDateTime::now_utc().unix_timestamp() - 60);
    assert_eq!(
        refusal(&app, &sign(Algorithm::HS256, SECRET, &expired)).await,
        Some("TOKEN_EXPIRED".to_owned())
    );
    // Garbage of every shape.
    for junk in ["x", "a.b.c", "..", &"A".repeat(10_000), "Bearer"] {
        assert_eq!(refusal(&app, junk).await, invalid, "{junk:.20}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_refresh_token_is_single_use_even_when_raced() {
    let app = spawn_app_with(&[]).await;
    let u = app.user("racer").await;
    // Ten concurrent refreshes with the same token: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let http = app.http.clone();
        let url = app.url("/auth/refresh");
        let token = u.refresh.clone();
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .json(&json!({ "refreshToken": token }))
                .send()
                .await
                .expect("send");
            let status = res.status().as_u16();
            let body: Value = res.json().await.expect("json");
            (status, body)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (status, body) = t.await.expect("task");
        if status == 200 {
            winners.push(body["data"]["refreshToken"].as_str().expect("t").to_owned());
        } else {
            assert_eq!(status, 401, "{body}");
            assert_eq!(body["error"]["code"], json!("INVALID_TOKEN"), "{body}");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one refresh succeeds");
    // The reuse revoked the family: the winner's new token is dead too.
    app.post("/auth/refresh", None, json!({ "refreshToken": winners[0] }))
        .await
        .assert_error(401, "INVALID_TOKEN");
    // An access token is never accepted as a refresh token, nor the other way round.
    app.post("/auth/refresh", None, json!({ "refreshToken": u.access }))
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.get("/users/me", &u.refresh)
        .await
        .assert_error(401, "INVALID_TOKEN");
    app.stop().await;
}
