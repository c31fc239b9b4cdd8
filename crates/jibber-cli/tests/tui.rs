//! `jibber chat` end to end, through the same loop as on a terminal (ratatui's TestBackend and a
//! channel of key presses): after `jibber seed`, tini logs in and sees her seeded conversations
//! decrypted, opens the chat with bob, sends, sees it delivered and read, sees bob typing and his
//! reply; a refused login is explained.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use jibber_cli::client::{SeedArgs, ksf, seed};
use jibber_cli::tui::{Setup, run};
use jibber_client::realtime::{Client, Event, Options};
use jibber_client::sio::Transport;
use jibber_server::testing::TestServer;
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
        let (keys, key_rx) = mpsc::channel(64);
        let (screen_tx, screen) = watch::channel(String::new());
        let setup = Setup {
            server: server.to_owned(),
            username: String::new(),
            transport: Transport::WebSocket,
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
        let shown = match tokio::time::timeout(
            WAIT,
            self.screen
                .wait_for(|s| parts.iter().all(|p| s.contains(p))),
        )
        .await
        {
            Ok(Ok(s)) => Some(s.clone()),
            _ => None,
        };
        match shown {
            Some(s) => s,
            None => panic!(
                "the screen never showed {parts:?}; last screen:\n{}",
                *self.screen.borrow()
            ),
        }
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
