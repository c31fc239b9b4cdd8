//! IDOR: an attacker who shares a chat with the victim tries every route of the router and every
//! socket event on the victim's other chat, messages, key bundle and receipts. Each attempt is
//! refused with its code, nothing of the victim's leaks into any answer, and the victim's state
//! is unchanged afterwards. The route and event lists are read from the source, so a new route
//! or event without an attempt here fails the test.

use std::collections::BTreeSet;

use jibber_proto::B64;
use reqwest::Method;
use rust_socketio::TransportType;
use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, message_body, spawn_app_with};
use crate::sio::Device;

/// Routes that act on no user's resource by id (they take a secret the caller holds, or none).
const NOT_USER_SCOPED: &[&str] = &[
    "POST /auth/register/start",
    "POST /auth/register/finish",
    "POST /auth/login/start",
    "POST /auth/login/finish",
    "POST /auth/refresh",
    "POST /auth/refresh-socket-token",
    "POST /auth/logout",
    "GET /health",
    "GET /ready",
    "GET /openapi.json",
];

/// Events that take no resource id: they act on the caller's own session only.
const SESSION_ONLY_EVENTS: &[&str] = &["heartbeat", "userAway", "userBack", "ping"];

/// Every `METHOD /path` that `http::router` registers under the API prefix, read from its source.
pub fn router_routes() -> BTreeSet<String> {
    let src: String = include_str!("../../src/http/mod.rs")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut routes = BTreeSet::new();
    for chunk in src.split(".route(\"").skip(1) {
        let (path, rest) = chunk.split_once('"').expect("a quoted path");
        let handlers = rest.split(".route(").next().expect("chunk");
        let handlers = handlers.split(';').next().expect("chunk");
        for method in ["get", "post", "put", "delete", "patch"] {
            if handlers.contains(&format!(",{method}("))
                || handlers.contains(&format!(".{method}("))
            {
                routes.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    routes.retain(|r| !r.ends_with(" /metrics"));
    assert!(routes.len() > 15, "the router parse found {routes:?}");
    routes
}

/// Every client → server event the gateway registers, read from its source and the proto names.
fn gateway_events() -> BTreeSet<String> {
    let proto = include_str!("../../../jibber-proto/src/events.rs");
    let gateway: String = include_str!("../../src/realtime/events.rs")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let mut events = BTreeSet::new();
    for chunk in gateway.split("on!(socket,state,events::").skip(1) {
        let constant = chunk.split(',').next().expect("constant");
        let line = proto
            .lines()
            .find(|l| l.starts_with(&format!("pub const {constant}: &str = ")))
            .unwrap_or_else(|| panic!("no constant {constant}"));
        let name = line.split('"').nth(1).expect("quoted name");
        events.insert(name.to_owned());
    }
    assert!(events.len() >= 10, "the gateway parse found {events:?}");
    events
}

/// The attacker's answers, each recorded with the route it hit.
struct Attempts<'a> {
    app: &'a TestApp,
    token: String,
    routes: BTreeSet<String>,
    bodies: Vec<String>,
}

impl Attempts<'_> {
    async fn call(
        &mut self,
        method: Method,
        route: &str,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        self.routes.insert(format!("{method} {route}"));
        let r = self
            .app
            .request(method, path, Some(&self.token), body)
            .await;
        self.bodies.push(r.body.to_string());
        r
    }

    async fn refused(
        &mut self,
        method: Method,
        route: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
        code: &str,
    ) {
        self.call(method, route, path, body)
            .await
            .assert_error(status, code);
    }
}

fn seqs_and_status(history: &Reply) -> Vec<(i64, String)> {
    history
        .data()
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            (
                m["sequenceNumber"].as_i64().expect("seq"),
                m["deliveryStatus"].as_str().expect("status").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_route_and_event_refuses_another_users_resources() {
    let app = spawn_app_with(&[("socket_events_per_second", "100000")]).await;
    let victim = app.user("victim").await;
    let friend = app.user("friend").await;
    let attacker = app.user("attacker").await;
    // The victim's secret material, distinct from everyone else's.
    let bundle = B64::encode(&[0xabu8; 96]);
    let r = app
        .request(
            Method::PUT,
            "/users/me/keys",
            Some(&victim.access),
            Some(json!({
                "publicIdKey": B64::encode(&[4u8; 32]),
                "publicSigningKey": B64::encode(&[5u8; 32]),
                "keyBundle": bundle,
            })),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.body);
    let private = app.chat(&victim, &friend).await;
    let to_friend = app.send(&victim, &friend, private, "secret-one").await;
    let to_victim = app.send(&friend, &victim, private, "secret-two").await;
    let m1 = to_friend.data()["messageId"]
        .as_str()
        .expect("id")
        .to_owned();
    let m2 = to_victim.data()["messageId"]
        .as_str()
        .expect("id")
        .to_owned();
    // The attacker is the victim's contact: a shared chat with a message in it.
    let shared = app.chat(&attacker, &victim).await;
    app.send(&attacker, &victim, shared, "hello").await;
    let before = seqs_and_status(
        &app.get(&format!("/messages/{private}"), &victim.access)
            .await,
    );

    let mut a = Attempts {
        app: &app,
        token: attacker.access.clone(),
        routes: BTreeSet::new(),
        bodies: Vec::new(),
    };
    let get = Method::GET;
    let post = Method::POST;
    // History, per-chat sync, send, read: the chat is not the attacker's.
    a.refused(
        get.clone(),
        "/messages/{id}",
        &format!("/messages/{private}"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    a.refused(
        get.clone(),
        "/messages/{id}",
        &format!("/messages/{private}?before=3&limit=1"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    a.refused(
        get.clone(),
        "/messages/{id}/sync",
        &format!("/messages/{private}/sync?since=0"),
        None,
        404,
        "NOT_FOUND",
    )
    .await;
    for receiver in [victim.id, friend.id] {
        a.refused(
            post.clone(),
            "/messages/{id}",
            &format!("/messages/{private}"),
            Some(message_body(private, receiver, "intrude")),
            404,
            "NOT_FOUND",
        )
        .await;
    }
    // The attacker's own chat in the path, the victim's in the body.
    a.refused(
        post.clone(),
        "/messages/{id}",
        &format!("/messages/{shared}"),
        Some(message_body(private, friend.id, "swap")),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    // The attacker's own chat, addressed to someone who is not in it.
    a.refused(
        post.clone(),
        "/messages/{id}",
        &format!("/messages/{shared}"),
        Some(message_body(shared, friend.id, "redirect")),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    a.refused(
        post.clone(),
        "/messages/{id}/read",
        &format!("/messages/{private}/read"),
        Some(json!({"upToSequence": 2})),
        404,
        "NOT_FOUND",
    )
    .await;
    // A message id where a chat id belongs.
    a.refused(
        post.clone(),
        "/messages/{id}/read",
        &format!("/messages/{m2}/read"),
        Some(json!({"upToSequence": 2})),
        404,
        "NOT_FOUND",
    )
    .await;
    // Receipts on the victim's messages, sent and received.
    for m in [&m1, &m2] {
        a.refused(
            post.clone(),
            "/messages/{id}/delivered",
            &format!("/messages/{m}/delivered"),
            Some(json!({})),
            404,
            "NOT_FOUND",
        )
        .await;
    }
    // A chat id where a message id belongs.
    a.refused(
        post.clone(),
        "/messages/{id}/delivered",
        &format!("/messages/{private}/delivered"),
        Some(json!({})),
        404,
        "NOT_FOUND",
    )
    .await;
    // The victim's public profile has no private material; the attacker's bundle is their own.
    let profile = a
        .call(
            get.clone(),
            "/users/{id}",
            &format!("/users/{}", victim.id),
            None,
        )
        .await;
    assert_eq!(profile.data()["id"], json!(victim.id));
    assert!(
        profile.data().get("keyBundle").is_none(),
        "{}",
        profile.body
    );
    let own = a
        .call(
            get.clone(),
            "/users/me/key-bundle",
            "/users/me/key-bundle",
            None,
        )
        .await;
    assert_eq!(own.data()["keyBundle"], json!(B64::encode(&[3u8; 120])));
    let me = a.call(get.clone(), "/users/me", "/users/me", None).await;
    assert_eq!(me.data()["id"], json!(attacker.id));
    // Rotating keys changes the caller's own keys only (there is no id to aim with).
    let rotated = a
        .call(
            Method::PUT,
            "/users/me/keys",
            "/users/me/keys",
            Some(json!({
                "publicIdKey": B64::encode(&[6u8; 32]),
                "publicSigningKey": B64::encode(&[7u8; 32]),
                "keyBundle": B64::encode(&[8u8; 64]),
                "userId": victim.id,
            })),
        )
        .await;
    rotated.assert_error(400, "VALIDATION_FAILED");
    // Lists and feeds show the attacker's own chat only.
    let chats = a.call(get.clone(), "/chats", "/chats", None).await;
    let ids: Vec<&Value> = chats
        .data()
        .as_array()
        .expect("array")
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, vec![&json!(shared)]);
    let chat_again = a
        .call(
            post.clone(),
            "/chats",
            "/chats",
            Some(json!({"userId": victim.id})),
        )
        .await;
    assert_eq!(
        chat_again.data()["id"],
        json!(shared),
        "the shared chat, not the private one"
    );
    a.refused(
        post.clone(),
        "/chats",
        "/chats",
        Some(json!({"userId": attacker.id})),
        400,
        "VALIDATION_FAILED",
    )
    .await;
    a.call(get.clone(), "/sync", "/sync?since=0", None).await;
    a.call(get.clone(), "/contacts", "/contacts?search=victim", None)
        .await;
    let attempted = a.routes.clone();

    // Every socket event with the victim's ids.
    let device = Device::connect(&app, &attacker.access, TransportType::Websocket).await;
    let mut events = BTreeSet::new();
    let refused = |event: &str, ack: Value, code: &str| {
        assert_eq!(ack["ok"], json!(false), "{event}: {ack}");
        assert_eq!(ack["error"]["code"], json!(code), "{event}: {ack}");
        event.to_owned()
    };
    events.insert(refused(
        "sendMessage",
        device
            .call(
                "sendMessage",
                message_body(private, victim.id, "socket-intrude"),
            )
            .await,
        "NOT_FOUND",
    ));
    events.insert(refused(
        "markMessageAsDelivered",
        device
            .call("markMessageAsDelivered", json!({"messageId": m1}))
            .await,
        "NOT_FOUND",
    ));
    events.insert(refused(
        "markMessageAsDelivered",
        device
            .call("markMessageAsDelivered", json!({"messageId": m2}))
            .await,
        "NOT_FOUND",
    ));
    events.insert(refused(
        "markMessageAsRead",
        device
            .call(
                "markMessageAsRead",
                json!({"chatId": private, "upToSequence": 2}),
            )
            .await,
        "NOT_FOUND",
    ));
    events.insert(refused(
        "markMessageAsRead",
        device
            .call("markMessageAsRead", json!({"messageId": m2}))
            .await,
        "NOT_FOUND",
    ));
    events.insert(refused(
        "setActiveChatId",
        device
            .call("setActiveChatId", json!({"activeChatId": private}))
            .await,
        "NOT_FOUND",
    ));
    events.insert(refused(
        "typing",
        device
            .call("typing", json!({"chatId": private, "isTyping": true}))
            .await,
        "NOT_FOUND",
    ));
    events.insert(refused(
        "refreshToken",
        device
            .call("refreshToken", json!({"token": victim.access}))
            .await,
        "INVALID_TOKEN",
    ));
    for event in SESSION_ONLY_EVENTS {
        let ack = device
            .call(event, json!({"chatId": private, "userId": victim.id}))
            .await;
        assert_eq!(ack["ok"], json!(true), "{event}: {ack}");
        a.bodies.push(ack.to_string());
        events.insert((*event).to_owned());
    }
    device.disconnect().await;

    // Nothing of the victim's private chat reached the attacker.
    for secret in [
        bundle.clone(),
        private.to_string(),
        m1.clone(),
        m2.clone(),
        B64::encode(b"secret-one"),
        B64::encode(b"secret-two"),
    ] {
        for body in &a.bodies {
            assert!(!body.contains(&secret), "{secret} leaked in {body}");
        }
    }
    // The victim's state is as it was: no message, receipt or read from the attacker.
    let after = app
        .get(&format!("/messages/{private}"), &victim.access)
        .await;
    assert_eq!(seqs_and_status(&after), before);
    assert_eq!(before, vec![(1, "sent".to_owned()), (2, "sent".to_owned())]);
    let chats = app.get("/chats", &victim.access).await;
    let unread = chats
        .data()
        .as_array()
        .expect("array")
        .iter()
        .find(|c| c["id"] == json!(private))
        .expect("private chat")["unreadCount"]
        .clone();
    assert_eq!(unread, json!(1));
    let bundle_now = app.get("/users/me/key-bundle", &victim.access).await;
    assert_eq!(bundle_now.data()["keyBundle"], json!(bundle));

    // Coverage: every route and event of the source had an attempt (or is not user-scoped).
    let mut covered = attempted;
    covered.extend(NOT_USER_SCOPED.iter().map(|s| (*s).to_owned()));
    assert_eq!(covered, router_routes(), "a route without an IDOR attempt");
    assert_eq!(events, gateway_events(), "an event without an IDOR attempt");
    app.stop().await;
}
