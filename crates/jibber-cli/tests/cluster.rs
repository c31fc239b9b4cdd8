//! Several nodes: three real `jibber serve` processes on one PostgreSQL (a fresh schema of
//! `JIBBER_TEST_POSTGRES_URL`) and one Redis (`JIBBER_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`, with a key prefix of its own), and Socket.IO devices on different
//! nodes (`rust_socketio`; the SDK's socket where a device must acknowledge `receivedMessage`;
//! the SDK's realtime client, which reconnects by itself, for the device that outlives its
//! node). One node is killed with SIGKILL; the device that was on it reaches the nodes through a
//! TCP proxy that sends new connections to another node once it is gone, as a load balancer does.

#[path = "../../jibber-client/tests/common/log.rs"]
mod log;
#[path = "../../jibber-store-postgres/tests/common/mod.rs"]
mod pg;
#[allow(dead_code)] // The fault injection is not used here, only the forwarding.
#[path = "../../jibber-client/tests/common/proxy.rs"]
mod proxy;
#[path = "../../jibber-server/tests/api/sio.rs"]
mod sio;

/// What `sio::Device::connect` needs of a server: its base URL.
mod helpers {
    pub struct TestApp {
        pub base: String,
    }
}

use log::Log;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jibber_client::realtime::{Client, Connection, Event, Options, Presence};
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

#[derive(Clone)]
struct User {
    id: Uuid,
    name: String,
    token: String,
    id_key: B64,
    signing_key: B64,
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
        name,
        token: session.access_token().await.expect("token"),
        id_key: session.user().public_id_key.clone(),
        signing_key: session.user().public_signing_key.clone(),
    }
}

/// Another session of `user`, over `base`.
async fn login_at(base: &str, user: &User) -> jibber_client::Session {
    let password = format!("pw-{}", user.name);
    jibber_client::login(base, &user.name, &password, &jibber_crypto::test_ksf())
        .await
        .expect("login")
}

/// A send body with the users' real public keys (so that the SDK's device takes it for theirs)
/// around a ciphertext that is not one (it reports it unreadable and still delivers it).
fn message(chat: Uuid, from: &User, to: &User, temp: &str) -> Value {
    json!({
        "chatId": chat,
        "receiver": to.id,
        "cipher": B64::encode(temp.as_bytes()),
        "iv": B64::encode(&[9u8; 12]),
        "signature": B64::encode(&[8u8; 64]),
        "senderPublicIdKey": from.id_key,
        "senderPublicSigningKey": from.signing_key,
        "receiverPublicIdKey": to.id_key,
        "clientTimestamp": "2026-01-01T00:00:00Z",
        "tempMessageId": temp,
    })
}

async fn connect(node: &Node, user: &User) -> Device {
    Device::connect(&node.app, &user.token, TransportType::Websocket).await
}

/// Sends over a socket and returns the acknowledged sequence number.
async fn send(device: &Device, chat: Uuid, from: &User, to: &User, temp: &str) -> i64 {
    let ack = device
        .call("sendMessage", message(chat, from, to, temp))
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

/// Position of the first event at or after `from` that `pick` accepts.
fn position(events: &[Event], from: usize, pick: impl Fn(&Event) -> bool) -> Option<usize> {
    events
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| pick(e))
        .map(|(i, _)| i)
}

fn is_presence(e: &Event, user: Uuid, online: bool) -> bool {
    match e {
        Event::Presence { user: u, presence } if *u == user => {
            if online {
                matches!(presence, Presence::Online)
            } else {
                matches!(presence, Presence::Offline { .. })
            }
        }
        _ => false,
    }
}

fn is_online(e: &Event) -> bool {
    matches!(e, Event::Connection(Connection::Online))
}

/// Sequence numbers of the messages in `chat` the SDK client handed to the application.
fn shown(events: &[Event], chat: Uuid) -> Vec<i64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(r) if r.message.chat_id == chat => Some(r.message.sequence_number),
            _ => None,
        })
        .collect()
}

/// tempMessageId → (message id, sequence) of the client's messages the server stored.
fn sent(events: &[Event]) -> HashMap<String, (Uuid, i64)> {
    log::sent_states(events).collect()
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
    // The way to node 3 for Alice's second device: once node 3 is gone, new connections go to
    // node 1.
    let lb = proxy::Proxy::start_failover(&[b3, b1]).await;

    // Alice on node 1 and, with a second device (the SDK's client), on node 3; Bob on node 2.
    let alice = user(b1, "alice").await;
    let bob = user(b2, "bob").await;
    let mut a1 = connect(&n1, &alice).await;
    let bob1 = connect(&n2, &bob).await;
    let (a2, a2_events) = Client::start(
        login_at(&lb.base, &alice).await,
        Options {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
            ..Options::default()
        },
    )
    .await
    .expect("the client starts");
    let a2_log = Log::collect(a2_events, sio::WAIT);
    a2_log
        .wait_for("Alice's second device online", |es| {
            es.iter().any(is_online).then_some(())
        })
        .await;

    // Bob on node 2 starts a chat: both of Alice's devices (nodes 1 and 3) hear of it.
    let created = api(
        b2,
        "POST",
        "/chats",
        &bob.token,
        Some(json!({"userId": alice.id})),
    )
    .await;
    let chat = Uuid::parse_str(created["data"]["id"].as_str().expect("id")).expect("uuid");
    let announced = a1.expect("newConversation").await;
    assert_eq!(announced["id"], json!(chat));
    a2_log
        .wait_for("newConversation on node 3", |es| {
            es.iter()
                .any(|e| matches!(e, Event::NewChat(c) if c.id == chat))
                .then_some(())
        })
        .await;

    // Presence across nodes: Bob leaves node 2 and comes back; both of Alice's devices see both.
    let before = a2_log.snapshot().len();
    bob1.disconnect().await;
    let off = a1.expect("userOffline").await;
    assert_eq!(off["userId"], json!(bob.id));
    let mut bob1 = Device::connect(&n2.app, &bob.token, TransportType::Polling).await;
    let on = a1.expect("userOnline").await;
    assert_eq!(on["userId"], json!(bob.id));
    a2_log
        .wait_for("Bob offline, then online, on node 3", |es| {
            let off = position(es, before, |e| is_presence(e, bob.id, false))?;
            position(es, off, |e| is_presence(e, bob.id, true))
        })
        .await;
    // Another device of Alice's connecting to node 3 learns that Bob (on node 2) is online.
    let a3 = connect(&n3, &alice).await;
    assert_eq!(a3.greeting["userIds"], json!([bob.id]), "{}", a3.greeting);

    // Typing from node 1 reaches node 2, and from node 2 both of Alice's devices.
    let ack = a1
        .call("typing", json!({"chatId": chat, "isTyping": true}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let typing = bob1.expect("userTyping").await;
    assert_eq!(typing["userId"], json!(alice.id));
    assert_eq!(typing["isTyping"], json!(true));
    let ack = bob1
        .call("typing", json!({"chatId": chat, "isTyping": true}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let typing = a1.expect("userTyping").await;
    assert_eq!(typing["userId"], json!(bob.id));
    a2_log
        .wait_for("Bob typing, on node 3", |es| {
            es.iter()
                .any(|e| {
                    matches!(e, Event::Typing(t)
                        if t.user_id == bob.id && t.chat_id == chat && t.is_typing)
                })
                .then_some(())
        })
        .await;

    // Bob has the chat open on node 2: a message from node 1 does not count as unread.
    let ack = bob1
        .call("setActiveChatId", json!({"activeChatId": chat.to_string()}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let seq = send(&a1, chat, &alice, &bob, "m-open").await;
    bob1.expect_with("receivedMessage", "sequenceNumber", &json!(seq))
        .await;
    // The sender's other devices, on node 3.
    a2_log
        .wait_for("Alice's own message on node 3", |es| {
            shown(es, chat).contains(&seq).then_some(())
        })
        .await;
    assert_eq!(a1.expect("messageSent").await["sequenceNumber"], json!(seq));
    assert_eq!(unread(b2, &bob.token, chat).await, 0);
    // Closed: the next one counts.
    bob1.call("setActiveChatId", json!({"activeChatId": ""}))
        .await;
    let seq2 = send(&a1, chat, &alice, &bob, "m-closed").await;
    let got = bob1
        .expect_with("receivedMessage", "sequenceNumber", &json!(seq2))
        .await;
    assert_eq!(unread(b2, &bob.token, chat).await, 1);

    // Delivered and read marks from node 2 reach both of Alice's devices (nodes 1 and 3).
    let ack = bob1
        .call("markMessageAsDelivered", json!({"messageId": got["id"]}))
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let d = a1.expect("messageDelivered").await;
    assert_eq!(d["sequenceNumber"], json!(seq2));
    a2_log
        .wait_for("delivered, on node 3", |es| {
            es.iter()
                .any(|e| matches!(e, Event::Delivered(d) if d.sequence_number == seq2))
                .then_some(())
        })
        .await;
    let ack = bob1
        .call(
            "markMessageAsRead",
            json!({"chatId": chat, "upToSequence": seq2}),
        )
        .await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let r = a1.expect("messageRead").await;
    assert_eq!(r["upToSequence"], json!(seq2));
    assert_eq!(r["reader"], json!(bob.id));
    a2_log
        .wait_for("read, on node 3", |es| {
            es.iter()
                .any(|e| {
                    matches!(e, Event::Read(r) if r.up_to_sequence == seq2 && r.reader == bob.id)
                })
                .then_some(())
        })
        .await;
    assert_eq!(unread(b2, &bob.token, chat).await, 0);

    // 1,000 messages from senders on all three nodes into the one chat.
    const EACH: usize = 334;
    let senders = [
        (a1.client.clone(), "n1", alice.clone(), bob.clone()),
        (a3.client.clone(), "n3", alice.clone(), bob.clone()),
        (bob1.client.clone(), "n2", bob.clone(), alice.clone()),
    ];
    let mut tasks = Vec::new();
    for (client, node, from, to) in senders {
        tasks.push(tokio::spawn(async move {
            let device = Device::from_client(client);
            for i in 0..EACH {
                send(&device, chat, &from, &to, &format!("{node}-{i}")).await;
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
    // Alice's SDK device on node 3 was handed every message of the chat, in order, once each.
    let whole: Vec<i64> = (1..=i64::try_from(total).expect("small")).collect();
    a2_log
        .wait_for("the whole chat on node 3", |es| {
            (shown(es, chat).len() >= whole.len()).then_some(())
        })
        .await;
    assert_eq!(shown(&a2_log.snapshot(), chat), whole);

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
    let to_carol = send(&bob1, carol_chat, &bob, &carol, "to-carol").await;
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

    // Node 3 dies while Alice's SDK device is writing through it; Bob writes to her before and
    // after.
    const WRITES: usize = 40;
    let mut from_bob = Vec::new();
    for i in 0..5 {
        from_bob.push(send(&bob1, chat, &bob, &alice, &format!("to-a2-{i}")).await);
    }
    let mut written = Vec::new();
    for i in 0..WRITES {
        written.push(a2.send(chat, &format!("a2-{i}")).await.expect("outbox"));
    }
    let first = written[0].clone();
    let stored_before = a2_log
        .wait_for("the first write stored", |es| {
            let sent = sent(es);
            sent.contains_key(&first).then_some(sent.len())
        })
        .await;
    let onlines_before = a2_log.snapshot().iter().filter(|e| is_online(e)).count();
    let bob_seen = bob1.seen.len();
    n3.kill();
    assert!(
        stored_before < WRITES,
        "writes were still on their way when the node died"
    );
    for i in 5..10 {
        from_bob.push(send(&bob1, chat, &bob, &alice, &format!("to-a2-{i}")).await);
    }
    // Carol's presence expires (node 3's heartbeat key lapses): Bob hears she is offline.
    let off = bob1
        .expect_with("userOffline", "userId", &json!(carol.id))
        .await;
    assert!(off["lastSeen"].is_string(), "{off}");

    // The SDK device came back (through the proxy, to node 1) and lost nothing: each of its
    // messages is stored once, in the order written, with the id and sequence it was told;
    // every message of Bob's reached it.
    a2_log
        .wait_for("Alice's second device back online", |es| {
            (es.iter().filter(|e| is_online(e)).count() > onlines_before).then_some(())
        })
        .await;
    assert!(
        lb.counters()
            .failovers
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0,
        "the device reconnected to node 1"
    );
    let acked = a2_log
        .wait_for("every write stored", |es| {
            let sent = sent(es);
            written.iter().all(|t| sent.contains_key(t)).then_some(sent)
        })
        .await;
    assert!(a2.unsent().await.expect("outbox").is_empty());
    a2_log
        .wait_for("every message of Bob's on Alice's second device", |es| {
            let seqs: HashSet<i64> = shown(es, chat).into_iter().collect();
            from_bob.iter().all(|s| seqs.contains(s)).then_some(())
        })
        .await;
    let all = history(b1, &alice.token, chat).await;
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m["sequenceNumber"], json!(i + 1), "gapless order");
    }
    let stored: Vec<(String, Uuid, i64)> = all
        .iter()
        .filter(|m| m["sender"] == json!(alice.id))
        .filter_map(|m| {
            let temp = m["tempMessageId"].as_str()?;
            written.contains(&temp.to_owned()).then(|| {
                (
                    temp.to_owned(),
                    Uuid::parse_str(m["id"].as_str().expect("id")).expect("uuid"),
                    m["sequenceNumber"].as_i64().expect("seq"),
                )
            })
        })
        .collect();
    let order: Vec<&String> = stored.iter().map(|(t, _, _)| t).collect();
    assert_eq!(
        order,
        written.iter().collect::<Vec<_>>(),
        "each write stored once, in the order written"
    );
    for (temp, id, seq) in &stored {
        assert_eq!(
            acked[temp],
            (*id, *seq),
            "the device was told what was stored"
        );
    }

    // Alice never went offline for Bob: her device on node 1 kept her online while node 3's
    // users were reaped. (A message from node 1 after the reaping closes the window.)
    let marker = send(&a1, chat, &alice, &bob, "after-the-reaping").await;
    bob1.expect_with("receivedMessage", "sequenceNumber", &json!(marker))
        .await;
    let offline: Vec<&Value> = bob1.seen[bob_seen..]
        .iter()
        .filter(|(name, _)| name == "userOffline")
        .map(|(_, data)| &data["userId"])
        .collect();
    assert_eq!(offline, vec![&json!(carol.id)], "only Carol went offline");

    a2.shutdown().await;
    drop(n1);
    drop(n2);
}
