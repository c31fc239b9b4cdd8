//! The resilient SDK client against the real server: two clients chat over each transport
//! (messages, delivered and read marks, typing, presence, in-band token refresh); the outbox
//! survives a crash without duplicates; an offline client catches up in order; clients ride
//! out a server restart; a handshake refused for an expired token refreshes; "reconnect now"
//! cuts the backoff; a refused message fails with its reason and `retry` sends it.

mod common;

use std::time::Duration;

use common::{is_online, is_sent, options, session, text_of, until, until_expired, user};
use jibber_client::Session;
use jibber_client::realtime::{Client, Connection, Event, MessageState, Options, Presence};
use jibber_client::sio::Transport;
use jibber_server::testing::TestServer;
use uuid::Uuid;

/// alice and bob signed up, and the chat alice opened with bob.
async fn alice_and_bob(s: &TestServer) -> (Session, Session, Uuid) {
    let alice = user(&s.base, "alice").await;
    let bob = user(&s.base, "bob").await;
    let chat = alice.open_chat(bob.user().id).await.expect("chat").id;
    (alice, bob, chat)
}

async fn two_clients_chat(transport: Transport) {
    // Short access tokens: the sockets must stay authorised by refreshing in-band.
    let s = TestServer::start(&[("access_token_ttl", "5s")]).await;
    let alice_session = user(&s.base, "alice").await;
    let bob_session = user(&s.base, "bob").await;
    let (alice_id, bob_id) = (alice_session.user().id, bob_session.user().id);
    let chat = alice_session.open_chat(bob_id).await.expect("chat").id;

    let (alice, mut a_rx) = Client::start(alice_session, options(transport))
        .await
        .expect("alice starts");
    let (mut a_seen, mut b_seen) = (Vec::new(), Vec::new());
    until(&mut a_rx, &mut a_seen, "alice online", is_online).await;
    let (bob, mut b_rx) = Client::start(bob_session, options(transport))
        .await
        .expect("bob starts");
    until(&mut b_rx, &mut b_seen, "bob online", is_online).await;
    // Presence: each sees the other online (bob from onlineUsers, alice from userOnline).
    until(&mut b_rx, &mut b_seen, "alice is online for bob", |e| {
        matches!(e, Event::Presence { user, presence: Presence::Online } if *user == alice_id)
            .then_some(())
    })
    .await;
    until(&mut a_rx, &mut a_seen, "bob is online for alice", |e| {
        matches!(e, Event::Presence { user, presence: Presence::Online } if *user == bob_id)
            .then_some(())
    })
    .await;

    // A message: sending → sent for alice, decrypted for bob, delivered back to alice.
    let temp = alice.send(chat, "hello bob").await.expect("send");
    let (id, seq) = until(&mut a_rx, &mut a_seen, "sent", |e| match e {
        Event::State {
            temp_id,
            state:
                MessageState::Sent {
                    message_id,
                    sequence,
                },
            ..
        } if *temp_id == temp => Some((*message_id, *sequence)),
        _ => None,
    })
    .await;
    assert_eq!(seq, 1);
    assert!(a_seen.iter().any(|e| matches!(e,
        Event::State { temp_id, state: MessageState::Sending, .. } if *temp_id == temp)));
    let got = until(&mut b_rx, &mut b_seen, "bob receives", text_of).await;
    assert_eq!(got, (id, 1, "hello bob".to_owned()));
    until(&mut a_rx, &mut a_seen, "delivered", |e| match e {
        Event::Delivered(d) if d.message_id == id => Some(()),
        _ => None,
    })
    .await;

    // Read marks and typing.
    bob.mark_read(chat, 1).await.expect("read");
    until(&mut a_rx, &mut a_seen, "read", |e| match e {
        Event::Read(r) if r.reader == bob_id && r.up_to_sequence == 1 => Some(()),
        _ => None,
    })
    .await;
    alice.typing(chat, true).await;
    until(&mut b_rx, &mut b_seen, "typing", |e| match e {
        Event::Typing(t) if t.user_id == alice_id && t.is_typing => Some(()),
        _ => None,
    })
    .await;

    // Outlive two access tokens (5 s each; refreshed in band at 3/4 of their life, which leaves
    // a loaded CI machine over a second), then talk again: the sockets never dropped.
    tokio::time::sleep(Duration::from_secs(11)).await;
    bob.send(chat, "hello alice").await.expect("reply");
    let got = until(&mut a_rx, &mut a_seen, "alice receives", text_of).await;
    assert_eq!((got.1, got.2.as_str()), (2, "hello alice"));
    for seen in [&a_seen, &b_seen] {
        let drops: Vec<&Event> = seen
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Connection(Connection::Offline { .. } | Connection::SessionExpired)
                )
            })
            .collect();
        assert!(drops.is_empty(), "the socket dropped: {drops:#?}");
    }

    // Alice leaves: bob sees her go offline.
    alice.shutdown().await;
    until(&mut b_rx, &mut b_seen, "alice offline", |e| {
        matches!(e, Event::Presence { user, presence: Presence::Offline { .. } } if *user == alice_id)
            .then_some(())
    })
    .await;
    bob.shutdown().await;
    s.stop().await;
}

#[tokio::test]
async fn two_clients_chat_over_websocket() {
    two_clients_chat(Transport::WebSocket).await;
}

#[tokio::test]
async fn two_clients_chat_over_long_polling() {
    two_clients_chat(Transport::Polling).await;
}

/// The process died after putting five messages in the outbox; the server had already stored
/// the first two (their acknowledgements were lost). After a restart all five are sent, the
/// server stores each once, and the outbox drains.
#[tokio::test]
async fn the_outbox_is_sent_after_a_crash_exactly_once() {
    let s = TestServer::start(&[]).await;
    let alice = user(&s.base, "alice").await;
    let bob = user(&s.base, "bob").await;
    let bob_public = alice.user_profile(bob.user().id).await.expect("profile");
    let chat = alice.open_chat(bob.user().id).await.expect("chat").id;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alice.outbox");
    {
        let outbox = jibber_client::outbox::Outbox::open(&path)
            .await
            .expect("outbox");
        for i in 0..5 {
            let temp = format!("crash-{i}");
            let body = alice
                .seal_text(chat, &bob_public, &format!("m{i}"), &temp)
                .expect("seal");
            outbox.push(&temp, chat, &body, i).await.expect("push");
            if i < 2 {
                alice
                    .request::<serde_json::Value, _>(
                        reqwest::Method::POST,
                        &format!("/messages/{chat}"),
                        Some(&body),
                    )
                    .await
                    .expect("stored before the crash");
            }
        }
        outbox.close().await;
    }

    let opts = Options {
        outbox: Some(path.clone()),
        ..options(Transport::WebSocket)
    };
    let (client, mut rx) = Client::start(alice, opts).await.expect("restart");
    let mut seen = Vec::new();
    let mut sent = Vec::new();
    while sent.len() < 5 {
        let (temp, seq) = until(&mut rx, &mut seen, "sent", |e| match e {
            Event::State {
                temp_id,
                state: MessageState::Sent { sequence, .. },
                ..
            } => Some((temp_id.clone(), *sequence)),
            _ => None,
        })
        .await;
        sent.push((temp, seq));
    }
    let expected: Vec<(String, i64)> = (0..5).map(|i| (format!("crash-{i}"), i + 1)).collect();
    assert_eq!(
        sent, expected,
        "in outbox order, the first two deduplicated"
    );
    assert!(client.unsent().await.expect("unsent").is_empty());

    let alice_public = bob.user_profile(client.me()).await.expect("profile");
    let stored = bob.messages_since(chat, 0).await.expect("history");
    let texts: Vec<String> = stored
        .iter()
        .map(|m| bob.decrypt(m, &alice_public).expect("decrypt"))
        .collect();
    assert_eq!(texts, ["m0", "m1", "m2", "m3", "m4"]);
    client.shutdown().await;
    s.stop().await;
}

/// Bob is offline while alice sends 100 messages; when he comes back his client shows all 100
/// in order, once each, and alice sees them delivered.
#[tokio::test]
async fn an_offline_client_catches_up_100_messages_in_order() {
    let s = TestServer::start(&[]).await;
    let (alice_session, bob_session, chat) = alice_and_bob(&s).await;
    let (alice, mut a_rx) = Client::start(alice_session, options(Transport::WebSocket))
        .await
        .expect("alice");
    let mut a_seen = Vec::new();
    until(&mut a_rx, &mut a_seen, "alice online", is_online).await;
    for i in 1..=100 {
        alice.send(chat, &format!("m{i}")).await.expect("send");
    }
    let mut sent = 0;
    while sent < 100 {
        until(&mut a_rx, &mut a_seen, "sent", is_sent).await;
        sent += 1;
    }

    let (bob, mut b_rx) = Client::start(bob_session, options(Transport::Polling))
        .await
        .expect("bob");
    let mut b_seen = Vec::new();
    let mut got = Vec::new();
    while got.len() < 100 {
        let (_, seq, text) = until(&mut b_rx, &mut b_seen, "caught-up message", text_of).await;
        got.push((seq, text));
    }
    let expected: Vec<(i64, String)> = (1..=100).map(|i| (i, format!("m{i}"))).collect();
    assert_eq!(got, expected);
    until(&mut b_rx, &mut b_seen, "bob online", is_online).await;
    assert!(
        !b_seen
            .iter()
            .skip_while(|e| is_online(e).is_none())
            .any(|e| text_of(e).is_some()),
        "no message is shown twice"
    );
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < 100 {
        let seq = until(&mut a_rx, &mut a_seen, "delivered", |e| match e {
            Event::Delivered(d) => Some(d.sequence_number),
            _ => None,
        })
        .await;
        delivered.insert(seq);
    }
    alice.shutdown().await;
    bob.shutdown().await;
    s.stop().await;
}

/// The server goes away and comes back on the same address: both clients reconnect by
/// themselves, and what alice wrote meanwhile reaches bob once.
#[tokio::test]
async fn clients_reconnect_after_a_server_restart_and_lose_nothing() {
    let s = TestServer::start(&[]).await;
    let (alice_session, bob_session, chat) = alice_and_bob(&s).await;
    let (alice, mut a_rx) = Client::start(alice_session, options(Transport::WebSocket))
        .await
        .expect("alice");
    let (bob, mut b_rx) = Client::start(bob_session, options(Transport::WebSocket))
        .await
        .expect("bob");
    let (mut a_seen, mut b_seen) = (Vec::new(), Vec::new());
    until(&mut a_rx, &mut a_seen, "alice online", is_online).await;
    until(&mut b_rx, &mut b_seen, "bob online", is_online).await;
    // Alice's client resolves the chat's peer while online (the cache serves it offline).
    alice.send(chat, "before").await.expect("send");
    until(&mut b_rx, &mut b_seen, "before", text_of).await;
    until(&mut a_rx, &mut a_seen, "before is acknowledged", is_sent).await;

    let parked = s.park().await;
    let offline =
        |e: &Event| matches!(e, Event::Connection(Connection::Offline { .. })).then_some(());
    until(&mut a_rx, &mut a_seen, "alice offline", offline).await;
    until(&mut b_rx, &mut b_seen, "bob offline", offline).await;
    for i in 0..3 {
        alice
            .send(chat, &format!("while down {i}"))
            .await
            .expect("send offline");
    }
    assert_eq!(alice.unsent().await.expect("unsent").len(), 3);

    let s = parked.resume(&[]).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        let (_, seq, text) = until(&mut b_rx, &mut b_seen, "after restart", text_of).await;
        got.push((seq, text));
    }
    assert_eq!(
        got,
        [
            (2, "while down 0".to_owned()),
            (3, "while down 1".to_owned()),
            (4, "while down 2".to_owned())
        ]
    );
    let mut drained = false;
    for _ in 0..3 {
        until(&mut a_rx, &mut a_seen, "sent", is_sent).await;
        drained = alice.unsent().await.expect("unsent").is_empty();
    }
    assert!(drained, "the outbox drained");
    alice.shutdown().await;
    bob.shutdown().await;
    s.stop().await;
}

#[test]
fn backoff_has_full_jitter_between_the_bounds() {
    use jibber_client::realtime::backoff_delay;
    let (min, max) = (Duration::from_secs(1), Duration::from_secs(30));
    for attempt in 0..40 {
        let cap = (min * 2u32.saturating_pow(attempt.min(16))).min(max);
        let delays: Vec<Duration> = (0..200).map(|_| backoff_delay(min, max, attempt)).collect();
        assert!(
            delays.iter().all(|d| *d >= min && *d <= cap),
            "attempt {attempt}"
        );
        if attempt >= 2 {
            // Full jitter spreads the delays over the whole range, not around one value.
            let lo = delays.iter().min().expect("min");
            let hi = delays.iter().max().expect("max");
            assert!(
                *hi - *lo > (cap - min) / 2,
                "attempt {attempt}: {lo:?}..{hi:?}"
            );
        }
    }
}

/// Bob rotates his keys: his old messages still open (for him and for alice), alice's client
/// warns that his keys changed and reads his new messages.
#[tokio::test]
async fn a_key_rotation_keeps_old_messages_readable_and_warns_the_peer() {
    let s = TestServer::start(&[]).await;
    let alice_session = user(&s.base, "alice").await;
    let mut bob = user(&s.base, "bob").await;
    let bob_id = bob.user().id;
    let chat = alice_session.open_chat(bob_id).await.expect("chat").id;
    let (alice, mut a_rx) = Client::start(alice_session, options(Transport::WebSocket))
        .await
        .expect("alice");
    let mut seen = Vec::new();
    until(&mut a_rx, &mut seen, "alice online", is_online).await;

    let alice_public = bob.user_profile(alice.me()).await.expect("profile");
    bob.send_text(chat, &alice_public, "before rotation", "r-1")
        .await
        .expect("send");
    until(&mut a_rx, &mut seen, "first message", text_of).await;

    let old_key = bob.user().public_id_key.clone();
    bob.rotate_keys("pw-bob", &jibber_crypto::test_ksf())
        .await
        .expect("rotate");
    assert_ne!(bob.user().public_id_key, old_key, "a new key is current");
    // Bob's own history still opens on any device: log in afresh and read it.
    let bob_again = session(&s.base, "bob").await;
    let first = bob_again.messages_since(chat, 0).await.expect("history");
    assert_eq!(
        bob_again
            .decrypt(&first[0], &alice_public)
            .expect("old message"),
        "before rotation"
    );

    bob.send_text(chat, &alice_public, "after rotation", "r-2")
        .await
        .expect("send with new keys");
    let text = warned_then_second(&mut a_rx, &mut seen, bob_id).await;
    assert_eq!(text, "after rotation");
    // The old message still decrypts for alice too, though bob's directory keys changed.
    let history = alice.history(chat, None, 10).await.expect("history");
    let texts: Vec<String> = history
        .into_iter()
        .map(|r| r.text.expect("decrypts"))
        .collect();
    assert_eq!(texts, ["before rotation", "after rotation"]);
    alice.shutdown().await;
    s.stop().await;
}

/// Dropping every handle of a socket closes its connection (before, the background tasks kept
/// it open until the server's ping timeout: a leak for every reconnect and every load test).
#[tokio::test]
async fn dropping_every_handle_of_a_socket_closes_the_connection() {
    use jibber_client::sio::{Inbound, Socket};
    let s = TestServer::start(&[]).await;
    let alice = user(&s.base, "alice").await;
    for transport in [Transport::WebSocket, Transport::Polling] {
        let token = alice.access_token().await.expect("token");
        let (socket, mut inbound) = Socket::connect(
            &s.base,
            transport,
            &serde_json::json!({ "token": token }),
            Duration::from_secs(10),
        )
        .await
        .expect("connect");
        let twin = socket.clone();
        drop(socket);
        assert!(twin.is_open(), "a clone keeps it open");
        drop(twin);
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match inbound.recv().await {
                    None | Some(Inbound::Closed { .. }) => return,
                    Some(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "{transport:?}: still open 10 s after the last handle went"
        );
    }
    s.stop().await;
}

/// With refresh ahead off, the client connects with the token it has; the server refuses the
/// handshake ("Token expired"): the client refreshes and connects at once, without a backoff.
#[tokio::test]
async fn a_handshake_refused_for_an_expired_token_refreshes_and_connects() {
    let s = TestServer::start(&[("access_token_ttl", "1s")]).await;
    let alice = user(&s.base, "alice").await;
    alice.set_refresh_ahead(false);
    let stale = alice.access_token().await.expect("the current token");
    until_expired(&s, &stale).await;
    let before = alice.refresh_token();

    let (client, mut rx) = Client::start(alice, options(Transport::WebSocket))
        .await
        .expect("start");
    let mut seen = Vec::new();
    until(&mut rx, &mut seen, "online", is_online).await;
    assert!(
        matches!(
            seen[..],
            [
                Event::Connection(Connection::Connecting { attempt: 0 }),
                Event::Connection(Connection::Online)
            ]
        ),
        "connected on the first attempt, never offline: {seen:#?}"
    );
    assert_ne!(
        client.session().refresh_token(),
        before,
        "the refused handshake made it refresh"
    );
    client.shutdown().await;
    s.stop().await;
}

/// Offline with a long backoff ahead, `reconnect_now` connects at once (the terminal client's
/// "Ctrl-R: retry now").
#[tokio::test]
async fn reconnect_now_cuts_the_backoff_short() {
    let s = TestServer::start(&[]).await;
    let alice = user(&s.base, "alice").await;
    let hour = Duration::from_secs(3600);
    let slow = Options {
        backoff_min: hour,
        backoff_max: hour,
        ..options(Transport::WebSocket)
    };
    let (client, mut rx) = Client::start(alice, slow).await.expect("start");
    let mut seen = Vec::new();
    until(&mut rx, &mut seen, "online", is_online).await;

    let parked = s.park().await;
    let retry_in = until(&mut rx, &mut seen, "offline", |e| match e {
        Event::Connection(Connection::Offline { retry_in, .. }) => Some(*retry_in),
        _ => None,
    })
    .await;
    assert_eq!(retry_in, hour, "the next attempt is an hour away");
    let s = parked.resume(&[]).await;
    client.reconnect_now();
    until(
        &mut rx,
        &mut seen,
        "online again, long before the hour",
        is_online,
    )
    .await;
    client.shutdown().await;
    s.stop().await;
}

/// A message the server refuses for good (too large) is `Failed` with the code and reason,
/// stays in the outbox without holding up the next ones, and goes out on `retry` once the
/// server accepts it (its limit raised).
#[tokio::test]
async fn a_refused_message_fails_with_its_reason_and_retry_sends_it() {
    use jibber_proto::ErrorCode;
    let s = TestServer::start(&[("max_message_bytes", "1024")]).await;
    let (alice_session, bob_session, chat) = alice_and_bob(&s).await;
    let (alice, mut a_rx) = Client::start(alice_session, options(Transport::WebSocket))
        .await
        .expect("alice");
    let (bob, mut b_rx) = Client::start(bob_session, options(Transport::WebSocket))
        .await
        .expect("bob");
    let (mut a_seen, mut b_seen) = (Vec::new(), Vec::new());
    until(&mut a_rx, &mut a_seen, "alice online", is_online).await;
    until(&mut b_rx, &mut b_seen, "bob online", is_online).await;

    let long = "a message longer than the server takes. ".repeat(30);
    let temp = alice.send(chat, &long).await.expect("queued");
    let (code, reason) = until(&mut a_rx, &mut a_seen, "failed", |e| match e {
        Event::State {
            temp_id,
            state: MessageState::Failed { code, reason },
            ..
        } if *temp_id == temp => Some((*code, reason.clone())),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::PayloadTooLarge);
    assert!(reason.contains("1024 bytes"), "{reason}");
    let unsent = alice.unsent().await.expect("unsent");
    assert_eq!(unsent.len(), 1);
    assert_eq!(unsent[0].temp_id, temp);
    assert_eq!(unsent[0].failed, Some((code, reason)));
    // The failed message does not hold up the next one.
    alice.send(chat, "short").await.expect("queued");
    let (_, seq, text) = until(&mut b_rx, &mut b_seen, "short", text_of).await;
    assert_eq!((seq, text.as_str()), (1, "short"));

    // The operator raises the limit; the clients reconnect to the restarted server.
    let parked = s.park().await;
    let offline =
        |e: &Event| matches!(e, Event::Connection(Connection::Offline { .. })).then_some(());
    until(&mut a_rx, &mut a_seen, "alice offline", offline).await;
    let s = parked.resume(&[]).await;
    until(&mut a_rx, &mut a_seen, "alice online again", is_online).await;
    assert!(alice.retry(&temp).await.expect("retry"), "it was failed");
    assert!(
        !alice.retry(&temp).await.expect("retry again"),
        "no longer failed"
    );
    let sequence = until(&mut a_rx, &mut a_seen, "sent after retry", |e| match e {
        Event::State {
            temp_id,
            state: MessageState::Sent { sequence, .. },
            ..
        } if *temp_id == temp => Some(*sequence),
        _ => None,
    })
    .await;
    assert_eq!(sequence, 2);
    let back_in_line = a_seen.iter().rposition(|e| {
        matches!(e, Event::State { temp_id, state: MessageState::Sending, .. } if *temp_id == temp)
    });
    let failed_at = a_seen.iter().position(|e| {
        matches!(e, Event::State { temp_id, state: MessageState::Failed { .. }, .. } if *temp_id == temp)
    });
    assert!(
        back_in_line > failed_at,
        "the retried message showed as sending again: {a_seen:#?}"
    );
    let (_, seq, text) = until(&mut b_rx, &mut b_seen, "the retried message", text_of).await;
    assert_eq!((seq, text), (2, long));
    assert!(alice.unsent().await.expect("unsent").is_empty());
    alice.shutdown().await;
    bob.shutdown().await;
    s.stop().await;
}

/// A refresh token the server refuses because it expired (`TOKEN_EXPIRED` from
/// `/auth/refresh`) ends the client with `SessionExpired`: the access token lives a second, the
/// refresh token a millisecond, so the first refresh is refused. (The client once took that
/// code for a passing failure and retried forever.)
#[tokio::test]
async fn an_expired_refresh_token_ends_the_session() {
    let s = TestServer::start(&[("access_token_ttl", "1s"), ("refresh_token_ttl", "1ms")]).await;
    let alice = user(&s.base, "alice").await;
    let refused = jibber_client::login(&s.base, "alice", "pw-alice", &jibber_crypto::test_ksf())
        .await
        .expect("login")
        .refresh()
        .await
        .expect_err("the refresh token expired");
    assert_eq!(refused.code(), Some(jibber_proto::ErrorCode::TokenExpired));

    let (client, mut rx) = Client::start(alice, options(Transport::WebSocket))
        .await
        .expect("start");
    let mut seen = Vec::new();
    until(&mut rx, &mut seen, "session expired", |e| {
        matches!(e, Event::Connection(Connection::SessionExpired)).then_some(())
    })
    .await;
    assert!(!client.is_online());
    client.shutdown().await;
    s.stop().await;
}

/// The keys alice's client trusts for bob are kept in its outbox file: bob rotates while her
/// client is stopped, and the restarted client still warns (a client that only remembered them
/// in memory would take the new keys for first-seen ones); his message from before the rotation
/// still verifies after the restart.
#[tokio::test]
async fn a_key_change_between_two_runs_is_still_announced() {
    let s = TestServer::start(&[]).await;
    let alice_session = user(&s.base, "alice").await;
    let mut bob = user(&s.base, "bob").await;
    let bob_id = bob.user().id;
    let chat = alice_session.open_chat(bob_id).await.expect("chat").id;
    let dir = tempfile::tempdir().expect("tempdir");
    let on_disk = Options {
        outbox: Some(dir.path().join("alice.outbox")),
        ..options(Transport::WebSocket)
    };

    let (alice, mut a_rx) = Client::start(alice_session, on_disk.clone())
        .await
        .expect("alice");
    let mut seen = Vec::new();
    until(&mut a_rx, &mut seen, "alice online", is_online).await;
    let alice_id = alice.me();
    let alice_public = bob.user_profile(alice_id).await.expect("profile");
    bob.send_text(chat, &alice_public, "before rotation", "p-1")
        .await
        .expect("send");
    until(&mut a_rx, &mut seen, "first message", text_of).await;
    alice.shutdown().await;

    bob.rotate_keys("pw-bob", &jibber_crypto::test_ksf())
        .await
        .expect("rotate");
    let (alice, mut a_rx) = Client::start(session(&s.base, "alice").await, on_disk)
        .await
        .expect("alice again");
    let mut seen = Vec::new();
    until(&mut a_rx, &mut seen, "alice online again", is_online).await;
    bob.send_text(chat, &alice_public, "after rotation", "p-2")
        .await
        .expect("send with the new keys");
    let text = warned_then_second(&mut a_rx, &mut seen, bob_id).await;
    assert_eq!(text, "after rotation");
    let texts: Vec<String> = alice
        .history(chat, None, 10)
        .await
        .expect("history")
        .into_iter()
        .map(|r| r.text.expect("decrypts"))
        .collect();
    assert_eq!(texts, ["before rotation", "after rotation"]);
    // Told once: the chat list, read again, brings the same (now trusted) keys.
    alice.chats().await.expect("chats");
    while let Ok(e) = a_rx.try_recv() {
        assert!(
            !matches!(e, Event::KeyChanged { .. }),
            "the new keys are trusted now"
        );
    }
    alice.shutdown().await;
    s.stop().await;
}

/// Waits for `peer`'s key-change warning and then the chat's second message, whose text it
/// returns. A restarted client may notice the new keys while it catches up, before it is online,
/// so both may be in `seen` already. The warning must come once.
async fn warned_then_second(
    rx: &mut tokio::sync::mpsc::Receiver<Event>,
    seen: &mut Vec<Event>,
    peer: Uuid,
) -> String {
    let key_changed = |e: &Event| matches!(e, Event::KeyChanged { user } if *user == peer);
    if !seen.iter().any(key_changed) {
        until(rx, seen, "key change warning", |e| {
            key_changed(e).then_some(())
        })
        .await;
    }
    assert_eq!(
        seen.iter().filter(|e| key_changed(e)).count(),
        1,
        "warned once"
    );
    let second = |e: &Event| text_of(e).filter(|(_, seq, _)| *seq == 2);
    let (_, _, text) = match seen.iter().find_map(second) {
        Some(found) => found,
        None => until(rx, seen, "second message", second).await,
    };
    text
}
