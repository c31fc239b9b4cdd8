//! `jibber chat`: the terminal client (ratatui). [`app`] holds the state and reacts to keys and
//! client events; [`ui`] draws it; [`run`] ties them to a terminal, the keyboard and the SDK.
//! Tests drive [`run`] with a `TestBackend` and a channel of keys, through the same loop.

pub mod app;
pub mod ui;

use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEvent, KeyEventKind};
use futures_util::StreamExt;
use jibber_client::realtime::{Client, Event, Options};
use jibber_client::{ClientError, Session, register_with};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::mpsc;

use app::{App, Command, Done};

/// How `jibber chat` starts.
#[derive(Debug, Clone)]
pub struct Setup {
    pub server: String,
    pub username: String,
    /// How the client connects (transport, backoff); `outbox` is set per account.
    pub options: Options,
    /// Where outboxes live (one file per server and account).
    pub data_dir: Option<std::path::PathBuf>,
    pub ksf: fn() -> argon2::Argon2<'static>,
}

/// What the runner keeps besides the app state.
struct Runtime {
    setup: Setup,
    client: Option<Client>,
    events: Option<mpsc::Receiver<Event>>,
    done_tx: mpsc::UnboundedSender<Done>,
    session_tx: mpsc::UnboundedSender<Result<Session, ClientError>>,
}

fn friendly(e: &ClientError) -> String {
    match e {
        ClientError::Unreachable(_) => {
            "Cannot reach the server. Check the address and that it is running.".to_owned()
        }
        ClientError::InvalidCredentials => "Wrong username or password.".to_owned(),
        other => other.to_string(),
    }
}

impl Runtime {
    /// Carries out a command; results come back on `done_tx`.
    fn execute(&mut self, command: Command) {
        let client = self.client.clone();
        match command {
            Command::Login {
                server,
                username,
                password,
                signup,
            } => {
                let ksf = (self.setup.ksf)();
                let session_tx = self.session_tx.clone();
                tokio::spawn(async move {
                    let result = async {
                        if signup {
                            register_with(&server, &username, &password, &ksf, None, None).await?;
                        }
                        jibber_client::login(&server, &username, &password, &ksf).await
                    }
                    .await;
                    let _ = session_tx.send(result);
                });
            }
            Command::Quit | Command::SignOut => {}
            other => {
                let Some(client) = client else { return };
                let tx = self.done_tx.clone();
                tokio::spawn(async move {
                    if let Some(done) = run_command(&client, other).await {
                        let _ = tx.send(done);
                    }
                });
            }
        }
    }
}

/// The async part of a command once signed in.
async fn run_command(client: &Client, command: Command) -> Option<Done> {
    let failed = |e: ClientError| Some(Done::Failed(friendly(&e)));
    match command {
        Command::Refresh => match client.chats().await {
            Ok(chats) => Some(Done::Chats(chats)),
            Err(e) => failed(e),
        },
        Command::Open(chat) => {
            let _ = client.set_active_chat(Some(chat)).await;
            match client.history(chat, None, 50).await {
                Ok(messages) => Some(Done::History {
                    chat,
                    messages,
                    older: false,
                }),
                Err(e) => failed(e),
            }
        }
        Command::LoadOlder { chat, before } => match client.history(chat, Some(before), 50).await {
            Ok(messages) => Some(Done::History {
                chat,
                messages,
                older: true,
            }),
            Err(e) => failed(e),
        },
        Command::Send { chat, text } => match client.send(chat, &text).await {
            Ok(temp_id) => Some(Done::Queued {
                chat,
                temp_id,
                text,
            }),
            Err(e) => failed(e),
        },
        Command::Retry(temp) => client.retry(&temp).await.err().and_then(failed),
        Command::ReconnectNow => {
            client.reconnect_now();
            None
        }
        Command::Typing { chat, on } => {
            client.typing(chat, on).await;
            None
        }
        Command::MarkRead { chat, up_to } => {
            client.mark_read(chat, up_to).await.err().and_then(failed)
        }
        Command::Search(query) => match client.session().contacts(&query).await {
            Ok(users) => Some(Done::Contacts { query, users }),
            Err(e) => failed(e),
        },
        Command::StartChat(user) => match client.open_chat(user).await {
            Ok(chat) => Some(Done::Started(Box::new(chat))),
            Err(e) => failed(e),
        },
        Command::Login { .. } | Command::SignOut | Command::Quit => None,
    }
}

/// Runs the terminal client until the user quits. `keys` are the key presses; `on_draw` sees
/// every drawn frame (tests read the screen there).
pub async fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    setup: Setup,
    mut keys: mpsc::Receiver<KeyEvent>,
    mut on_draw: impl FnMut(&ratatui::buffer::Buffer),
) -> anyhow::Result<()>
where
    B::Error: Send + Sync + 'static,
{
    let mut app = App::new(setup.server.clone(), setup.username.clone());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (session_tx, mut session_rx) = mpsc::unbounded_channel();
    let mut rt = Runtime {
        setup,
        client: None,
        events: None,
        done_tx,
        session_tx,
    };
    // Redraw at least every second (typing indicators expire, retry countdowns tick).
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let frame = terminal.draw(|f| ui::draw(f, &mut app))?;
        on_draw(frame.buffer);
        if app.quit {
            break;
        }
        let commands = tokio::select! {
            key = keys.recv() => match key {
                Some(k) => app.key(k),
                None => vec![Command::Quit],
            },
            Some(done) = done_rx.recv() => app.done(done),
            Some(session) = session_rx.recv() => match session {
                Ok(session) => {
                    let me = session.user().clone();
                    let outbox = rt.setup.data_dir.as_ref().map(|d| {
                        let host: String = rt.setup.server.chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                            .collect();
                        d.join(format!("{host}-{}.outbox", me.id))
                    });
                    let options = Options { outbox, ..rt.setup.options.clone() };
                    match Client::start(session, options).await {
                        Ok((client, events)) => {
                            rt.client = Some(client);
                            rt.events = Some(events);
                            app.done(Done::LoggedIn(Box::new(me)))
                        }
                        Err(e) => app.done(Done::LoginFailed(friendly(&e))),
                    }
                }
                Err(e) => app.done(Done::LoginFailed(friendly(&e))),
            },
            Some(event) = async {
                match rt.events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => app.event(event),
            _ = tick.tick() => vec![],
        };
        for c in commands {
            if c == Command::Quit {
                app.quit = true;
            }
            if c == Command::SignOut
                && let Some(client) = rt.client.take()
            {
                rt.events = None;
                client.shutdown().await;
            }
            rt.execute(c);
        }
    }
    if let Some(client) = rt.client.take() {
        client.shutdown().await;
    }
    Ok(())
}

/// `jibber chat` on the real terminal.
pub async fn run_terminal(setup: Setup) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    let (tx, rx) = mpsc::channel(64);
    let reader = tokio::spawn(async move {
        let mut stream = EventStream::new();
        while let Some(Ok(event)) = stream.next().await {
            if let TermEvent::Key(k) = event
                && k.kind == KeyEventKind::Press
                && tx.send(k).await.is_err()
            {
                break;
            }
        }
    });
    let result = run(&mut terminal, setup, rx, |_| {}).await;
    reader.abort();
    ratatui::restore();
    result
}
