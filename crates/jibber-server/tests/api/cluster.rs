//! Nodes linked through Redis (`JIBBER_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), each
//! test with a key prefix of its own: rate limits shared by nodes, and a Redis outage (a TCP
//! proxy the test cuts) that the node reports, survives and recovers from. The three-process
//! cluster test is in crates/jibber-cli/tests/cluster.rs.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Method;
use rust_socketio::TransportType;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app_with};
use crate::postgres::fresh_postgres_url;
use crate::sio::{Device, WAIT};

fn redis_addr() -> String {
    let url = std::env::var("JIBBER_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

fn prefix() -> String {
    format!("jibber-test-{}", Uuid::new_v4().simple())
}

/// Polls `check` until it holds, or panics after [`WAIT`] with `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn health(app: &TestApp) -> (u16, Value) {
    let r = app.request(Method::GET, "/health", None, None).await;
    (r.status.as_u16(), r.body)
}

async fn redis_ok(app: &TestApp) -> bool {
    health(app).await.1["data"]["redis"]["ok"] == json!(true)
}

/// A TCP proxy in front of Redis that the test can cut (every connection closed, new ones
/// refused) and restore.
struct Proxy {
    port: u16,
    down: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let down = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (d, l) = (down.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(redis_addr()).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().await.push(link);
            }
        });
        Proxy {
            port,
            down,
            links,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[tokio::test]
async fn a_redis_outage_degrades_the_node_which_keeps_serving_and_recovers() {
    let proxy = Proxy::start().await;
    let app = spawn_app_with(&[
        ("redis_url", &proxy.url()),
        ("redis_prefix", &prefix()),
        ("presence_ttl", "1s"),
    ])
    .await;
    eventually("the redis link comes up", || async {
        redis_ok(&app).await && app.metrics().await.contains("jibber_redis_up 1")
    })
    .await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let chat = app.chat(&alice, &bob).await;
    let a = Device::connect(&app, &alice.access, TransportType::Websocket).await;
    let mut b = Device::connect(&app, &bob.access, TransportType::Websocket).await;

    proxy.cut().await;
    eventually("health and metrics report redis down", || async {
        let (status, body) = health(&app).await;
        status == 200
            && body["data"]["status"] == json!("degraded")
            && body["data"]["redis"]["ok"] == json!(false)
            && body["data"]["database"]["ok"] == json!(true)
            && app.metrics().await.contains("jibber_redis_up 0")
    })
    .await;

    // The node still serves its own clients.
    let ack = a
        .call(
            "sendMessage",
            crate::helpers::message_body(chat, bob.id, "t-down"),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let got = b.expect("receivedMessage").await;
    assert_eq!(got["tempMessageId"], json!("t-down"));

    // Redis returns: the link recovers by itself and every client is told to catch up.
    proxy.restore();
    let notice = b.expect("syncRequired").await;
    assert!(notice["reason"].is_string(), "{notice}");
    eventually("health and metrics report redis up", || async {
        let (_, body) = health(&app).await;
        body["data"]["status"] == json!("ok")
            && body["data"]["redis"]["ok"] == json!(true)
            && app.metrics().await.contains("jibber_redis_up 1")
    })
    .await;
    a.disconnect().await;
    b.disconnect().await;
    app.stop().await;
}

/// Two nodes of one installation: one fresh PostgreSQL schema, one Redis prefix, the same
/// secrets; `extra` settings on both.
async fn two_nodes(extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    two_nodes_on(&format!("redis://{}", redis_addr()), extra).await
}

/// [`two_nodes`] on the Redis at `redis` (a [`Proxy`] in front of the real one).
async fn two_nodes_on(redis: &str, extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let database = fresh_postgres_url().await;
    let prefix = prefix();
    let setup = jibber_server::auth::opaque::new_server_setup();
    let mut settings = vec![
        ("database_url", database.as_str()),
        ("redis_url", redis),
        ("redis_prefix", prefix.as_str()),
        ("jwt_secret", "a-test-secret-of-at-least-32-characters"),
        ("opaque_server_setup", setup.as_str()),
    ];
    settings.extend_from_slice(extra);
    let n1 = spawn_app_with(&settings).await;
    let n2 = spawn_app_with(&settings).await;
    eventually("both links come up", || async {
        redis_ok(&n1).await && redis_ok(&n2).await
    })
    .await;
    (n1, n2)
}

#[tokio::test]
async fn socket_rate_limits_hold_per_user_across_nodes() {
    let (n1, n2) = two_nodes(&[("socket_events_per_second", "1")]).await;
    let alice = n1.user("alice").await;
    let d1 = Device::connect(&n1, &alice.access, TransportType::Websocket).await;
    let d2 = Device::connect(&n2, &alice.access, TransportType::Websocket).await;
    // One event per second with bursts of two, for the user whichever node counts it.
    assert_eq!(d1.call("ping", json!({})).await["ok"], json!(true));
    assert_eq!(d2.call("ping", json!({})).await["ok"], json!(true));
    let refused = d1.call("ping", json!({})).await;
    assert_eq!(refused["ok"], json!(false), "{refused}");
    assert_eq!(refused["error"]["code"], json!("RATE_LIMITED"));
    let wait = refused["error"]["retryAfterMs"]
        .as_u64()
        .expect("retryAfterMs");
    assert!((1..=1000).contains(&wait), "{refused}");
    // Another event name has a bucket of its own.
    assert_eq!(d2.call("heartbeat", json!({})).await["ok"], json!(true));
    d1.disconnect().await;
    d2.disconnect().await;
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_node_that_shuts_down_takes_its_users_offline_on_the_others() {
    // Heartbeats that expire only after a minute: the expiry cannot be what tells node 1.
    let (n1, n2) = two_nodes(&[("presence_ttl", "60s")]).await;
    let (alice, bob) = (n1.user("alice").await, n1.user("bob").await);
    n1.chat(&alice, &bob).await;
    let mut a = Device::connect(&n1, &alice.access, TransportType::Websocket).await;
    let b = Device::connect(&n2, &bob.access, TransportType::Websocket).await;
    let online = a.expect("userOnline").await;
    assert_eq!(online["userId"], json!(bob.id));
    // A clean shutdown: Bob's socket is closed and his going offline is relayed before node 2
    // leaves the cluster (no waiting for a heartbeat to expire).
    n2.stop().await;
    let offline = a.expect("userOffline").await;
    assert_eq!(offline["userId"], json!(bob.id));
    drop(b);
    a.disconnect().await;
    n1.stop().await;
}

#[tokio::test]
async fn login_attempts_are_limited_per_username_across_nodes() {
    let (n1, n2) = two_nodes(&[("auth_rate_per_username", "2")]).await;
    let name = format!("target{}", &Uuid::new_v4().simple().to_string()[..8]);
    // Two attempts a minute for one username, whichever node gets them.
    assert!(n1.login_start(&name, "guess-1").await.0.status.is_success());
    assert!(n2.login_start(&name, "guess-2").await.0.status.is_success());
    let (refused, _) = n1.login_start(&name, "guess-3").await;
    refused.assert_error(429, "RATE_LIMITED");
    let retry: u64 = refused.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=61).contains(&retry), "{retry}");
    let (refused, _) = n2.login_start(&name.to_uppercase(), "guess-4").await;
    refused.assert_error(429, "RATE_LIMITED");
    // Another username is not affected.
    assert!(
        n2.login_start("someone-else", "pw")
            .await
            .0
            .status
            .is_success()
    );
    n1.stop().await;
    n2.stop().await;
}

/// The user's change feed from `since` to its end: (changes, cursor).
async fn feed(app: &TestApp, token: &str, mut since: i64) -> (Vec<Value>, i64) {
    let mut out = Vec::new();
    loop {
        let page = app.get(&format!("/sync?since={since}"), token).await;
        let data = page.data();
        out.extend(data["changes"].as_array().expect("changes").iter().cloned());
        since = data["nextCursor"].as_i64().expect("cursor");
        if data["hasMore"] != json!(true) {
            return (out, since);
        }
    }
}

async fn unread(app: &TestApp, token: &str, chat: Uuid) -> i64 {
    let chats = app.get("/chats", token).await;
    chats
        .data()
        .as_array()
        .expect("chats")
        .iter()
        .find(|c| c["id"] == json!(chat))
        .and_then(|c| c["unreadCount"].as_i64())
        .expect("the chat is listed")
}

/// Sends over a socket; asserts the acknowledgement.
async fn send(device: &Device, chat: Uuid, to: Uuid, temp: &str) {
    let ack = device
        .call("sendMessage", crate::helpers::message_body(chat, to, temp))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_between_two_nodes_loses_nothing_and_presence_recovers() {
    // Both nodes reach Redis through the proxy, so cutting it is Redis going away for both. The
    // outage stays shorter than the heartbeat TTL (no node is taken for dead): what comes back
    // must be what the nodes write again, not what reaping cleared.
    let proxy = Proxy::start().await;
    let (n1, n2) = two_nodes_on(&proxy.url(), &[("presence_ttl", "9s")]).await;
    let alice = n1.user("alice").await;
    let carol = n1.user("carol").await;
    let (bob, dave, erin) = (
        n2.user("bob").await,
        n2.user("dave").await,
        n2.user("erin").await,
    );
    let ab = n1.chat(&alice, &bob).await;
    let ac = n1.chat(&alice, &carol).await;
    n1.chat(&alice, &dave).await;
    let ae = n1.chat(&alice, &erin).await;
    let be = n2.chat(&bob, &erin).await;
    n2.chat(&bob, &dave).await;

    // Alice and Carol on node 1; Bob and Dave on node 2. Bob has his chat with Alice open.
    let mut a1 = Device::connect(&n1, &alice.access, TransportType::Websocket).await;
    let c1 = Device::connect(&n1, &carol.access, TransportType::Websocket).await;
    let mut b2 = Device::connect(&n2, &bob.access, TransportType::Websocket).await;
    let d2 = Device::connect(&n2, &dave.access, TransportType::Websocket).await;
    let ack = b2
        .call("setActiveChatId", json!({"activeChatId": ab.to_string()}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let expected: HashSet<Value> = [json!(bob.id), json!(carol.id), json!(dave.id)].into();
    let mut online = HashSet::new();
    while online != expected {
        online.insert(a1.expect("userOnline").await["userId"].clone());
    }
    let (_, cursor) = feed(&n1, &alice.access, 0).await;

    proxy.cut().await;
    eventually("both nodes report redis down", || async {
        !redis_ok(&n1).await && !redis_ok(&n2).await
    })
    .await;

    // Local delivery goes on, on both nodes.
    send(&c1, ac, alice.id, "local-on-n1").await;
    a1.expect_with("receivedMessage", "tempMessageId", &json!("local-on-n1"))
        .await;
    let mut e2 = Device::connect(&n2, &erin.access, TransportType::Websocket).await;
    send(&b2, be, erin.id, "local-on-n2").await;
    e2.expect_with("receivedMessage", "tempMessageId", &json!("local-on-n2"))
        .await;
    // Across nodes the live event is lost; the message is stored.
    send(&b2, ab, alice.id, "across-while-down").await;
    // Meanwhile on node 2: Erin (connected during the outage) opens her chat with Alice, Bob
    // closes his, and Dave leaves. None of it can be written into Redis now.
    for (device, chat) in [(&e2, ae.to_string()), (&b2, String::new())] {
        let ack = device
            .call("setActiveChatId", json!({"activeChatId": chat}))
            .await;
        assert_eq!(ack["ok"], json!(true), "{ack}");
    }
    d2.disconnect().await;
    b2.expect_with("userOffline", "userId", &json!(dave.id))
        .await;

    proxy.restore();
    // Alice's device on node 1 is told to catch up, and her feed has what she missed; node 1
    // also learns, from node 2 or from Redis, that Erin came and Dave went.
    let mut synced = false;
    while !(synced && online.contains(&json!(erin.id)) && !online.contains(&json!(dave.id))) {
        let (event, data) = a1.expect_any().await;
        match event.as_str() {
            "syncRequired" => synced = true,
            "receivedMessage" => assert_ne!(
                data["tempMessageId"],
                json!("across-while-down"),
                "a relay published while Redis was down cannot arrive"
            ),
            "onlineUsers" => {
                online = data["userIds"]
                    .as_array()
                    .expect("userIds")
                    .iter()
                    .cloned()
                    .collect();
            }
            "userOnline" => {
                online.insert(data["userId"].clone());
            }
            "userOffline" => {
                online.remove(&data["userId"]);
            }
            _ => {}
        }
    }
    let (changes, _) = feed(&n1, &alice.access, cursor).await;
    assert!(
        changes.iter().any(|c| c["type"] == json!("message")
            && c["message"]["tempMessageId"] == json!("across-while-down")),
        "the feed has the message sent during the outage: {changes:?}"
    );
    // Node 2 wrote its state back into Redis before it told its devices to catch up.
    e2.expect("syncRequired").await;
    eventually("health reports redis up on both nodes", || async {
        redis_ok(&n1).await && redis_ok(&n2).await
    })
    .await;
    // A new device on node 1 sees node 2's users as node 2 has them now.
    let a1b = Device::connect(&n1, &alice.access, TransportType::Websocket).await;
    let now: HashSet<Value> = a1b.greeting["userIds"]
        .as_array()
        .expect("userIds")
        .iter()
        .cloned()
        .collect();
    let expected: HashSet<Value> = [json!(bob.id), json!(carol.id), json!(erin.id)].into();
    assert_eq!(now, expected, "{}", a1b.greeting);
    // Open chats as node 2 has them now: Erin's (opened during the outage) keeps Alice's
    // message from counting as unread; Bob's (closed during the outage) no longer does.
    send(&a1, ae, erin.id, "to-erin-open").await;
    send(&a1, ab, bob.id, "to-bob-closed").await;
    assert_eq!(unread(&n2, &erin.access, ae).await, 0);
    assert_eq!(unread(&n2, &bob.access, ab).await, 1);
    // And live events cross nodes again.
    e2.expect_with("receivedMessage", "tempMessageId", &json!("to-erin-open"))
        .await;

    for d in [a1, a1b, c1, b2, e2] {
        d.disconnect().await;
    }
    n1.stop().await;
    n2.stop().await;
}
