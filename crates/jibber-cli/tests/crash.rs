//! Crash consistency: the real `jibber serve` binary (SQLite) as a child process, a realtime SDK
//! client per user (`jibber_client::realtime::Client`, its outbox in a file) sending
//! concurrently, SIGKILL at random moments while they send, a restart on the same data directory
//! and port each time; now and then a client "crashes" too (shut down with unacknowledged
//! messages and started again on the same outbox file). Then:
//!
//! - every message queued with `Client::send` reached `Sent`, with the id and sequence the server
//!   stored, and every outbox file is empty (each entry was resent with its `tempMessageId`
//!   until acknowledged, and stored once);
//! - every receiver's client showed each message of its chat exactly once, in sequence order,
//!   decrypted to what was sent, through the reconnects and catch-ups (and its own restart);
//! - every sender saw each of its messages delivered;
//! - through the REST API: per-chat sequence numbers are gapless from 1; nothing is stored that
//!   was not sent; each user's change feed has every message once and in order; unread counts
//!   and statuses agree with the messages after a read mark and one more kill.
//!
//! `JIBBER_CRASH_KILLS` (default 3), `JIBBER_CRASH_MESSAGES` (per client, default 25) and
//! `JIBBER_CRASH_PAIRS` (default 3) make the long soak: see docs/reliability.md.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jibber_client::outbox::Outbox;
use jibber_client::realtime::{Client, Connection, Event, MessageState, Options};
use jibber_client::{Session, login, register};
use jibber_proto::api::{Change, DeliveryStatus};
use rand::Rng;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use uuid::Uuid;

/// How many messages a sender keeps queued beyond the acknowledged ones.
const WINDOW: usize = 8;
/// The longest wait for any one step (a hang fails here, with what was awaited).
const WAIT: Duration = Duration::from_secs(120);
/// How soon a send that failed while the client stayed connected is tried again.
const RETRY: Duration = Duration::from_millis(200);

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
            .env("JIBBER_SOCKET_EVENTS_PER_SECOND", "100000")
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

/// Where the run stands, per user and in all; every change is announced on a `watch`.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Messages queued with `Client::send`, per user.
    queued: Vec<usize>,
    /// Distinct messages that reached `Sent`, per user.
    sent: Vec<usize>,
    /// Per user: how many times its client came online.
    connects: Vec<usize>,
    /// Distinct peer messages shown to receivers, in all.
    received: usize,
    /// Distinct messages their senders saw delivered, in all.
    delivered: usize,
    /// Anything that must not happen (a failed send, an event error, an expired session).
    problems: Vec<String>,
}

impl Progress {
    fn sent_total(&self) -> usize {
        self.sent.iter().sum()
    }
}

/// One message a client showed.
#[derive(Debug, Clone)]
struct Shown {
    chat: Uuid,
    id: Uuid,
    seq: i64,
    sender: Uuid,
    temp: String,
    text: Result<String, String>,
}

/// What one user's clients did, through every restart.
#[derive(Debug, Default)]
struct UserLog {
    /// (tempMessageId, text), in the order queued.
    queued: Vec<(String, String)>,
    /// Every `Sent` state, per tempMessageId: (message id, sequence).
    sent: HashMap<String, Vec<(Uuid, i64)>>,
    /// Ids of the user's messages acknowledged, and of those seen delivered.
    acked: HashSet<Uuid>,
    delivered: HashSet<Uuid>,
    /// Per client run: the messages shown, in order.
    shown: Vec<Vec<Shown>>,
    /// Peer messages shown (distinct ids).
    received: HashSet<Uuid>,
    /// Connection losses seen.
    offline: usize,
}

struct Harness {
    users: Vec<Mutex<UserLog>>,
    progress: watch::Sender<Progress>,
    options: Options,
    /// The directory of the outbox files.
    outboxes: PathBuf,
}

impl Harness {
    fn log(&self, user: usize) -> MutexGuard<'_, UserLog> {
        self.users[user]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn problem(&self, what: String) {
        self.progress.send_modify(|p| p.problems.push(what));
    }

    /// Waits (at most [`WAIT`]) until `done` holds; fails at once on a problem.
    async fn wait(&self, what: &str, done: impl Fn(&Progress) -> bool) {
        if !self.wait_up_to(WAIT, what, done).await {
            panic!("timed out waiting for {what}: {}", self.report().await);
        }
    }

    /// Waits at most `limit` until `done` holds; whether it did. Fails at once on a problem.
    async fn wait_up_to(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&Progress) -> bool,
    ) -> bool {
        let mut rx = self.progress.subscribe();
        let reached =
            tokio::time::timeout(limit, rx.wait_for(|p| done(p) || !p.problems.is_empty()))
                .await
                .map(|r| r.map(|p| p.problems.clone()));
        match reached {
            Ok(Ok(problems)) => {
                assert!(problems.is_empty(), "{what}: {problems:#?}");
                true
            }
            Ok(Err(_)) => unreachable!("the harness keeps the sender"),
            Err(_) => false,
        }
    }

    /// The progress so far and [`Harness::unsent_report`], for a failure's message.
    async fn report(&self) -> String {
        let progress = self.progress.borrow().clone();
        format!("{progress:#?}\n{}", self.unsent_report().await)
    }

    /// Per user: the messages queued that never reached `Sent`, and what its outbox file holds.
    async fn unsent_report(&self) -> String {
        let mut report = String::new();
        for user in 0..self.users.len() {
            let missing: Vec<String> = {
                let log = self.log(user);
                log.queued
                    .iter()
                    .filter(|(t, _)| !log.sent.contains_key(t))
                    .map(|(t, text)| format!("{t} ({text})"))
                    .collect()
            };
            let held = match Outbox::open(&self.outbox(user)).await {
                Ok(o) => {
                    let entries = o.entries().await;
                    o.close().await;
                    format!(
                        "{:?}",
                        entries.map(|e| e.into_iter().map(|e| e.temp_id).collect::<Vec<_>>())
                    )
                }
                Err(e) => e.to_string(),
            };
            report += &format!("user {user}: not Sent {missing:?}; outbox file holds {held}\n");
        }
        report
    }

    fn outbox(&self, user: usize) -> PathBuf {
        self.outboxes.join(format!("{user}.outbox"))
    }

    /// Starts a client (run number `run`) for `user` on its outbox file, recording its events.
    async fn start(self: &Arc<Self>, user: usize, session: Session, outbox: &Path) -> Client {
        let me = session.user().id;
        let options = Options {
            outbox: Some(outbox.to_path_buf()),
            ..self.options.clone()
        };
        let run = {
            let mut log = self.log(user);
            log.shown.push(Vec::new());
            log.shown.len() - 1
        };
        let (client, events) = Client::start(session, options).await.expect("client");
        tokio::spawn(self.clone().record(user, me, run, events));
        client
    }

    /// Records one client's events (until its stream ends).
    async fn record(
        self: Arc<Self>,
        user: usize,
        me: Uuid,
        run: usize,
        mut events: mpsc::Receiver<Event>,
    ) {
        while let Some(event) = events.recv().await {
            let mut log = self.log(user);
            match event {
                Event::State {
                    temp_id,
                    state:
                        MessageState::Sent {
                            message_id,
                            sequence,
                        },
                    ..
                } => {
                    let first = !log.sent.contains_key(&temp_id);
                    log.sent
                        .entry(temp_id)
                        .or_default()
                        .push((message_id, sequence));
                    let delivered =
                        log.acked.insert(message_id) && log.delivered.contains(&message_id);
                    self.progress.send_modify(|p| {
                        p.sent[user] += usize::from(first);
                        p.delivered += usize::from(delivered);
                    });
                }
                Event::State {
                    temp_id,
                    state: MessageState::Failed { code, reason },
                    ..
                } => self.problem(format!("user {user}: {temp_id} failed: {code}: {reason}")),
                Event::Message(r) => {
                    let m = &r.message;
                    log.shown[run].push(Shown {
                        chat: m.chat_id,
                        id: m.id,
                        seq: m.sequence_number,
                        sender: m.sender,
                        temp: m.temp_message_id.clone(),
                        text: r.text.clone(),
                    });
                    if m.sender != me && log.received.insert(m.id) {
                        self.progress.send_modify(|p| p.received += 1);
                    }
                }
                Event::Delivered(d)
                    if log.delivered.insert(d.message_id) && log.acked.contains(&d.message_id) =>
                {
                    self.progress.send_modify(|p| p.delivered += 1);
                }
                Event::Connection(Connection::Online) => {
                    self.progress.send_modify(|p| p.connects[user] += 1);
                }
                Event::Connection(Connection::Offline { .. }) => log.offline += 1,
                Event::Connection(Connection::SessionExpired) => {
                    self.problem(format!("user {user}: session expired"));
                }
                Event::Error(e) => self.problem(format!("user {user}: event error {e:?}")),
                _ => {}
            }
        }
    }
}

/// One user of the run.
struct Member {
    user: usize,
    chat: Uuid,
    outbox: PathBuf,
}

/// Queues `count` messages through the user's client, at most [`WINDOW`] unacknowledged at a
/// time; on each order, "crashes" the client (shuts it down with whatever it has not sent) and
/// starts a new one on the same outbox file with the next spare session, answering how many
/// messages the outbox held. Returns the last client once every message is queued and the
/// orders are over.
async fn sender(
    h: Arc<Harness>,
    m: Member,
    session: Session,
    mut spares: Vec<Session>,
    count: usize,
    mut orders: mpsc::UnboundedReceiver<oneshot::Sender<usize>>,
) -> Client {
    let mut client = h.start(m.user, session, &m.outbox).await;
    let name = client.session().user().username.clone();
    let mut progress = h.progress.subscribe();
    let mut orders_open = true;
    let mut i = 0;
    while i < count || orders_open {
        tokio::select! {
            order = orders.recv(), if orders_open => {
                let Some(done) = order else {
                    orders_open = false;
                    continue;
                };
                let unsent = client.unsent().await.expect("outbox").len();
                client.shutdown().await;
                let session = spares.pop().expect("a spare session");
                client = h.start(m.user, session, &m.outbox).await;
                let _ = done.send(unsent);
            }
            () = room(&mut progress, m.user, i), if i < count => {
                let text = format!("message {i} from {name}");
                let temp = queue(&h, &client, m.user, m.chat, &text).await;
                h.log(m.user).queued.push((temp, text));
                h.progress.send_modify(|p| p.queued[m.user] += 1);
                i += 1;
            }
        }
    }
    client
}

/// Until the user's `i`-th message fits in the window of unacknowledged ones.
async fn room(progress: &mut watch::Receiver<Progress>, user: usize, i: usize) {
    progress
        .wait_for(|p| p.sent[user] + WINDOW > i)
        .await
        .expect("the harness keeps the sender");
}

/// `Client::send`; when it fails for a reason that passes (a client not yet connected has to
/// look the chat up, and the server is away, or busy: a 503 can come while the socket stays
/// up), tries again at the client's next connection or after [`RETRY`], whichever is first.
/// Before, it waited for a reconnection only, which would never come after a failure of the
/// second kind: a possible cause of the soak's one "timed out waiting for the client to
/// reconnect" (session 18), not reproduced since (every transient failure seen in session 20's
/// soak runs was "server unreachable", followed by a reconnection within 200 ms).
async fn queue(h: &Harness, client: &Client, user: usize, chat: Uuid, text: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let connects = h.progress.borrow().connects[user];
        match client.send(chat, text).await {
            Ok(temp) => return temp,
            Err(e) if e.is_transient() => {
                if Instant::now() >= deadline {
                    panic!(
                        "sending kept failing for {WAIT:?}, last: {e}: {}",
                        h.report().await
                    );
                }
                // Not reconnected within RETRY: the send is tried again all the same.
                h.wait_up_to(RETRY, "the client to reconnect", |p| {
                    p.connects[user] > connects
                })
                .await;
            }
            Err(e) => panic!("send refused: {e}"),
        }
    }
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
    let users = pairs * 2;
    let mut server = Server {
        dir: tempfile::tempdir().expect("tempdir"),
        port: free_port(),
        child: None,
        http: reqwest::Client::new(),
    };
    server.start().await;
    let base = server.base();
    let ksf = jibber_crypto::test_ksf();
    let outboxes = tempfile::tempdir().expect("tempdir");

    // Pairs of users, one chat each; both members send. Each user has a session for its
    // client, spare ones for its client's restarts (they may happen while the server is down),
    // and one for the REST checks.
    let spares_each = kills.div_ceil(users) + 1;
    let mut names = Vec::new();
    let mut sessions: Vec<Session> = Vec::new();
    let mut spares: Vec<Vec<Session>> = Vec::new();
    for i in 0..users {
        let name = format!("crash{i}_{}", &Uuid::new_v4().simple().to_string()[..6]);
        register(&base, &name, "pw", &ksf).await.expect("register");
        sessions.push(login(&base, &name, "pw", &ksf).await.expect("login"));
        let mut mine = Vec::new();
        for _ in 0..spares_each {
            mine.push(login(&base, &name, "pw", &ksf).await.expect("login"));
        }
        spares.push(mine);
        names.push(name);
    }
    let ids: Vec<Uuid> = sessions.iter().map(|s| s.user().id).collect();
    let mut chats = Vec::new();
    for p in 0..pairs {
        let chat = sessions[2 * p]
            .open_chat(ids[2 * p + 1])
            .await
            .expect("chat")
            .id;
        chats.push((chat, 2 * p, 2 * p + 1));
    }
    let chat_of = |user: usize| chats[user / 2].0;

    let h = Arc::new(Harness {
        users: (0..users).map(|_| Mutex::default()).collect(),
        progress: watch::Sender::new(Progress {
            queued: vec![0; users],
            sent: vec![0; users],
            connects: vec![0; users],
            ..Progress::default()
        }),
        outboxes: outboxes.path().to_path_buf(),
        options: Options {
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
            ..Options::default()
        },
    });
    let total = users * per_client;
    let mut tasks = Vec::new();
    let mut orders = Vec::new();
    let mut spares_left = Vec::new();
    for (user, session) in sessions.into_iter().enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        orders.push(tx);
        spares_left.push(spares[user].len());
        let member = Member {
            user,
            chat: chat_of(user),
            outbox: h.outbox(user),
        };
        tasks.push(tokio::spawn(sender(
            h.clone(),
            member,
            session,
            std::mem::take(&mut spares[user]),
            per_client,
            rx,
        )));
    }

    // Kill while the clients send: after each share of acknowledgements, at a random moment.
    // At every kill one client crashes too: on even kills while the server is down (its queued
    // messages certainly unacknowledged), on odd ones just before the kill (in flight).
    let mut rng = rand::thread_rng();
    let mut killed_at = Vec::new();
    let mut crashes = Vec::new();
    for k in 0..kills {
        let target = total * (k + 1) / (kills + 1);
        h.wait(&format!("{target} acknowledgements"), |p| {
            p.sent_total() >= target
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..10))).await;
        let down = k % 2 == 0;
        if !down {
            crashes.push((false, crash(&h, &orders, &mut spares_left).await));
        }
        server.kill().await;
        killed_at.push(h.progress.borrow().sent_total());
        if down {
            crashes.push((true, crash(&h, &orders, &mut spares_left).await));
        }
        server.start().await;
    }
    drop(orders);
    h.wait("every message acknowledged, shown and delivered", |p| {
        p.sent_total() == total && p.received == total && p.delivered == total
    })
    .await;
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.expect("sender"));
    }
    for c in clients {
        c.shutdown().await;
    }
    let offline: usize = (0..users).map(|u| h.log(u).offline).sum();
    eprintln!(
        "{kills} kills at {killed_at:?} of {total} acknowledgements; client crashes \
         (server down, unsent messages): {crashes:?}; {offline} connection losses"
    );
    // The kills hit live traffic, and the clients crashed with messages to send.
    assert!(killed_at.iter().any(|&n| n < total), "{killed_at:?}");
    assert!(kills == 0 || offline >= kills, "the clients saw the kills");
    assert!(
        kills == 0 || crashes.iter().any(|&(_, unsent)| unsent > 0),
        "no client crashed with unsent messages: {crashes:?}"
    );

    // Every outbox drained: the files hold nothing.
    for user in 0..users {
        let outbox = Outbox::open(&h.outbox(user)).await.expect("outbox");
        let left = outbox.entries().await.expect("entries");
        assert!(left.is_empty(), "outbox of user {user} holds {left:#?}");
        outbox.close().await;
    }

    // What the clients saw. Each queued message reached `Sent` (every `Sent` of one message
    // names the same stored message), one sender's messages in the order queued.
    let mut acked: HashMap<(Uuid, String), (String, Uuid, i64)> = HashMap::new();
    #[allow(clippy::needless_range_loop)] // `user` also names the user in the messages
    for user in 0..users {
        let log = h.log(user);
        assert_eq!(log.queued.len(), per_client);
        assert_eq!(
            log.sent.len(),
            per_client,
            "user {user}: a Sent of nothing queued"
        );
        let mut last_seq = 0;
        for (temp, text) in &log.queued {
            let states = &log.sent[temp];
            assert!(
                states.iter().all(|s| *s == states[0]),
                "user {user}: {temp} acknowledged as different messages: {states:?}"
            );
            let (id, seq) = states[0];
            assert!(seq > last_seq, "user {user}: {temp} out of order");
            last_seq = seq;
            acked.insert((ids[user], temp.clone()), (text.clone(), id, seq));
        }
    }
    // Each receiver showed every message of its peer once, in sequence order, decrypted; within
    // each client run, every message shown (its own from an earlier run included) came in
    // sequence order, once.
    let mut shown_again = 0;
    for user in 0..users {
        let log = h.log(user);
        let peer = user ^ 1;
        for (run, shown) in log.shown.iter().enumerate() {
            let seqs: Vec<i64> = shown.iter().map(|s| s.seq).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "user {user}, run {run}: shown out of order: {seqs:?}"
            );
        }
        let from_peer: Vec<&Shown> = log
            .shown
            .iter()
            .flatten()
            .filter(|s| s.sender == ids[peer])
            .collect();
        // A client crash between handing a message over and saving its chat's position shows
        // that one message again after the restart (at least once across a crash): the first
        // of a run may repeat the last of the one before, and nothing else may repeat.
        let mut seqs: Vec<i64> = Vec::new();
        let mut again = 0;
        for s in &from_peer {
            if seqs.last() == Some(&s.seq) {
                again += 1;
            } else {
                seqs.push(s.seq);
            }
        }
        assert!(again < log.shown.len(), "user {user}: {again} shown again");
        shown_again += again;
        let want: Vec<i64> = h
            .log(peer)
            .queued
            .iter()
            .map(|(t, _)| acked[&(ids[peer], t.clone())].2)
            .collect();
        assert_eq!(
            seqs, want,
            "user {user}: the peer's messages shown once each, in order"
        );
        for s in from_peer {
            let (text, id, seq) = &acked[&(s.sender, s.temp.clone())];
            assert_eq!((&s.chat, &s.id, &s.seq), (&chat_of(user), id, seq));
            assert_eq!(s.text.as_ref(), Ok(text), "user {user}: {}", s.temp);
        }
    }

    eprintln!("{shown_again} messages shown again after a client crash");

    // Each member reads the first half of the chat; then one more kill before the checks.
    let mut sessions = Vec::new();
    for name in &names {
        sessions.push(login(&base, name, "pw", &ksf).await.expect("login"));
    }
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
        for (key, m) in &by_key {
            let (text, id, seq) = acked
                .get(key)
                .unwrap_or_else(|| panic!("stored but never queued: {key:?}"));
            assert_eq!((&m.id, &m.sequence_number), (id, seq), "{key:?}");
            let (receiver, sender) = if m.sender == ids[a] { (b, a) } else { (a, b) };
            let peer = sessions[receiver]
                .user_profile(ids[sender])
                .await
                .expect("profile");
            assert_eq!(
                &sessions[receiver].decrypt(m, &peer).expect("decrypt"),
                text
            );
            // Every message was delivered to the receiver's client; the first half is read.
            let want = if *seq <= half {
                DeliveryStatus::Read
            } else {
                DeliveryStatus::Delivered
            };
            assert_eq!(m.delivery_status, want, "{key:?}");
        }
        assert_eq!(
            by_key.len(),
            2 * per_client,
            "every queued message is stored"
        );
        // Unread counts: what the other member sent after the read mark.
        for (me, other) in [(a, b), (b, a)] {
            let expected = stored
                .iter()
                .filter(|m| m.sender == ids[other] && m.sequence_number > half)
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

/// Orders one client to crash: the one with the most unacknowledged messages that has a spare
/// session left. Returns how many messages its outbox held.
async fn crash(
    h: &Harness,
    orders: &[mpsc::UnboundedSender<oneshot::Sender<usize>>],
    spares_left: &mut [usize],
) -> usize {
    let victim = {
        let p = h.progress.borrow();
        (0..orders.len())
            .filter(|&u| spares_left[u] > 0)
            .max_by_key(|&u| p.queued[u].saturating_sub(p.sent[u]))
            .expect("a spare session left")
    };
    spares_left[victim] -= 1;
    let (done, unsent) = oneshot::channel();
    orders[victim].send(done).expect("sender alive");
    tokio::time::timeout(WAIT, unsent)
        .await
        .expect("the client restarted in time")
        .expect("the sender answered")
}
