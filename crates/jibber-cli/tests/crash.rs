//! Crash consistency: the real `jibber serve` binary (SQLite) as a child process, several SDK
//! clients sending concurrently, SIGKILL at random moments while they send, a restart on the
//! same data directory and port each time, then the invariants through the REST API:
//!
//! - every acknowledged send is stored exactly once, with the acknowledged id and sequence;
//! - nothing is stored that was not sent, and every client's outbox drained (each send was
//!   eventually acknowledged, retried with the same `tempMessageId`);
//! - per-chat sequence numbers are gapless from 1;
//! - each receiver's change feed has every message once, in sequence order per chat, and each
//!   decrypts to what was sent;
//! - unread counts and delivery statuses agree with the messages, and survive a kill too.
//!
//! The outbox is the per-client list of unacknowledged sends kept in memory by this harness
//! (the SDK's on-disk outbox is not there yet). `JIBBER_CRASH_KILLS` (default 3) and
//! `JIBBER_CRASH_MESSAGES` (per client, default 25) make the long soak: see
//! docs/reliability.md.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jibber_client::{ClientError, Session, login, register};
use jibber_proto::api::{Change, DeliveryStatus, PublicUser};
use rand::Rng;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use uuid::Uuid;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The server process on a fixed data directory and port.
struct Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Server {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jibber"));
        // The server refuses unknown JIBBER_* settings: pass none of the harness's own.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("JIBBER_")) {
            command.env_remove(name);
        }
        let child = command
            .arg("serve")
            .env("JIBBER_DATA_DIR", self.dir.path())
            .env("JIBBER_HOST", "127.0.0.1")
            .env("JIBBER_PORT", self.port.to_string())
            .env("JIBBER_AUTH_RATE_PER_IP", "1000000")
            .env("JIBBER_AUTH_RATE_PER_USERNAME", "1000000")
            .env("JIBBER_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn jibber serve");
        self.child = Some(child);
        // Ready when /ready answers 200 (the port is bound only after the database is open).
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/api/v1/ready", self.base());
        loop {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("jibber serve exited: {status}");
            }
            assert!(Instant::now() < deadline, "jibber serve not ready in 30 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("reaped");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A send is retried when the server was unreachable or refused for being unavailable; any
/// other refusal is a bug.
fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable(_) | ClientError::Protocol(_) => true,
        ClientError::Api(body) => body.status_code >= 500,
        _ => false,
    }
}

/// What one client sent and what the server acknowledged.
struct Sent {
    chat: Uuid,
    sender: Uuid,
    /// tempMessageId → (text, acknowledged id and sequence).
    acked: BTreeMap<String, (String, Uuid, i64)>,
    /// In send order.
    order: Vec<String>,
}

/// Sends `count` messages, each retried with the same `tempMessageId` until acknowledged.
async fn sender(
    me: Arc<Session>,
    chat: Uuid,
    peer: PublicUser,
    count: usize,
    acked_total: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
) -> Sent {
    let mut outbox: Vec<(String, String)> = (0..count)
        .map(|i| {
            let temp = format!("{}-{i}", me.user().username);
            (
                temp.clone(),
                format!("message {i} from {}", me.user().username),
            )
        })
        .collect();
    outbox.reverse();
    let mut sent = Sent {
        chat,
        sender: me.user().id,
        acked: BTreeMap::new(),
        order: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while let Some((temp, text)) = outbox.last().cloned() {
        match me.send_text(chat, &peer, &text, &temp).await {
            Ok(ack) => {
                assert_eq!(ack.temp_message_id, temp);
                sent.acked
                    .insert(temp.clone(), (text, ack.message_id, ack.sequence_number));
                sent.order.push(temp);
                outbox.pop();
                acked_total.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) if retryable(&e) => {
                assert!(Instant::now() < deadline, "no progress: {e}");
                retries.fetch_add(1, Ordering::SeqCst);
                // The server is down or restarting: try the same send again shortly.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("send {temp} refused: {e}"),
        }
    }
    assert!(outbox.is_empty());
    sent
}

/// Every message of a chat, paging through the per-chat sync.
async fn all_messages(s: &Session, chat: Uuid) -> Vec<jibber_proto::api::Message> {
    let mut all: Vec<jibber_proto::api::Message> = Vec::new();
    loop {
        let since = all.last().map_or(0, |m| m.sequence_number);
        let page = s.messages_since(chat, since).await.expect("sync page");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The whole change feed of a user.
async fn feed(s: &Session) -> Vec<Change> {
    let mut all = Vec::new();
    let mut cursor = 0;
    loop {
        let page = s.sync(cursor).await.expect("feed page");
        all.extend(page.changes);
        cursor = page.next_cursor;
        if !page.has_more {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_messages_survive_sigkill_exactly_once_and_in_order() {
    let kills = env_number("JIBBER_CRASH_KILLS", 3);
    let per_client = env_number("JIBBER_CRASH_MESSAGES", 25);
    let pairs = env_number("JIBBER_CRASH_PAIRS", 3);
    let mut server = Server {
        dir: tempfile::tempdir().expect("tempdir"),
        port: free_port(),
        child: None,
        http: reqwest::Client::new(),
    };
    server.start().await;
    let base = server.base();
    let ksf = jibber_crypto::test_ksf();

    // Pairs of users, one chat each; both members send.
    let mut sessions: Vec<Arc<Session>> = Vec::new();
    for i in 0..pairs * 2 {
        let name = format!("crash{i}_{}", &Uuid::new_v4().simple().to_string()[..6]);
        register(&base, &name, "pw", &ksf).await.expect("register");
        sessions.push(Arc::new(
            login(&base, &name, "pw", &ksf).await.expect("login"),
        ));
    }
    let mut chats = Vec::new();
    for p in 0..pairs {
        let (a, b) = (&sessions[2 * p], &sessions[2 * p + 1]);
        let chat = a.open_chat(b.user().id).await.expect("chat").id;
        chats.push((chat, 2 * p, 2 * p + 1));
    }

    let acked_total = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let total = pairs * 2 * per_client;
    let mut tasks = Vec::new();
    for &(chat, a, b) in &chats {
        for (me, other) in [(a, b), (b, a)] {
            let peer = sessions[me]
                .user_profile(sessions[other].user().id)
                .await
                .expect("profile");
            tasks.push(tokio::spawn(sender(
                sessions[me].clone(),
                chat,
                peer,
                per_client,
                acked_total.clone(),
                retries.clone(),
            )));
        }
    }

    // Kill while the clients send: after each share of acknowledgements, at a random moment.
    let mut rng = rand::thread_rng();
    let mut killed_at = Vec::new();
    for k in 0..kills {
        let target = total * (k + 1) / (kills + 1);
        while acked_total.load(Ordering::SeqCst) < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..10))).await;
        server.kill().await;
        killed_at.push(acked_total.load(Ordering::SeqCst));
        server.start().await;
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.expect("sender"));
    }
    assert_eq!(
        acked_total.load(Ordering::SeqCst),
        total,
        "every outbox drained"
    );
    let retried = retries.load(Ordering::SeqCst);
    eprintln!(
        "{kills} kills at {killed_at:?} of {total} acknowledgements; {retried} sends retried"
    );
    // The kills hit live traffic: some before the last acknowledgement, and senders met the
    // dead server.
    assert!(killed_at.iter().any(|&n| n < total), "{killed_at:?}");
    assert!(kills == 0 || retried > 0, "no send ever met a dead server");

    // Each member reads the first half of the chat; then one more kill before the checks.
    for &(chat, a, b) in &chats {
        for me in [a, b] {
            sessions[me]
                .mark_read(chat, per_client as i64)
                .await
                .expect("read");
        }
    }
    server.kill().await;
    server.start().await;

    for &(chat, a, b) in &chats {
        let stored = all_messages(&sessions[a], chat).await;
        // Gapless from 1, exactly the messages both members sent.
        let seqs: Vec<i64> = stored.iter().map(|m| m.sequence_number).collect();
        assert_eq!(seqs, (1..=(2 * per_client) as i64).collect::<Vec<_>>());
        let mut by_key: HashMap<(Uuid, String), &jibber_proto::api::Message> = HashMap::new();
        for m in &stored {
            assert!(
                by_key
                    .insert((m.sender, m.temp_message_id.clone()), m)
                    .is_none(),
                "stored twice: {}",
                m.temp_message_id
            );
        }
        let half = per_client as i64;
        for s in sent.iter().filter(|s| s.chat == chat) {
            let (receiver, sender_session) = if s.sender == sessions[a].user().id {
                (b, a)
            } else {
                (a, b)
            };
            let peer = sessions[receiver]
                .user_profile(sessions[sender_session].user().id)
                .await
                .expect("profile");
            let mut last_seq = 0;
            for temp in &s.order {
                let (text, id, seq) = &s.acked[temp];
                let m = by_key
                    .get(&(s.sender, temp.clone()))
                    .unwrap_or_else(|| panic!("acknowledged {temp} is not stored"));
                assert_eq!((&m.id, &m.sequence_number), (id, seq), "{temp}");
                assert!(*seq > last_seq, "one sender's messages keep their order");
                last_seq = *seq;
                assert_eq!(
                    &sessions[receiver].decrypt(m, &peer).expect("decrypt"),
                    text
                );
                let want = if *seq <= half {
                    DeliveryStatus::Read
                } else {
                    DeliveryStatus::Sent
                };
                assert_eq!(m.delivery_status, want, "{temp}");
            }
        }
        assert_eq!(
            by_key.len(),
            2 * per_client,
            "nothing stored that was not sent"
        );
        // Unread counts: what the other member sent after the read mark.
        for (me, other) in [(a, b), (b, a)] {
            let expected = stored
                .iter()
                .filter(|m| m.sender == sessions[other].user().id && m.sequence_number > half)
                .count() as i64;
            let list = sessions[me].chats().await.expect("chats");
            let c = list.iter().find(|c| c.id == chat).expect("chat listed");
            assert_eq!(c.unread_count, expected, "unread of {me}");
            assert_eq!(c.last_sequence, (2 * per_client) as i64);
        }
    }
    // Each user's change feed: every message of its chat once, in sequence order.
    for (i, s) in sessions.iter().enumerate() {
        let seqs: Vec<i64> = feed(s)
            .await
            .into_iter()
            .filter_map(|c| match c {
                Change::Message { message, .. } => Some(message.sequence_number),
                _ => None,
            })
            .collect();
        assert_eq!(
            seqs,
            (1..=(2 * per_client) as i64).collect::<Vec<_>>(),
            "feed of user {i}"
        );
    }
    server.kill().await;
}
