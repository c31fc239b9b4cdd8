//! The Socket.IO gateway, driven by Rust Socket.IO clients over both transports.

use std::collections::BTreeSet;

use rust_socketio::TransportType;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, User, message_body, spawn_app_with};
use crate::sio::{Device, RawPolling};

const FAST: &[(&str, &str)] = &[("socket_events_per_second", "100000")];

async fn connect(app: &TestApp, u: &User, transport: TransportType) -> Device {
    Device::connect(app, &u.access, transport).await
}

fn seq(v: &Value) -> i64 {
    v["sequenceNumber"]
        .as_i64()
        .unwrap_or_else(|| panic!("no sequenceNumber in {v}"))
}

/// Sends over a socket and returns the acknowledgement's data (panics on a refusal).
async fn send(device: &Device, chat: Uuid, to: Uuid, temp: &str) -> Value {
    let ack = device
        .call("sendMessage", message_body(chat, to, temp))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    ack["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_messages_reach_every_device_in_order() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("thou_a").await;
    let b = app.user("thou_b").await;
    let chat = app.chat(&a, &b).await;
    let mut a1 = connect(&app, &a, TransportType::Websocket).await;
    let mut a2 = connect(&app, &a, TransportType::Polling).await;
    let mut b1 = connect(&app, &b, TransportType::Websocket).await;
    let mut b2 = connect(&app, &b, TransportType::Polling).await;

    // Three senders on three devices, concurrently: 1,000 messages in all.
    let plan = [
        (a1.client.clone(), b.id, "a1", 334),
        (a2.client.clone(), b.id, "a2", 333),
        (b1.client.clone(), a.id, "b1", 333),
    ];
    let mut tasks = Vec::new();
    for (client, to, name, count) in plan {
        tasks.push(tokio::spawn(async move {
            let device = Device::from_client(client);
            let mut seqs = Vec::new();
            for i in 0..count {
                seqs.push(seq(&send(&device, chat, to, &format!("{name}-{i}")).await));
            }
            (name, seqs)
        }));
    }
    let mut sent_by = std::collections::HashMap::new();
    for t in tasks {
        let (name, seqs) = t.await.expect("sender");
        sent_by.insert(name, seqs);
    }
    let all: BTreeSet<i64> = sent_by.values().flatten().copied().collect();
    assert_eq!(
        all,
        (1..=1000).collect(),
        "acknowledged sequence numbers are 1..=1000 exactly"
    );

    // Every device sees every message it did not send itself, in sequence order, once.
    for (name, device) in [
        ("a1", &mut a1),
        ("a2", &mut a2),
        ("b1", &mut b1),
        ("b2", &mut b2),
    ] {
        let own: BTreeSet<i64> = sent_by
            .get(name)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let expected = 1000 - own.len();
        let received: Vec<i64> = device
            .collect("receivedMessage", expected)
            .await
            .iter()
            .map(seq)
            .collect();
        assert!(
            received.windows(2).all(|w| w[0] < w[1]),
            "{name}: out of order"
        );
        let mut seen: BTreeSet<i64> = received.into_iter().collect();
        assert_eq!(seen.len(), expected, "{name}: duplicates");
        seen.extend(own);
        assert_eq!(seen, (1..=1000).collect::<BTreeSet<i64>>(), "{name}: gap");
    }
    for d in [a1, a2, b1, b2] {
        d.disconnect().await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_retried_send_after_a_lost_acknowledgement_is_not_duplicated() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("lost_a").await;
    let b = app.user("lost_b").await;
    let chat = app.chat(&a, &b).await;
    let mut rx = connect(&app, &b, TransportType::Websocket).await;
    // The first attempt's acknowledgement never reaches the client: it emits without asking
    // for one and drops the connection.
    let first = connect(&app, &a, TransportType::Websocket).await;
    first
        .client
        .emit("sendMessage", message_body(chat, b.id, "once"))
        .await
        .expect("emit");
    let delivered = rx.expect("receivedMessage").await;
    assert_eq!(delivered["tempMessageId"], json!("once"));
    first.disconnect().await;
    // The client retries with the same tempMessageId on a new connection.
    let again = connect(&app, &a, TransportType::Polling).await;
    let ack = send(&again, chat, b.id, "once").await;
    assert_eq!(ack["duplicate"], json!(true));
    assert_eq!(ack["messageId"], delivered["id"]);
    assert_eq!(seq(&ack), 1);
    // The receiver gets nothing for the retry: the next message it sees is the next one.
    send(&again, chat, b.id, "next").await;
    let next = rx.expect("receivedMessage").await;
    assert_eq!(next["tempMessageId"], json!("next"));
    assert_eq!(seq(&next), 2);
    let history = app.get(&format!("/messages/{chat}"), &b.access).await;
    assert_eq!(history.data().as_array().expect("array").len(), 2);
    again.disconnect().await;
    rx.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn an_offline_receiver_catches_up_on_all_hundred_in_order() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("off_a").await;
    let b = app.user("off_b").await;
    let chat = app.chat(&a, &b).await;
    // b was online once and remembers its sync cursor.
    let start = app.get("/sync?since=0", &b.access).await;
    let cursor = start.data()["nextCursor"].as_i64().expect("cursor");
    let sender = connect(&app, &a, TransportType::Websocket).await;
    for i in 0..100 {
        send(&sender, chat, b.id, &format!("offline-{i}")).await;
    }
    // b comes back: it connects, then walks the sync feed from its cursor.
    let device = connect(&app, &b, TransportType::Polling).await;
    let mut got = Vec::new();
    let mut since = cursor;
    loop {
        let page = app
            .get(&format!("/sync?since={since}&limit=30"), &b.access)
            .await;
        for c in page.data()["changes"].as_array().expect("changes") {
            assert_eq!(c["type"], json!("message"));
            got.push(seq(&c["message"]));
        }
        since = page.data()["nextCursor"].as_i64().expect("cursor");
        if page.data()["hasMore"] == json!(false) {
            break;
        }
    }
    assert_eq!(got, (1..=100).collect::<Vec<i64>>());
    // The unread count agrees, and one read clears it.
    assert_eq!(
        app.get("/chats", &b.access).await.data()[0]["unreadCount"],
        json!(100)
    );
    let r = device
        .call(
            "markMessageAsRead",
            json!({"chatId": chat, "upToSequence": 100}),
        )
        .await;
    assert_eq!(r["data"]["unreadCount"], json!(0), "{r}");
    device.disconnect().await;
    sender.disconnect().await;
    app.stop().await;
}

async fn unread(app: &TestApp, u: &User) -> i64 {
    app.get("/chats", &u.access).await.data()[0]["unreadCount"]
        .as_i64()
        .expect("count")
}

/// Two devices send 15 messages each, concurrently.
async fn burst(d1: &Device, d2: &Device, chat: Uuid, to: Uuid, tag: &'static str) {
    let mut tasks = Vec::new();
    for (n, client) in [(1, d1.client.clone()), (2, d2.client.clone())] {
        tasks.push(tokio::spawn(async move {
            let d = Device::from_client(client);
            for i in 0..15 {
                send(&d, chat, to, &format!("{tag}-{n}-{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unread_counts_stay_exact_with_and_without_an_open_chat() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("unr_a").await;
    let b = app.user("unr_b").await;
    let chat = app.chat(&a, &b).await;
    let a1 = connect(&app, &a, TransportType::Websocket).await;
    let a2 = connect(&app, &a, TransportType::Websocket).await;
    let mut b1 = connect(&app, &b, TransportType::Websocket).await;
    // With the chat open on a device of b, nothing counts.
    let r = b1
        .call("setActiveChatId", json!({"activeChatId": chat}))
        .await;
    assert_eq!(r["ok"], json!(true), "{r}");
    burst(&a1, &a2, chat, b.id, "open").await;
    assert_eq!(unread(&app, &b).await, 0);
    // Closed: every message counts.
    b1.call("setActiveChatId", json!({"activeChatId": ""}))
        .await;
    burst(&a1, &a2, chat, b.id, "closed").await;
    assert_eq!(unread(&app, &b).await, 30);
    // Open again, and the device disconnects: the open chat leaves with it.
    b1.call("setActiveChatId", json!({"activeChatId": chat}))
        .await;
    b1.collect("receivedMessage", 60).await;
    b1.disconnect().await;
    // Wait until the server has processed it: b's peers see b go offline.
    let mut a1 = a1;
    assert_eq!(a1.expect("userOffline").await["userId"], json!(b.id));
    burst(&a1, &a2, chat, b.id, "gone").await;
    assert_eq!(unread(&app, &b).await, 60);
    // Reading up to the newest resets it atomically.
    let r = app
        .post(
            &format!("/messages/{chat}/read"),
            Some(&b.access),
            json!({"upToSequence": 90}),
        )
        .await;
    assert_eq!(r.data()["unreadCount"], json!(0));
    assert_eq!(unread(&app, &b).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_registry_is_empty_after_a_thousand_connect_disconnect_cycles() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("cyc_a").await;
    let b = app.user("cyc_b").await;
    let chat = app.chat(&a, &b).await;
    // b watches a's presence: each cycle ends when b sees a go offline.
    let mut watcher = connect(&app, &b, TransportType::Websocket).await;
    // The gauges count sockets and users: a's two devices and b's one.
    let a1 = connect(&app, &a, TransportType::Websocket).await;
    let a2 = connect(&app, &a, TransportType::Polling).await;
    let metrics = app.metrics().await;
    assert_eq!(gauge(&metrics, "jibber_sockets_connected"), Some(3.0));
    assert_eq!(gauge(&metrics, "jibber_socket_users_connected"), Some(2.0));
    a1.disconnect().await;
    a2.disconnect().await;
    watcher
        .expect_with("userOffline", "userId", &json!(a.id))
        .await;
    for i in 0..1000 {
        let d = connect(&app, &a, TransportType::Websocket).await;
        if i % 100 == 0 {
            // Leave traces to clean up: an open chat and a live typing indicator.
            d.call("setActiveChatId", json!({"activeChatId": chat}))
                .await;
            d.call("typing", json!({"chatId": chat, "isTyping": true}))
                .await;
        }
        d.disconnect().await;
        let off = watcher.expect("userOffline").await;
        assert_eq!(off["userId"], json!(a.id));
    }
    let rt = &app.state.realtime;
    assert_eq!(rt.registry.counts(), (1, 1), "only the watcher remains");
    assert!(!rt.registry.is_online(a.id));
    assert!(!rt.registry.has_active_chat(a.id, chat));
    assert_eq!(rt.typing_count(), 0);
    assert!(rt.send_order.is_empty());
    let health = app
        .request(reqwest::Method::GET, "/health", None, None)
        .await;
    assert_eq!(health.data()["sockets"]["connected"], json!(1));
    let metrics = app.metrics().await;
    assert_eq!(gauge(&metrics, "jibber_sockets_connected"), Some(1.0));
    assert_eq!(gauge(&metrics, "jibber_socket_users_connected"), Some(1.0));
    watcher.disconnect().await;
    app.stop().await;
}

/// The value of an unlabelled Prometheus gauge.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[tokio::test]
async fn heartbeats_that_stop_make_a_user_away_and_the_next_brings_them_back() {
    let app = spawn_app_with(&[("socket_events_per_second", "100000"), ("away_after", "1s")]).await;
    let a = app.user("hb_a").await;
    let b = app.user("hb_b").await;
    app.chat(&a, &b).await;
    let mut da = connect(&app, &a, TransportType::Websocket).await;
    let mut db = connect(&app, &b, TransportType::Websocket).await;
    // a's device beats once, then falls silent: b learns that a is away.
    let r = da.call("heartbeat", json!({"timestamp": 1})).await;
    assert_eq!(r["ok"], json!(true), "{r}");
    let away = db.expect_with("userAway", "userId", &json!(a.id)).await;
    assert_eq!(away["userId"], json!(a.id));
    // The next heartbeat brings a back.
    da.call("heartbeat", json!({"timestamp": 2})).await;
    db.expect_with("userBack", "userId", &json!(a.id)).await;
    // b never sent a heartbeat: b's connection alone says b is here, so a never hears that b is
    // away (a's socket sees its events in order; the pong comes after anything sent before it).
    da.call("ping", json!({})).await;
    loop {
        let (event, data) = da.expect_any().await;
        assert!(
            !(event == "userAway" && data["userId"] == json!(b.id)),
            "b sent no heartbeat and must not turn away"
        );
        if event == "pong" {
            break;
        }
    }
    // A device that says it is away stays away through heartbeats until it says it is back.
    da.call("userAway", json!({})).await;
    db.expect_with("userAway", "userId", &json!(a.id)).await;
    da.call("heartbeat", json!({"timestamp": 3})).await;
    da.call("userBack", json!({})).await;
    let (event, data) = db.expect_any().await;
    assert_eq!(
        (event.as_str(), &data["userId"]),
        ("userBack", &json!(a.id)),
        "the heartbeat did not end the away a device declared; userBack did"
    );
    da.disconnect().await;
    db.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn rate_limits_and_bad_payloads_get_codes_not_disconnects() {
    let app = spawn_app_with(&[("socket_events_per_second", "2")]).await;
    let a = app.user("lim_a").await;
    let b = app.user("lim_b").await;
    let chat = app.chat(&a, &b).await;
    let mut d = connect(&app, &a, TransportType::Websocket).await;
    // A burst of 2/s is 4: the fifth heartbeat in a row is refused with a retry time.
    let mut refused = None;
    for _ in 0..8 {
        let r = d.call("heartbeat", json!({"timestamp": 1})).await;
        if r["ok"] == json!(false) {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the limit is reached");
    assert_eq!(r["error"]["code"], json!("RATE_LIMITED"));
    assert!(
        r["error"]["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0),
        "{r}"
    );
    let err = d.expect("error").await;
    assert_eq!(err["code"], json!("RATE_LIMITED"));
    assert_eq!(err["event"], json!("heartbeat"));
    // Limits are per event: the socket is alive and other events pass.
    let mut bad = message_body(chat, b.id, "bad");
    bad["cipher"] = json!(123);
    let r = d.call("sendMessage", bad).await;
    assert_eq!(r["error"]["code"], json!("VALIDATION_FAILED"), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("cipher"),
        "{r}"
    );
    let r = d.call("markMessageAsRead", json!("not an object")).await;
    assert_eq!(r["error"]["code"], json!("VALIDATION_FAILED"), "{r}");
    let r = d.call("markMessageAsDelivered", json!({})).await;
    assert_eq!(r["error"]["code"], json!("VALIDATION_FAILED"), "{r}");
    let mut huge = message_body(chat, b.id, "huge");
    huge["cipher"] = json!(jibber_proto::B64::encode(&vec![0u8; 70 * 1024]));
    let r = d
        .call(
            "typing",
            json!({"chatId": Uuid::now_v7(), "isTyping": true}),
        )
        .await;
    assert_eq!(r["error"]["code"], json!("NOT_FOUND"), "{r}");
    let r = d.call("sendMessage", huge).await;
    assert_eq!(r["error"]["code"], json!("PAYLOAD_TOO_LARGE"), "{r}");
    let mut spoof = message_body(chat, b.id, "spoof");
    spoof["sender"] = json!(b.id);
    let r = d.call("sendMessage", spoof).await;
    assert_eq!(r["error"]["code"], json!("VALIDATION_FAILED"), "{r}");
    // Still connected and working.
    let ok = d
        .call("sendMessage", message_body(chat, b.id, "fine"))
        .await;
    assert_eq!(ok["ok"], json!(true), "{ok}");
    d.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn typing_stops_by_itself_and_receipts_reach_the_sender() {
    let app = spawn_app_with(&[
        ("socket_events_per_second", "100000"),
        ("typing_timeout", "1s"),
    ])
    .await;
    let a = app.user("typ_a").await;
    let b = app.user("typ_b").await;
    let chat = app.chat(&a, &b).await;
    let mut da = connect(&app, &a, TransportType::Websocket).await;
    let mut db = connect(&app, &b, TransportType::Polling).await;
    da.call("typing", json!({"chatId": chat, "isTyping": true}))
        .await;
    let on = db.expect("userTyping").await;
    assert_eq!(
        on,
        json!({"chatId": chat, "userId": a.id, "isTyping": true})
    );
    let off = db.expect("userTyping").await;
    assert_eq!(off["isTyping"], json!(false), "stopped by itself");
    // Send, delivery, read.
    let ack = send(&da, chat, b.id, "receipt").await;
    assert_eq!(
        da.expect("messageSent").await["messageId"],
        ack["messageId"]
    );
    let got = db.expect("receivedMessage").await;
    let r = db
        .call("markMessageAsDelivered", json!({"messageId": got["id"]}))
        .await;
    assert_eq!(r["data"]["changed"], json!(true), "{r}");
    let delivered = da.expect("messageDelivered").await;
    assert_eq!(delivered["messageId"], ack["messageId"]);
    db.call("markMessageAsRead", json!({"messageId": ack["messageId"]}))
        .await;
    let read = da.expect("messageRead").await;
    assert_eq!(read["upToSequence"], json!(1));
    assert_eq!(read["reader"], json!(b.id));
    da.disconnect().await;
    db.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn an_unrefreshed_socket_expires_and_a_refreshed_one_lives() {
    let app = spawn_app_with(&[
        ("socket_events_per_second", "100000"),
        ("access_token_ttl", "2s"),
    ])
    .await;
    let a = app.user("exp_a").await;
    let mut stale = connect(&app, &a, TransportType::Websocket).await;
    let fresh = connect(&app, &a, TransportType::Websocket).await;
    // The second socket refreshes in-band with a new token that lives longer.
    let (token, _) = app.state.tokens.issue_at(
        a.id,
        time::OffsetDateTime::now_utc(),
        std::time::Duration::from_secs(600),
    );
    let r = fresh.call("refreshToken", json!({"token": token})).await;
    assert_eq!(r["ok"], json!(true), "{r}");
    let notice = stale.expect("sessionExpired").await;
    assert!(notice["reason"].is_string());
    // After the first socket expired, the refreshed one still answers.
    let r = fresh.call("heartbeat", json!({})).await;
    assert_eq!(r["ok"], json!(true), "{r}");
    // A token of another user is refused.
    let other = app.user("exp_b").await;
    let r = fresh
        .call("refreshToken", json!({"token": other.access}))
        .await;
    assert_eq!(r["error"]["code"], json!("INVALID_TOKEN"), "{r}");
    fresh.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn a_new_chat_between_online_users_tells_each_of_the_others_presence() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("pres_a").await;
    let b = app.user("pres_b").await;
    let mut da = connect(&app, &a, TransportType::Websocket).await;
    let mut db = connect(&app, &b, TransportType::Websocket).await;
    // No shared chat yet: neither was told that the other is online.
    assert_eq!(da.greeting["userIds"], json!([]));
    assert_eq!(db.greeting["userIds"], json!([]));
    let chat = app.chat(&a, &b).await;
    let announced = db.expect("newConversation").await;
    assert_eq!(announced["id"], json!(chat));
    let next = db.expect_any().await;
    assert_eq!(next.0, "userOnline", "{next:?}");
    assert_eq!(next.1["userId"], json!(a.id));
    let next = da.expect_any().await;
    assert_eq!(next.0, "userOnline", "{next:?}");
    assert_eq!(next.1["userId"], json!(b.id));
    da.disconnect().await;
    let gone = db.expect("userOffline").await;
    assert_eq!(gone["userId"], json!(a.id));
    db.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn a_new_chat_is_announced_to_the_other_member() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("new_a").await;
    let b = app.user("new_b").await;
    let mut db = connect(&app, &b, TransportType::Websocket).await;
    let chat = app.chat(&a, &b).await;
    let announced = db.expect("newConversation").await;
    assert_eq!(announced["id"], json!(chat));
    assert_eq!(
        announced["otherUser"]["id"],
        json!(a.id),
        "as the receiver sees it"
    );
    // Asking again creates nothing and announces nothing: the next event b sees is a's
    // first message.
    app.chat(&a, &b).await;
    let sender = connect(&app, &a, TransportType::Websocket).await;
    send(&sender, chat, b.id, "hello").await;
    let next = db.expect_any().await;
    assert_eq!(next.0, "userOnline", "{next:?}");
    let next = db.expect_any().await;
    assert_eq!(next.0, "receivedMessage", "{next:?}");
    sender.disconnect().await;
    db.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn a_consumer_that_stops_reading_is_bounded_and_told_to_resync() {
    let app = spawn_app_with(&[
        ("socket_events_per_second", "100000"),
        ("socket_send_queue", "4"),
    ])
    .await;
    let a = app.user("slow_a").await;
    let b = app.user("slow_b").await;
    let chat = app.chat(&a, &b).await;
    let slow = RawPolling::open(&app, &b.access).await;
    slow.poll_until("onlineUsers").await;
    // b stops polling while 12 messages are sent to it.
    for i in 0..12 {
        let r = app.send(&a, &b, chat, &format!("flood-{i}")).await;
        assert_eq!(
            r.status.as_u16(),
            201,
            "the sender is never held up: {}",
            r.body
        );
    }
    let metrics = app.metrics().await;
    let dropped: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("jibber_socket_emit_dropped_total")
                && l.contains("queue_full")
                && l.contains("receivedMessage")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no drop counted:\n{metrics}"));
    assert!((1.0..=12.0).contains(&dropped), "{dropped}");
    // What fitted in the queue arrives; the next event is preceded by syncRequired.
    let first = slow.poll().await;
    let got = first
        .iter()
        .filter(|p| p.contains("\"receivedMessage\""))
        .count();
    assert!((1..12).contains(&got), "{first:?}");
    app.send(&a, &b, chat, "after").await;
    let later = slow.poll_until("receivedMessage").await;
    let sync_at = later
        .iter()
        .position(|p| p.contains("\"syncRequired\""))
        .expect("syncRequired was sent");
    let msg_at = later
        .iter()
        .position(|p| p.contains("\"after\"") || p.contains("receivedMessage"))
        .expect("message");
    assert!(sync_at < msg_at, "{later:?}");
    // Nothing was lost: the database has all 13 for the catch-up.
    let all = app
        .get(&format!("/messages/{chat}/sync?since=0"), &b.access)
        .await;
    assert_eq!(all.data().as_array().expect("array").len(), 13);
    app.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients_and_finishes_in_time() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("down_a").await;
    let mut d = connect(&app, &a, TransportType::Websocket).await;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(app.stop());
    let notice = d.expect("serverShutdown").await;
    assert!(
        notice["reason"]
            .as_str()
            .is_some_and(|r| r.contains("reconnect")),
        "{notice}"
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("the server stops within 10 s")
        .expect("join");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_sockets_and_keeps_every_acknowledged_message() {
    let app = spawn_app_with(FAST).await;
    let a = app.user("sd_a").await;
    let b = app.user("sd_b").await;
    let chat = app.chat(&a, &b).await;

    // Four senders keep sends in flight; each stops at its first send that is not acknowledged.
    // Each sender is a device of its own: rust_socketio draws ack ids at random below 1,000, and
    // two calls in flight on one socket with the same id made its ack handler panic (index out
    // of bounds) and end the socket, so every socket here has one call in flight at a time.
    let (acked_tx, mut acked_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = Vec::new();
    for s in 0..4 {
        let device = connect(&app, &a, TransportType::Websocket).await;
        let acked = acked_tx.clone();
        let to = b.id;
        senders.push(tokio::spawn(async move {
            for i in 0..100 {
                let temp = format!("sd-{s}-{i}");
                let wait = std::time::Duration::from_secs(5);
                let Some(ack) = device
                    .try_call("sendMessage", message_body(chat, to, &temp), wait)
                    .await
                else {
                    return;
                };
                if ack["ok"] != json!(true) {
                    return;
                }
                // The pair as the acknowledgement states it.
                let acked_temp = ack["data"]["tempMessageId"]
                    .as_str()
                    .expect("the acknowledgement names its tempMessageId")
                    .to_owned();
                let _ = acked.send((acked_temp, seq(&ack["data"])));
            }
        }));
    }
    drop(acked_tx);
    let mut acked = std::collections::BTreeMap::new();
    while acked.len() < 20 {
        let (temp, seq) = acked_rx.recv().await.expect("sends are acknowledged");
        acked.insert(temp, seq);
    }

    // Shutdown begins by refusing new sockets (the same flag the signal sets) ...
    app.state
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let late = RawPolling::open(&app, &a.access).await;
    let refused = late
        .connect_reply()
        .await
        .expect_err("refused while shutting down");
    assert_eq!(
        refused["message"],
        json!("Server shutting down"),
        "{refused}"
    );
    assert_eq!(
        refused["data"]["code"],
        json!("SERVICE_UNAVAILABLE"),
        "{refused}"
    );
    let ready = app
        .request(reqwest::Method::GET, "/ready", None, None)
        .await;
    assert_eq!(ready.status.as_u16(), 503);

    // ... then stops with the sends still in flight, within the 10 s.
    let token = a.access.clone();
    let started = std::time::Instant::now();
    let parked = app.park().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "stopped in {:?}",
        started.elapsed()
    );
    for sender in senders {
        tokio::time::timeout(std::time::Duration::from_secs(20), sender)
            .await
            .expect("senders end")
            .expect("sender");
    }
    while let Some((temp, seq)) = acked_rx.recv().await {
        acked.insert(temp, seq);
    }

    // Every acknowledged message is stored, once, where its acknowledgement said; the
    // sequence has no gap.
    let server = parked.resume(FAST).await;
    let http = reqwest::Client::new();
    let mut stored = Vec::new();
    let mut since = 0;
    loop {
        let page: Value = http
            .get(format!(
                "{}/api/v1/messages/{chat}/sync?since={since}",
                server.base
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sync")
            .json()
            .await
            .expect("json");
        let messages = page["data"].as_array().expect("messages").clone();
        stored.extend(messages);
        match page["pagination"]["nextSince"].as_i64() {
            Some(next) if page["pagination"]["hasMore"] == json!(true) => since = next,
            _ => break,
        }
    }
    let seqs: Vec<i64> = stored.iter().map(seq).collect();
    assert_eq!(
        seqs,
        (1..=stored.len() as i64).collect::<Vec<_>>(),
        "gapless"
    );
    let by_temp: std::collections::HashMap<&str, i64> = stored
        .iter()
        .map(|m| (m["tempMessageId"].as_str().expect("temp id"), seq(m)))
        .collect();
    assert_eq!(by_temp.len(), stored.len(), "each send stored once");
    for (temp, seq) in &acked {
        assert_eq!(
            by_temp.get(temp.as_str()),
            Some(seq),
            "{temp} was acknowledged"
        );
    }
    server.stop().await;
}
