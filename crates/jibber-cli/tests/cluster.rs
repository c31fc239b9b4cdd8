//! Several nodes: three real `jibber serve` processes on one PostgreSQL (a fresh schema of
//! `JIBBER_TEST_POSTGRES_URL`) and one Redis (`JIBBER_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`, with a key prefix of its own), and Socket.IO devices on different
//! nodes (`rust_socketio`, and the SDK's socket where a device must acknowledge
//! `receivedMessage`). One node is killed with SIGKILL.

#[path = "../../jibber-store-postgres/tests/common/mod.rs"]
mod pg;
#[path = "../../jibber-server/tests/api/sio.rs"]
mod sio;

/// What `sio::Device::connect` needs of a server: its base URL.
mod helpers {
    pub struct TestApp {
        pub base: String,
    }
}

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jibber_proto::B64;
use rust_socketio::TransportType;
use serde_json::{Value, json};
use sio::Device;
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("JIBBER_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Shared secrets of the cluster (every node must sign and verify alike).
struct Secrets {
    jwt: String,
    opaque: String,
}

fn secrets() -> Secrets {
    let run = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_jibber"))
            .args(["secrets", what])
            .output()
            .expect("jibber secrets");
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    };
    Secrets {
        jwt: run("jwt-secret"),
        opaque: run("opaque-setup"),
    }
}

/// One `jibber serve` process; killed (SIGKILL) when dropped.
struct Node {
    app: helpers::TestApp,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(name: &str, database: &str, prefix: &str, secrets: &Secrets) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_jibber"))
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("JIBBER_DATA_DIR", dir.path())
            .env("JIBBER_DATABASE_URL", database)
            .env("JIBBER_REDIS_URL", redis_url())
            .env("JIBBER_REDIS_PREFIX", prefix)
            .env("JIBBER_NODE_ID", name)
            .env("JIBBER_PRESENCE_TTL", "3s")
            .env("JIBBER_JWT_SECRET", &secrets.jwt)
            .env("JIBBER_OPAQUE_SERVER_SETUP", &secrets.opaque)
            .env("JIBBER_AUTH_RATE_PER_IP", "100000")
            .env("JIBBER_SOCKET_EVENTS_PER_SECOND", "100000")
            .env("JIBBER_SOCKET_SEND_QUEUE", "4096")
            .env("JIBBER_LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn jibber");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("the node prints its address");
            if let Some(rest) = line.trim().strip_prefix("Jibber is running at ") {
                break rest.trim_end_matches('/').to_owned();
            }
        };
        Node {
            app: helpers::TestApp { base },
            child,
            _dir: dir,
        }
    }

    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A REST call; returns (status, body).
async fn api(base: &str, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v1{path}");
    let req = match method {
        "GET" => http.get(url),
        _ => http.post(url).json(&body.unwrap_or(Value::Null)),
    };
    let res = req.bearer_auth(token).send().await.expect("request");
    let status = res.status();
    let body: Value = res.json().await.expect("json");
    assert!(status.is_success(), "{method} {path}: {status} {body}");
    body
}

struct User {
    id: Uuid,
    token: String,
}

/// Registers and logs in over node `base` (cheap Argon2: same protocol).
async fn user(base: &str, prefix: &str) -> User {
    let ksf = jibber_crypto::test_ksf();
    let name = format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..8]);
    let password = format!("pw-{name}");
    jibber_client::register(base, &name, &password, &ksf)
        .await
        .expect("register");
    let session = jibber_client::login(base, &name, &password, &ksf)
        .await
        .expect("login");
    User {
        id: session.user().id,
        token: session.access_token().await.expect("token"),
    }
}

fn message(chat: Uuid, receiver: Uuid, temp: &str) -> Value {
    json!({
        "chatId": chat,
        "receiver": receiver,
        "cipher": B64::encode(temp.as_bytes()),
        "iv": B64::encode(&[9u8; 12]),
        "signature": B64::encode(&[8u8; 64]),
        "senderPublicIdKey": B64::encode(&[1u8; 32]),
        "senderPublicSigningKey": B64::encode(&[2u8; 32]),
        "receiverPublicIdKey": B64::encode(&[3u8; 32]),
        "clientTimestamp": "2026-01-01T00:00:00Z",
        "tempMessageId": temp,
    })
}

async fn connect(node: &Node, user: &User) -> Device {
    Device::connect(&node.app, &user.token, TransportType::Websocket).await
}

/// Sends over a socket and returns the acknowledged sequence number.
async fn send(device: &Device, chat: Uuid, receiver: Uuid, temp: &str) -> i64 {
    let ack = device
        .call("sendMessage", message(chat, receiver, temp))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    ack["data"]["sequenceNumber"].as_i64().expect("seq")
}

/// The chat's whole history through the per-chat sync feed, in order.
async fn history(base: &str, token: &str, chat: Uuid) -> Vec<Value> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let page = api(
            base,
            "GET",
            &format!("/messages/{chat}/sync?since={since}"),
            token,
            None,
        )
        .await;
        out.extend(page["data"].as_array().expect("messages").iter().cloned());
        if page["pagination"]["hasMore"] != json!(true) {
            return out;
        }
        since = page["pagination"]["nextSince"].as_i64().expect("nextSince");
    }
}

/// The user's change feed from `since` to its end: (changes, cursor).
async fn feed(base: &str, token: &str, mut since: i64) -> (Vec<Value>, i64) {
    let mut out = Vec::new();
    loop {
        let page = api(base, "GET", &format!("/sync?since={since}"), token, None).await;
        let data = &page["data"];
        out.extend(data["changes"].as_array().expect("changes").iter().cloned());
        since = data["nextCursor"].as_i64().expect("cursor");
        if data["hasMore"] != json!(true) {
            return (out, since);
        }
    }
}

async fn unread(base: &str, token: &str, chat: Uuid) -> i64 {
    let chats = api(base, "GET", "/chats", token, None).await;
    chats["data"]
        .as_array()
        .expect("chats")
        .iter()
        .find(|c| c["id"] == json!(chat))
        .and_then(|c| c["unreadCount"].as_i64())
        .expect("the chat is listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_messages_presence_and_survive_a_killed_node() {
    let database = pg::fresh_url().await;
    let prefix = format!("jibber-test-{}", Uuid::new_v4().simple());
    let secrets = secrets();
    let n1 = Node::start("n1", &database, &prefix, &secrets);
    let n2 = Node::start("n2", &database, &prefix, &secrets);
    let mut n3 = Node::start("n3", &database, &prefix, &secrets);
    for n in [&n1, &n2, &n3] {
        let health = reqwest::get(format!("{}/api/v1/health", n.app.base))
            .await
            .expect("health")
            .json::<Value>()
            .await
            .expect("json");
        assert_eq!(health["data"]["database"]["backend"], json!("postgres"));
        assert_eq!(health["data"]["redis"]["ok"], json!(true), "{health}");
    }
    let (b1, b2, b3) = (&n1.app.base, &n2.app.base, &n3.app.base);

    // Alice on node 1, Bob on node 2: a new chat reaches Bob across nodes.
    let alice = user(b1, "alice").await;
    let bob = user(b2, "bob").await;
    let mut a1 = connect(&n1, &alice).await;
    let mut bob1 = connect(&n2, &bob).await;
    let created = api(
        b1,
        "POST",
        "/chats",
        &alice.token,
        Some(json!({"userId": bob.id})),
    )
    .await;
    let chat = Uuid::parse_str(created["data"]["id"].as_str().expect("id")).expect("uuid");
    let announced = bob1.expect("newConversation").await;
    assert_eq!(announced["id"], json!(chat));

    // Presence across nodes: Bob leaves node 2 and comes back; Alice on node 1 sees both.
    bob1.disconnect().await;
    let off = a1.expect("userOffline").await;
    assert_eq!(off["userId"], json!(bob.id));
    let mut bob1 = Device::connect(&n2.app, &bob.token, TransportType::Polling).await;
    let on = a1.expect("userOnline").await;
    assert_eq!(on["userId"], json!(bob.id));
    // A second device of Alice on node 3 learns that Bob (on node 2) is online.
    let mut a2 = connect(&n3, &alice).await;
    assert_eq!(a2.greeting["userIds"], json!([bob.id]), "{}", a2.greeting);

    // Typing from node 1 reaches node 2.
    let ack = a1
        .call("typing", json!({"chatId": chat, "isTyping": true}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let typing = bob1.expect("userTyping").await;
    assert_eq!(typing["userId"], json!(alice.id));
    assert_eq!(typing["isTyping"], json!(true));

    // Bob has the chat open on node 2: a message from node 1 does not count as unread.
    let ack = bob1
        .call("setActiveChatId", json!({"activeChatId": chat.to_string()}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let seq = send(&a1, chat, bob.id, "m-open").await;
    bob1.expect_with("receivedMessage", "sequenceNumber", &json!(seq))
        .await;
    // The sender's other device, on node 3.
    a2.expect_with("receivedMessage", "sequenceNumber", &json!(seq))
        .await;
    assert_eq!(a1.expect("messageSent").await["sequenceNumber"], json!(seq));
    assert_eq!(unread(b2, &bob.token, chat).await, 0);
    // Closed: the next one counts.
    bob1.call("setActiveChatId", json!({"activeChatId": ""}))
        .await;
    let seq2 = send(&a1, chat, bob.id, "m-closed").await;
    let got = bob1
        .expect_with("receivedMessage", "sequenceNumber", &json!(seq2))
        .await;
    assert_eq!(unread(b2, &bob.token, chat).await, 1);

    // Delivered and read marks from node 2 reach both of Alice's devices (nodes 1 and 3).
    let ack = bob1
        .call("markMessageAsDelivered", json!({"messageId": got["id"]}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    for device in [&mut a1, &mut a2] {
        let d = device.expect("messageDelivered").await;
        assert_eq!(d["sequenceNumber"], json!(seq2));
    }
    let ack = bob1
        .call(
            "markMessageAsRead",
            json!({"chatId": chat, "upToSequence": seq2}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    for device in [&mut a1, &mut a2] {
        let r = device.expect("messageRead").await;
        assert_eq!(r["upToSequence"], json!(seq2));
        assert_eq!(r["reader"], json!(bob.id));
    }
    assert_eq!(unread(b2, &bob.token, chat).await, 0);

    // 1,000 messages from senders on all three nodes into the one chat.
    const EACH: usize = 334;
    let senders = [
        (a1.client.clone(), "n1", bob.id),
        (a2.client.clone(), "n3", bob.id),
        (bob1.client.clone(), "n2", alice.id),
    ];
    let mut tasks = Vec::new();
    for (client, node, receiver) in senders {
        tasks.push(tokio::spawn(async move {
            let device = Device::from_client(client);
            for i in 0..EACH {
                send(&device, chat, receiver, &format!("{node}-{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    let all = history(b3, &alice.token, chat).await;
    let total = 2 + 3 * EACH;
    assert_eq!(all.len(), total);
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m["sequenceNumber"], json!(i + 1), "gapless order");
    }
    let temps: HashSet<&str> = all
        .iter()
        .map(|m| m["tempMessageId"].as_str().expect("temp"))
        .collect();
    assert_eq!(temps.len(), total, "each message once");
    // Bob's device on node 2 received every message Alice sent from nodes 1 and 3.
    let from_alice: BTreeSet<i64> = all
        .iter()
        .filter(|m| m["sender"] == json!(alice.id))
        .filter_map(|m| m["sequenceNumber"].as_i64())
        .filter(|s| *s > seq2)
        .collect();
    let received: BTreeSet<i64> = bob1
        .collect("receivedMessage", from_alice.len())
        .await
        .iter()
        .filter_map(|m| m["sequenceNumber"].as_i64())
        .collect();
    assert_eq!(received, from_alice);

    // Carol lives on node 3 only and shares a chat with Bob.
    let carol = user(b3, "carol").await;
    let created = api(
        b3,
        "POST",
        "/chats",
        &carol.token,
        Some(json!({"userId": bob.id})),
    )
    .await;
    let carol_chat = Uuid::parse_str(created["data"]["id"].as_str().expect("id")).expect("uuid");
    // Carol's device is the SDK's Socket.IO client, which can acknowledge server events.
    let (_carol_socket, mut carol_events) = jibber_client::sio::Socket::connect(
        b3,
        jibber_client::sio::Transport::WebSocket,
        &json!({ "token": carol.token }),
        sio::WAIT,
    )
    .await
    .expect("carol connects to node 3");
    bob1.expect_with("userOnline", "userId", &json!(carol.id))
        .await;
    // Bob (node 2) writes to Carol (node 3); her device's acknowledgement to node 3 marks the
    // message delivered, and node 3 tells Bob on node 2.
    let to_carol = send(&bob1, carol_chat, carol.id, "to-carol").await;
    let delivered_id = loop {
        let inbound = tokio::time::timeout(sio::WAIT, carol_events.recv())
            .await
            .expect("an event for carol in time")
            .expect("carol's socket is open");
        if let jibber_client::sio::Inbound::Event { name, data, ack } = inbound
            && name == "receivedMessage"
            && data["sequenceNumber"] == json!(to_carol)
        {
            ack.expect("receivedMessage asks for an acknowledgement")
                .send(&json!({}))
                .await;
            break data["id"].clone();
        }
    };
    bob1.expect_with("messageDelivered", "messageId", &delivered_id)
        .await;

    // Alice's device on node 3 remembers where its feed ended; then node 3 dies.
    let (_, cursor) = feed(b3, &alice.token, 0).await;
    n3.kill();
    // Carol's presence expires (node 3's heartbeat key lapses): Bob hears she is offline.
    let off = bob1
        .expect_with("userOffline", "userId", &json!(carol.id))
        .await;
    assert!(off["lastSeen"].is_string(), "{off}");
    // Alice is still online on node 1, so Bob's messages meanwhile reach her there.
    let lost_seq = send(&bob1, chat, alice.id, "while-n3-is-dead").await;
    a1.expect_with("receivedMessage", "sequenceNumber", &json!(lost_seq))
        .await;
    // The killed node's device reconnects to node 1 and catches up from its cursor.
    let mut a2 = connect(&n1, &alice).await;
    let (changes, _) = feed(b1, &alice.token, cursor).await;
    assert!(
        changes
            .iter()
            .any(|c| c["type"] == json!("message")
                && c["message"]["sequenceNumber"] == json!(lost_seq)),
        "the feed has what was sent while the device was away: {changes:?}"
    );
    let next = send(&bob1, chat, alice.id, "after-reconnect").await;
    a2.expect_with("receivedMessage", "sequenceNumber", &json!(next))
        .await;
    drop(n1);
    drop(n2);
}
