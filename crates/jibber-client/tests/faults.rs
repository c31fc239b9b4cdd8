//! Network faults (issue #8, part 2): two SDK clients (`realtime::Client`, with their outboxes)
//! talk through a fault-injecting proxy (`common::proxy`) that cuts their connections mid-send,
//! mid-ack, or during the polling→WebSocket upgrade, several times while they keep sending. At
//! the end the server, both clients and the proxy must agree: every message stored once, per-chat
//! sequences gapless, each receiver saw each message once and in order, both outboxes drained
//! with every message `Sent` (with the id and sequence the server stored), delivery and read
//! marks converged; and the faults really happened (cuts and retried sends counted).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::log::{Log, sent_states};
use common::proxy::{BIG_SEND, Fault, Proxy};
use common::{session, user};
use jibber_client::realtime::{Client, Connection, Event, Options};
use jibber_client::sio::Transport;
use jibber_proto::api::{DeliveryStatus, Message};
use jibber_server::testing::TestServer;
use uuid::Uuid;

/// Generous: the CI machine is a loaded 2-core box running other tests.
const WAIT: Duration = Duration::from_secs(30);
/// Faults per run.
const CUTS: usize = 3;
/// Messages each client writes per round (one round per fault).
const PER_ROUND: usize = 6;

/// One side of the conversation.
struct Peer {
    id: Uuid,
    client: Client,
    log: Log,
    /// The labels of the messages this client wrote, in order, with their tempMessageIds.
    wrote: Vec<(String, String)>,
}

impl Peer {
    async fn start(session: jibber_client::Session, transport: Transport) -> Peer {
        let opts = Options {
            transport,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
            ..Options::default()
        };
        let id = session.user().id;
        let (client, rx) = Client::start(session, opts).await.expect("client starts");
        let log = Log::collect(rx, WAIT);
        log.wait("online", |es| es.iter().any(is_online)).await;
        Peer {
            id,
            client,
            log,
            wrote: Vec::new(),
        }
    }

    /// Writes a message labelled `label` (padded over the proxy's [`BIG_SEND`]).
    async fn write(&mut self, chat: Uuid, label: String) {
        let text = format!("{label} {}", "x".repeat(BIG_SEND));
        let temp = self.client.send(chat, &text).await.expect("outbox");
        self.wrote.push((temp, label));
    }

    /// tempMessageId → (message id, sequence) of every `Sent` state.
    fn sent(events: &[Event]) -> HashMap<String, (Uuid, i64)> {
        sent_states(events).collect()
    }

    /// The messages shown to the application: (sender, sequence, label).
    fn shown(events: &[Event]) -> Vec<(Uuid, i64, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message(r) => Some((
                    r.message.sender,
                    r.message.sequence_number,
                    label(r.text.as_ref().expect("decrypts")),
                )),
                _ => None,
            })
            .collect()
    }
}

fn is_online(e: &Event) -> bool {
    matches!(e, Event::Connection(Connection::Online))
}

/// The label of a padded text (see [`Peer::write`]).
fn label(text: &str) -> String {
    text.split(' ').next().unwrap_or_default().to_owned()
}

/// The whole history of a chat, through the REST API (pages of `/sync`).
async fn history(session: &jibber_client::Session, chat: Uuid) -> Vec<Message> {
    let mut all: Vec<Message> = Vec::new();
    loop {
        let since = all.last().map_or(0, |m| m.sequence_number);
        let page = session.messages_since(chat, since).await.expect("history");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Runs the conversation through `CUTS` firings of `fault`, then checks that everything
/// converged. Returns the proxy's counters for the fault-specific checks.
async fn converge_through(fault: Fault, transport: Transport) -> Arc<Proxy> {
    let s = TestServer::start(&[("socket_events_per_second", "1000")]).await;
    let proxy = Arc::new(Proxy::start(&s.base).await);
    let alice_session = user(&proxy.base, "alice").await;
    let bob_session = user(&proxy.base, "bob").await;
    let chat = alice_session
        .open_chat(bob_session.user().id)
        .await
        .expect("chat")
        .id;
    let mut alice = Peer::start(alice_session, transport).await;
    let mut bob = Peer::start(bob_session, transport).await;

    // Both keep writing while the proxy cuts: each round arms the fault, writes a burst from
    // both sides, and waits for the fault to fire before the next round.
    for round in 0..CUTS {
        proxy.arm(fault);
        for i in 0..PER_ROUND {
            alice.write(chat, format!("a{round}.{i}")).await;
            bob.write(chat, format!("b{round}.{i}")).await;
        }
        proxy.wait_fired(round + 1, WAIT).await;
    }

    // Every message Sent, every outbox drained.
    for p in [&alice, &bob] {
        let temps: HashSet<String> = p.wrote.iter().map(|(t, _)| t.clone()).collect();
        p.log
            .wait("every message sent", |es| {
                Peer::sent(es).keys().cloned().collect::<HashSet<_>>() == temps
            })
            .await;
        assert!(
            p.client.unsent().await.expect("outbox").is_empty(),
            "the outbox drained"
        );
        let states = sent_states(&p.log.snapshot()).count();
        assert_eq!(states, temps.len(), "each message turned Sent once");
    }
    // Each receiver saw the other's messages, once each, in order, and nothing of its own.
    for (me, other) in [(&alice, &bob), (&bob, &alice)] {
        let expected: Vec<&str> = other.wrote.iter().map(|(_, t)| t.as_str()).collect();
        me.log
            .wait("every message received", |es| {
                Peer::shown(es).len() >= expected.len()
            })
            .await;
        let shown = Peer::shown(&me.log.snapshot());
        let texts: Vec<&str> = shown.iter().map(|(_, _, t)| t.as_str()).collect();
        assert_eq!(
            texts, expected,
            "each message once, in order, only the peer's"
        );
        assert!(shown.iter().all(|(sender, _, _)| *sender == other.id));
        assert!(
            shown.windows(2).all(|w| w[0].1 < w[1].1),
            "in sequence order"
        );
    }

    // The server: each message stored once, gapless from 1, with the id and sequence each
    // client was told.
    let check = session(&s.base, "alice").await;
    let stored = history(&check, chat).await;
    let total = alice.wrote.len() + bob.wrote.len();
    let sequences: Vec<i64> = stored.iter().map(|m| m.sequence_number).collect();
    assert_eq!(sequences, (1..=total as i64).collect::<Vec<_>>(), "gapless");
    let by_temp: HashMap<&str, &Message> = stored
        .iter()
        .map(|m| (m.temp_message_id.as_str(), m))
        .collect();
    assert_eq!(by_temp.len(), total, "each tempMessageId stored once");
    for p in [&alice, &bob] {
        let sent = Peer::sent(&p.log.snapshot());
        for (temp, _) in &p.wrote {
            let m = by_temp[temp.as_str()];
            assert_eq!(m.sender, p.id);
            assert_eq!(sent[temp], (m.id, m.sequence_number), "the ack matches");
        }
    }

    // Delivery marks: each sender learns that every message of theirs was delivered.
    for me in [&alice, &bob] {
        let mine: HashSet<Uuid> = stored
            .iter()
            .filter(|m| m.sender == me.id)
            .map(|m| m.id)
            .collect();
        me.log
            .wait("every message delivered", |es| {
                let delivered: HashSet<Uuid> = es
                    .iter()
                    .filter_map(|e| match e {
                        Event::Delivered(d) => Some(d.message_id),
                        _ => None,
                    })
                    .collect();
                mine.is_subset(&delivered)
            })
            .await;
    }
    assert!(
        stored
            .iter()
            .all(|m| m.delivery_status != DeliveryStatus::Sent),
        "the server has every message delivered"
    );

    // Read marks, through a last fault: both read everything; each sees the other's mark.
    let last = total as i64;
    for (reader, writer) in [(&bob, &alice), (&alice, &bob)] {
        let deadline = tokio::time::Instant::now() + WAIT;
        // The socket may be between connections: ask again once it is back.
        loop {
            let onlines = |es: &[Event]| es.iter().filter(|e| is_online(e)).count();
            let before = onlines(&reader.log.snapshot());
            match reader.client.mark_read(chat, last).await {
                Ok(()) => break,
                Err(e) => assert!(
                    tokio::time::Instant::now() < deadline,
                    "mark_read keeps failing: {e}"
                ),
            }
            reader
                .log
                .wait("back online", |es| onlines(es) > before)
                .await;
        }
        writer
            .log
            .wait("the read mark", |es| {
                es.iter().any(|e| {
                    matches!(e, Event::Read(r)
                    if r.reader == reader.id && r.up_to_sequence == last)
                })
            })
            .await;
    }
    let stored = history(&check, chat).await;
    assert!(
        stored
            .iter()
            .all(|m| m.delivery_status == DeliveryStatus::Read),
        "every message read"
    );
    for c in check.chats_all().await.expect("chats") {
        assert_eq!((c.unread_count, c.last_sequence), (0, last));
    }

    assert_eq!(proxy.fired(), CUTS, "every fault fired once");
    eprintln!("{fault:?} over {transport:?}: {:?}", proxy.counters());
    let cut = proxy.counters().connections_cut.load(Ordering::SeqCst);
    assert!(cut >= CUTS, "connections cut: {cut}");
    alice.client.shutdown().await;
    bob.client.shutdown().await;
    s.stop().await;
    proxy
}

/// Sends that reached the proxy: more than the messages written means sends were retried.
fn assert_sends_retried(proxy: &Proxy) {
    let sends = proxy.counters().sends.load(Ordering::SeqCst);
    let written = 2 * CUTS * PER_ROUND;
    assert!(
        sends > written,
        "{sends} sends for {written} messages: none was retried ({:?})",
        proxy.counters()
    );
}

/// At least `CUTS` messages never had their first acknowledgement reach the client (the proxy
/// dropped one per fault; others in flight on the cut connections died with them), yet every
/// message ended `Sent` with the stored id and sequence (checked in [`converge_through`]): the
/// client learnt them from its catch-up after reconnecting, or by sending again (the server
/// then answers `duplicate`).
fn assert_acks_lost(proxy: &Proxy) {
    let c = proxy.counters();
    let (acks, duplicates) = (
        c.acks.load(Ordering::SeqCst),
        c.duplicate_acks.load(Ordering::SeqCst),
    );
    let written = 2 * CUTS * PER_ROUND;
    assert!(
        acks - duplicates <= written - CUTS,
        "first acknowledgements delivered: {} of {written} ({c:?})",
        acks - duplicates
    );
}

#[tokio::test]
async fn cut_mid_send_over_websocket_loses_and_doubles_nothing() {
    let proxy = converge_through(Fault::MidSend, Transport::WebSocket).await;
    assert_sends_retried(&proxy);
}

#[tokio::test]
async fn cut_mid_send_over_long_polling_loses_and_doubles_nothing() {
    let proxy = converge_through(Fault::MidSend, Transport::Polling).await;
    assert_sends_retried(&proxy);
}

#[tokio::test]
async fn cut_mid_ack_over_websocket_loses_and_doubles_nothing() {
    let proxy = converge_through(Fault::MidAck, Transport::WebSocket).await;
    assert_acks_lost(&proxy);
}

#[tokio::test]
async fn cut_mid_ack_over_long_polling_loses_and_doubles_nothing() {
    let proxy = converge_through(Fault::MidAck, Transport::Polling).await;
    assert_acks_lost(&proxy);
}

/// Bob's client was restarted (it trusts alice's keys from its file, but has not read her profile
/// in this run) and the server goes away just as alice's message arrives: every read of her
/// profile fails. The message must not be shown as unreadable (it is fine; only the server was
/// gone): the client shows nothing until the profile can be read, then the message, opened,
/// once.
#[tokio::test]
async fn a_message_is_shown_once_its_sender_can_be_read_not_as_unreadable_before() {
    let s = TestServer::start(&[]).await;
    let proxy = Proxy::start(&s.base).await;
    let alice = user(&s.base, "alice").await;
    let bob_id = user(&proxy.base, "bob").await.user().id;
    let bob_public = alice.user_profile(bob_id).await.expect("profile");
    let chat = alice.open_chat(bob_id).await.expect("chat").id;
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || Options {
        outbox: Some(dir.path().join("bob.outbox")),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..Options::default()
    };
    // The first run learns the chat (and alice's keys) in its catch-up and keeps its cursor.
    let (first, rx) = Client::start(session(&proxy.base, "bob").await, opts())
        .await
        .expect("client starts");
    let log = Log::collect(rx, WAIT);
    log.wait("online", |es| es.iter().any(is_online)).await;
    first.shutdown().await;

    // Every read of a profile fails from now on, until disarmed.
    proxy.arm_times(Fault::ProfileRead, usize::MAX);
    let (client, rx) = Client::start(session(&proxy.base, "bob").await, opts())
        .await
        .expect("client restarts");
    let log = Log::collect(rx, WAIT);
    log.wait("online", |es| es.iter().any(is_online)).await;
    alice
        .send_text(chat, &bob_public, "hello bob", "profile-gone-1")
        .await
        .expect("alice sends");
    // The live message, then at least one catch-up after the reconnect, each failed to read her.
    proxy.wait_fired(2, WAIT).await;
    let shown = |events: &[Event]| -> Vec<(i64, Result<String, String>)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Message(r) => Some((r.message.sequence_number, r.text.clone())),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        shown(&log.snapshot()),
        [],
        "nothing is shown while the sender's keys cannot be read"
    );
    proxy.disarm();
    log.wait("the message", |es| !shown(es).is_empty()).await;
    // It comes in a catch-up (the connection is re-made for it), which ends before the client
    // is online again; the catch-up marks it delivered first.
    log.wait("online after the message", |es| {
        es.iter()
            .skip_while(|e| !matches!(e, Event::Message(_)))
            .any(is_online)
    })
    .await;
    assert_eq!(
        shown(&log.snapshot()),
        [(1, Ok("hello bob".to_owned()))],
        "shown once, opened"
    );
    let stored = alice.messages_since(chat, 0).await.expect("history");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].delivery_status, DeliveryStatus::Delivered);
    client.shutdown().await;
    s.stop().await;
}

/// Runs tests/node/upgrade-faults.mjs (the official `socket.io-client`, polling then upgrade)
/// through the proxy with `fault` armed for its first `CUTS` upgrades; returns the script's
/// counts. The script itself checks that nothing was lost or doubled.
async fn official_client_through(fault: Fault) -> (Arc<Proxy>, serde_json::Value) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/node");
    assert!(
        dir.join("node_modules/socket.io-client").exists(),
        "the npm packages of tests/node are missing: run `npm ci` in {}",
        dir.display()
    );
    let s = TestServer::start(&[("socket_events_per_second", "1000")]).await;
    let proxy = Arc::new(Proxy::start(&s.base).await);
    proxy.arm_times(fault, CUTS);
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("node")
            .arg("upgrade-faults.mjs")
            .current_dir(&dir)
            .env("JIBBER_URL", &proxy.base)
            .env("JIBBER_FAULT_ROUNDS", CUTS.to_string())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the script finishes")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line: {stdout}"));
    let result: serde_json::Value = serde_json::from_str(result).expect("RESULT is JSON");
    assert_eq!(proxy.fired(), CUTS, "every armed fault fired ({result})");
    eprintln!("{fault:?}: {result}, {:?}", proxy.counters());
    s.stop().await;
    (proxy, result)
}

/// The upgrade connections that were cut failed as upgrades, the session went on over polling,
/// and later upgrades (the fault disarmed) succeeded.
fn assert_upgrades_cut(proxy: &Proxy, result: &serde_json::Value) {
    let count = |k: &str| {
        result[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {result}")) as usize
    };
    assert!(count("upgradeErrors") >= CUTS, "{result}");
    assert!(count("upgraded") >= 1, "{result}");
    let upgrades = proxy.counters().upgrades.load(Ordering::SeqCst);
    assert!(
        upgrades >= 2 * CUTS,
        "{upgrades} upgrade requests ({result})"
    );
}

#[tokio::test]
async fn cut_upgrade_before_the_probe_loses_and_doubles_nothing() {
    let (proxy, result) = official_client_through(Fault::UpgradeBeforeProbe).await;
    assert_upgrades_cut(&proxy, &result);
}

#[tokio::test]
async fn cut_upgrade_after_the_probe_loses_and_doubles_nothing() {
    let (proxy, result) = official_client_through(Fault::UpgradeAfterProbe).await;
    assert_upgrades_cut(&proxy, &result);
}
