//! `jibber chat` end to end, through the same loop as on a terminal (ratatui's TestBackend and a
//! channel of key presses): after `jibber seed`, tini logs in and sees her seeded conversations
//! decrypted, opens the chat with bob, sends, sees it delivered and read, sees bob typing and his
//! reply; a refused login is explained. Then one behaviour per test: signing up on the form,
//! unread counts, history scroll, the error states (unreachable server, no contacts yet,
//! session expired) each with its retry, a failed message retried, a peer's key change.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use jibber_cli::client::{SeedArgs, ksf, seed};
use jibber_cli::tui::{Setup, run};
use jibber_client::Session;
use jibber_client::realtime::{Client, Event, Options};
use jibber_server::testing::{Parked, TestServer};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(30);

fn screen_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let line: String = (0..area.width)
            .map(|x| buffer[(x, y)].symbol())
            .collect::<Vec<_>>()
            .concat();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

struct Tui {
    keys: mpsc::Sender<KeyEvent>,
    screen: watch::Receiver<String>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Tui {
    fn start(server: &str) -> Tui {
        Tui::start_with(server, Options::default())
    }

    /// With client options of the test's choosing (the backoff).
    fn start_with(server: &str, options: Options) -> Tui {
        let (keys, key_rx) = mpsc::channel(64);
        let (screen_tx, screen) = watch::channel(String::new());
        let setup = Setup {
            server: server.to_owned(),
            username: String::new(),
            options,
            data_dir: None,
            ksf,
        };
        let task = tokio::spawn(async move {
            let mut terminal = Terminal::new(TestBackend::new(110, 32))?;
            run(&mut terminal, setup, key_rx, move |b| {
                let _ = screen_tx.send(screen_text(b));
            })
            .await
        });
        Tui { keys, screen, task }
    }

    async fn press(&self, code: KeyCode) {
        self.keys
            .send(KeyEvent::new(code, KeyModifiers::NONE))
            .await
            .expect("tui running");
    }

    async fn ctrl(&self, c: char) {
        self.keys
            .send(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
            .await
            .expect("tui running");
    }

    async fn type_text(&self, text: &str) {
        for c in text.chars() {
            self.press(KeyCode::Char(c)).await;
        }
    }

    /// Waits until the screen shows every one of `parts`; returns that screen.
    async fn shows(&mut self, parts: &[&str]) -> String {
        self.shows_without(parts, &[]).await
    }

    /// Waits until the screen shows every one of `parts` and none of `absent`.
    async fn shows_without(&mut self, parts: &[&str], absent: &[&str]) -> String {
        let shown = match tokio::time::timeout(
            WAIT,
            self.screen.wait_for(|s| {
                parts.iter().all(|p| s.contains(p)) && !absent.iter().any(|a| s.contains(a))
            }),
        )
        .await
        {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        match shown {
            Some(s) => s,
            None => panic!(
                "the screen never showed {parts:?} without {absent:?}; last screen:\n{}",
                *self.screen.borrow()
            ),
        }
    }

    /// [`Tui::shows_without`] on the screen's text without any whitespace (for wrapped lines).
    async fn shows_flat(&mut self, parts: &[&str], absent: &[&str]) -> String {
        let flat = |s: &str| s.split_whitespace().collect::<String>();
        let shown = tokio::time::timeout(
            WAIT,
            self.screen.wait_for(|s| {
                let s = flat(s);
                parts.iter().all(|p| s.contains(p)) && !absent.iter().any(|a| s.contains(a))
            }),
        )
        .await
        .ok()
        .and_then(|r| r.ok().map(|s| s.clone()));
        match shown {
            Some(s) => s,
            None => panic!(
                "the screen never showed {parts:?} without {absent:?}; last screen:\n{}",
                *self.screen.borrow()
            ),
        }
    }

    async fn quit(self) {
        self.keys
            .send(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL))
            .await
            .expect("tui running");
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the tui quits")
            .expect("join")
            .expect("run");
    }

    async fn log_in(&mut self, username: &str, password: &str) {
        self.shows(&["Jibber · log in"]).await;
        self.type_text(username).await;
        self.press(KeyCode::Tab).await;
        self.type_text(password).await;
        self.press(KeyCode::Enter).await;
    }
}

#[tokio::test]
async fn tini_logs_in_reads_seeded_chats_and_talks_with_bob() {
    let s = TestServer::start(&[]).await;
    seed(SeedArgs {
        server: s.base.clone(),
        password: "password123".to_owned(),
    })
    .await
    .expect("seed");

    // A wrong password is explained, and the form stays usable.
    let mut tui = Tui::start(&s.base);
    tui.log_in("tini", "not-the-password").await;
    tui.shows(&["Wrong username or password."]).await;
    // The password field is cleared and focused: type the right one.
    tui.type_text("password123").await;
    tui.press(KeyCode::Enter).await;

    // The seeded chats, with their last messages decrypted locally.
    let screen = tui
        .shows(&[
            "Chats",
            "Alice",
            "Bob",
            "Carol",
            "I'll book a table.",
            "Got them, thank you!",
            "online",
        ])
        .await;
    assert!(!screen.contains("cannot decrypt"), "{screen}");

    // Bob is online on the SDK.
    let bob = jibber_client::login(&s.base, "bob", "password123", &ksf())
        .await
        .expect("bob logs in");
    let (bob, mut bob_events) = Client::start(bob, Options::default())
        .await
        .expect("bob's client");

    // Open the chat with bob through the contact search.
    tui.ctrl('n').await;
    tui.shows(&["New chat: search"]).await;
    tui.type_text("bob").await;
    tui.shows(&["Bob (@bob)"]).await;
    tui.press(KeyCode::Enter).await;
    tui.shows(&[
        "Lunch tomorrow at noon?",
        "Sounds good, see you there.",
        "● Bob",
    ])
    .await;

    // Send: it reaches bob, and the marks go sent → delivered → read.
    tui.type_text("hello from the terminal").await;
    tui.press(KeyCode::Enter).await;
    let got = tokio::time::timeout(WAIT, async {
        loop {
            match bob_events.recv().await.expect("bob's events") {
                Event::Message(r) if r.text.as_deref() == Ok("hello from the terminal") => {
                    break r;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("bob receives the message");
    tui.shows(&["me: hello from the terminal ✓✓"]).await;
    bob.mark_read(got.message.chat_id, got.message.sequence_number)
        .await
        .expect("bob reads");
    tui.shows(&["me: hello from the terminal ✓✓ read"]).await;

    // Bob types, then answers.
    bob.typing(got.message.chat_id, true).await;
    tui.shows(&["Bob is typing…"]).await;
    bob.send(got.message.chat_id, "hi tini, got it")
        .await
        .expect("bob replies");
    let screen = tui.shows(&["Bob: hi tini, got it"]).await;
    assert!(
        !screen.contains("Bob is typing…"),
        "a message ends the typing indicator"
    );

    // The safety number view.
    tui.ctrl('k').await;
    tui.shows(&["Safety number with Bob:"]).await;
    tui.press(KeyCode::Esc).await;

    tui.ctrl('c').await;
    tokio::time::timeout(WAIT, tui.task)
        .await
        .expect("the tui quits")
        .expect("join")
        .expect("run");
    bob.shutdown().await;
    s.stop().await;
}

/// An account made through the SDK, with the key stretching the terminal client uses; its
/// password is `pw-<name>-123`.
async fn account(base: &str, name: &str) -> Session {
    let password = format!("pw-{name}-123");
    jibber_client::register(base, name, &password, &ksf())
        .await
        .expect("register");
    jibber_client::login(base, name, &password, &ksf())
        .await
        .expect("login")
}

/// Client options that reconnect quickly (a restarted server is found again at once).
fn quick() -> Options {
    Options {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..Options::default()
    }
}

/// Ctrl-N on the login form switches to sign-up: the account is made through OPAQUE and the
/// client opens it; a taken username is explained.
#[tokio::test]
async fn signing_up_on_the_login_form_opens_the_new_account() {
    let s = TestServer::start(&[]).await;
    let mut tui = Tui::start(&s.base);
    tui.shows(&["Jibber · log in", "Ctrl-N: create an account"])
        .await;
    tui.ctrl('n').await;
    tui.shows(&[
        "Jibber · sign up",
        "Enter: sign up",
        "Ctrl-N: log in instead",
    ])
    .await;
    tui.type_text("zoe").await;
    tui.press(KeyCode::Tab).await;
    tui.type_text("pw-zoe-123").await;
    tui.press(KeyCode::Enter).await;
    let screen = tui.shows(&["No chats yet.", "● online"]).await;
    assert!(
        screen.contains(" zoe "),
        "the status line names the user: {screen}"
    );
    tui.quit().await;
    // The account exists with that password (and its key bundle opens).
    let zoe = jibber_client::login(&s.base, "zoe", "pw-zoe-123", &ksf())
        .await
        .expect("the new account logs in");
    assert_eq!(zoe.user().username, "zoe");

    // The same name again: refused, and said why.
    let mut again = Tui::start(&s.base);
    again.shows(&["Jibber · log in"]).await;
    again.ctrl('n').await;
    again.shows(&["Jibber · sign up"]).await;
    again.type_text("zoe").await;
    again.press(KeyCode::Tab).await;
    again.type_text("another-password").await;
    again.press(KeyCode::Enter).await;
    again
        .shows(&["username is already taken", "Jibber · sign up"])
        .await;
    again.quit().await;
    s.stop().await;
}

/// A fresh user has no chats and nobody to write to, and is told so; once someone signs up,
/// Ctrl-R in the contact search finds them.
#[tokio::test]
async fn a_fresh_user_sees_no_contacts_yet_and_ctrl_r_searches_again() {
    let s = TestServer::start(&[]).await;
    account(&s.base, "zoe").await;
    let mut tui = Tui::start(&s.base);
    tui.log_in("zoe", "pw-zoe-123").await;
    tui.shows(&["No chats yet.", "Start a conversation with Ctrl-N."])
        .await;
    tui.ctrl('n').await;
    tui.shows(&[
        "New chat: search",
        "No other users yet.",
        "Ctrl-R: search again",
    ])
    .await;

    account(&s.base, "yan").await;
    tui.ctrl('r').await;
    tui.shows_without(&["yan (@yan)"], &["No other users yet."])
        .await;
    tui.press(KeyCode::Enter).await;
    tui.shows(&["No messages yet: say hello.", "yan · Ctrl-K: safety number"])
        .await;
    tui.quit().await;
    s.stop().await;
}

/// Messages that arrived while the user was away show as an unread count in the chat list; a
/// live one adds to it; opening the chat clears it.
#[tokio::test]
async fn unread_counts_show_in_the_chat_list() {
    let s = TestServer::start(&[]).await;
    let alice = account(&s.base, "alice").await;
    let bob = account(&s.base, "bob").await;
    let chat = alice.open_chat(bob.user().id).await.expect("chat").id;
    let bob_public = alice.user_profile(bob.user().id).await.expect("profile");
    for (i, text) in ["one", "two"].iter().enumerate() {
        alice
            .send_text(chat, &bob_public, text, &format!("u-{i}"))
            .await
            .expect("send");
    }

    let mut tui = Tui::start(&s.base);
    tui.log_in("bob", "pw-bob-123").await;
    tui.shows(&["alice (2)"]).await;
    alice
        .send_text(chat, &bob_public, "three", "u-live")
        .await
        .expect("send");
    tui.shows(&["alice (3)", "three"]).await;
    tui.press(KeyCode::Enter).await;
    tui.shows_without(&["alice: one", "alice: three"], &["(3)"])
        .await;
    tui.quit().await;
    s.stop().await;
}

/// A chat opens on its latest page; PgUp scrolls up and loads the older pages (the first
/// message was not in the first page).
#[tokio::test]
async fn page_up_loads_older_history() {
    let s = TestServer::start(&[]).await;
    let alice = account(&s.base, "alice").await;
    let bob = account(&s.base, "bob").await;
    let chat = alice.open_chat(bob.user().id).await.expect("chat").id;
    let bob_public = alice.user_profile(bob.user().id).await.expect("profile");
    for i in 1..=60 {
        alice
            .send_text(chat, &bob_public, &format!("msg {i:02}"), &format!("h-{i}"))
            .await
            .expect("send");
    }

    let mut tui = Tui::start(&s.base);
    tui.log_in("bob", "pw-bob-123").await;
    tui.shows(&["alice"]).await;
    tui.press(KeyCode::Enter).await;
    tui.shows_without(&["alice: msg 60"], &["msg 01", "msg 10"])
        .await;
    // The page of 50 ended at 11; scrolling to the top needs the older page.
    for _ in 0..12 {
        tui.press(KeyCode::PageUp).await;
    }
    tui.shows(&["alice: msg 01", "alice: msg 10"]).await;
    tui.quit().await;
    s.stop().await;
}

/// A free local port with nothing listening on it.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    addr
}

/// Logging in to a server that is not there says so; once it runs, Enter again logs in.
#[tokio::test]
async fn an_unreachable_server_at_login_is_explained_and_enter_retries() {
    let addr = closed_port().await;
    let mut tui = Tui::start(&format!("http://{addr}"));
    tui.log_in("zoe", "pw-zoe-123").await;
    tui.shows(&["Cannot reach the server."]).await;

    let s = Parked {
        dir: tempfile::tempdir().expect("tempdir"),
        addr,
    }
    .resume(&[])
    .await;
    account(&s.base, "zoe").await;
    tui.type_text("pw-zoe-123").await;
    tui.press(KeyCode::Enter).await;
    tui.shows(&["No chats yet.", "● online"]).await;
    tui.quit().await;
    s.stop().await;
}

/// The server goes away while chatting: the status line says it is unreachable and when the
/// next attempt is; Ctrl-R reconnects at once instead (the next attempt is an hour away).
#[tokio::test]
async fn offline_the_status_says_unreachable_and_ctrl_r_reconnects_now() {
    let s = TestServer::start(&[]).await;
    account(&s.base, "zoe").await;
    let hour = Duration::from_secs(3600);
    let mut tui = Tui::start_with(
        &s.base,
        Options {
            backoff_min: hour,
            backoff_max: hour,
            ..Options::default()
        },
    );
    tui.log_in("zoe", "pw-zoe-123").await;
    tui.shows(&["No chats yet.", "● online"]).await;

    let parked = s.park().await;
    tui.shows_without(
        &["○ server unreachable; retrying in 3600 s · Ctrl-R: retry now"],
        &["● online"],
    )
    .await;
    let s = parked.resume(&[]).await;
    tui.ctrl('r').await;
    tui.shows_without(&["● online"], &["server unreachable"])
        .await;
    tui.quit().await;
    s.stop().await;
}

/// The server no longer accepts the session (its refresh token expired, and the server came
/// back with a new signing secret): the login form comes back in place, saying so, with the
/// username filled in; the password logs in again.
#[tokio::test]
async fn an_expired_session_brings_back_the_login_form_and_logging_in_resumes() {
    let s = TestServer::start(&[("refresh_token_ttl", "1ms")]).await;
    account(&s.base, "zoe").await;
    let mut tui = Tui::start_with(&s.base, quick());
    tui.log_in("zoe", "pw-zoe-123").await;
    tui.shows(&["No chats yet.", "● online"]).await;

    let secret = jibber_server::auth::tokens::new_jwt_secret();
    let s = s.park().await.resume(&[("jwt_secret", &secret)]).await;
    let screen = tui
        .shows(&["Jibber · log in", "Your session expired: log in again."])
        .await;
    assert!(screen.contains("zoe"), "the username is kept: {screen}");
    assert!(
        !screen.contains("Cannot reach") && !screen.contains("Wrong username"),
        "{screen}"
    );
    tui.type_text("pw-zoe-123").await;
    tui.press(KeyCode::Enter).await;
    tui.shows(&["No chats yet.", "● online"]).await;
    tui.quit().await;
    s.stop().await;
}

/// A message the server refuses (too large for it) is marked not sent with the reason; once
/// the server takes it (its limit raised), Ctrl-R sends it.
#[tokio::test]
async fn a_failed_message_shows_why_and_ctrl_r_sends_it() {
    // The smallest limit the server allows; the message is a little larger.
    let s = TestServer::start(&[("max_message_bytes", "1024")]).await;
    let alice = account(&s.base, "alice").await;
    let bob = account(&s.base, "bob").await;
    let chat = bob.open_chat(alice.user().id).await.expect("chat").id;
    let alice_public = bob.user_profile(alice.user().id).await.expect("profile");
    bob.send_text(chat, &alice_public, "hi", "f-1")
        .await
        .expect("a short message fits");
    let long = format!("{}the end", "too long for now. ".repeat(60));

    let mut tui = Tui::start_with(&s.base, quick());
    tui.log_in("alice", "pw-alice-123").await;
    tui.shows(&["bob", "● online"]).await;
    tui.press(KeyCode::Enter).await;
    tui.shows(&["bob: hi"]).await;
    tui.type_text(&long).await;
    tui.press(KeyCode::Enter).await;
    // The long line wraps: compared without spaces and line breaks.
    tui.shows_flat(&["theend✕notsent(PAYLOAD_TOO_LARGE", "Ctrl-R:retry"], &[])
        .await;

    // The operator raises the limit: the server restarts without it.
    let parked = s.park().await;
    tui.shows_without(&[], &["● online"]).await;
    let s = parked.resume(&[]).await;
    tui.shows(&["● online"]).await;
    tui.ctrl('r').await;
    tui.shows_flat(&["theend✓"], &["notsent"]).await;
    let history = bob.history(chat, None, 10).await.expect("history");
    let last = history.last().expect("a message");
    assert_eq!(bob.decrypt(last, &alice_public).expect("decrypts"), long);
    tui.quit().await;
    s.stop().await;
}

/// A peer's keys change (a key rotation): the status line says so and points at the safety
/// number, and the new message still reads.
#[tokio::test]
async fn a_peers_key_change_is_announced() {
    let s = TestServer::start(&[]).await;
    let alice = account(&s.base, "alice").await;
    let mut bob = account(&s.base, "bob").await;
    let chat = bob.open_chat(alice.user().id).await.expect("chat").id;
    let alice_public = bob.user_profile(alice.user().id).await.expect("profile");
    bob.send_text(chat, &alice_public, "before", "k-1")
        .await
        .expect("send");

    let mut tui = Tui::start(&s.base);
    tui.log_in("alice", "pw-alice-123").await;
    tui.shows(&["bob", "● online"]).await;
    tui.press(KeyCode::Enter).await;
    tui.shows(&["bob: before"]).await;

    bob.rotate_keys("pw-bob-123", &ksf()).await.expect("rotate");
    bob.send_text(chat, &alice_public, "after", "k-2")
        .await
        .expect("send with the new keys");
    let screen = tui
        .shows(&[
            "bob's keys changed: compare the safety number again (Ctrl-K)",
            "bob: after",
        ])
        .await;
    assert!(!screen.contains("cannot decrypt"), "{screen}");
    tui.quit().await;
    s.stop().await;
}
