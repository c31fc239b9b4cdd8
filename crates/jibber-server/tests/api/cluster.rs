//! Nodes linked through Redis (`JIBBER_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), each
//! test with a key prefix of its own: rate limits shared by nodes, and a Redis outage (a TCP
//! proxy the test cuts) that the node reports, survives and recovers from. The three-process
//! cluster test is in crates/jibber-cli/tests/cluster.rs.

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
    let database = fresh_postgres_url().await;
    let (prefix, redis) = (prefix(), format!("redis://{}", redis_addr()));
    let setup = jibber_server::auth::opaque::new_server_setup();
    let mut settings = vec![
        ("database_url", database.as_str()),
        ("redis_url", redis.as_str()),
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
