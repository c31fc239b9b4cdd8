//! The client commands for people and scripts: `register`, `send`, `tail`, `seed`.
//!
//! Exit codes (scripts can trust them):
//! 0 done · 1 other failure · 2 bad usage or configuration · 3 server unreachable ·
//! 4 wrong credentials or session over · 5 refused by the server (the message names the code) ·
//! 6 timed out waiting (e.g. `tail --count` not reached).

use std::io::{IsTerminal, Read};
use std::time::Duration;

use clap::Args;
use jibber_client::realtime::{CatchUp, Client, Connection, Event, Options};
use jibber_client::sio::Transport;
use jibber_client::{ClientError, Session};
use jibber_proto::ErrorCode;
use jibber_proto::api::PublicUser;
use serde_json::json;

/// A failure with the exit code scripts see.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Failure {
        let code = match &e {
            ClientError::Unreachable(_) => 3,
            ClientError::InvalidCredentials => 4,
            _ if matches!(
                e.code(),
                Some(
                    ErrorCode::Unauthenticated | ErrorCode::InvalidToken | ErrorCode::TokenExpired
                )
            ) =>
            {
                4
            }
            ClientError::Api(_) | ClientError::Event(_) => 5,
            _ => 1,
        };
        Failure::new(code, e.to_string())
    }
}

pub type Outcome = Result<(), Failure>;

/// Where and as whom.
#[derive(Args, Debug, Clone)]
pub struct Account {
    /// The server's address.
    #[arg(long, env = "JIBBER_SERVER", default_value = "http://localhost:8080")]
    pub server: String,
    /// The account's username.
    #[arg(long, short = 'u', env = "JIBBER_USERNAME")]
    pub username: String,
}

/// The password: `JIBBER_PASSWORD`, else asked on the terminal (never a flag: it would show in
/// the process list and the shell history).
fn password(prompt: &str) -> Result<String, Failure> {
    if let Ok(p) = std::env::var("JIBBER_PASSWORD") {
        return Ok(p);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::new(
            2,
            "no password: set JIBBER_PASSWORD or run on a terminal",
        ));
    }
    rpassword::prompt_password(prompt).map_err(|e| Failure::new(1, e.to_string()))
}

/// The key stretching every Jibber client uses for an account (the web client's too).
pub fn ksf() -> argon2::Argon2<'static> {
    jibber_crypto::serenity_ksf()
}

pub async fn sign_in(account: &Account) -> Result<Session, Failure> {
    let pw = password(&format!("password for {}: ", account.username))?;
    Ok(jibber_client::login(&account.server, &account.username, &pw, &ksf()).await?)
}

/// Another user by exact username.
pub async fn find_user(session: &Session, username: &str) -> Result<PublicUser, Failure> {
    let wanted = username.to_lowercase();
    session
        .contacts(username)
        .await?
        .into_iter()
        .find(|u| u.username.to_lowercase() == wanted)
        .ok_or_else(|| Failure::new(5, format!("NOT_FOUND: no user named {username:?}")))
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub account: Account,
    /// A name shown to others.
    #[arg(long)]
    pub display_name: Option<String>,
}

pub async fn register(args: RegisterArgs) -> Outcome {
    let pw = password("new password: ")?;
    let user = jibber_client::register_with(
        &args.account.server,
        &args.account.username,
        &pw,
        &ksf(),
        args.display_name.as_deref(),
        None,
    )
    .await?;
    println!("registered {} ({})", user.username, user.id);
    Ok(())
}

#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    pub account: Account,
    /// Print the server's acknowledgement as JSON.
    #[arg(long)]
    pub json: bool,
    /// The receiver's username.
    pub to: String,
    /// The text ("-" reads it from standard input).
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
}

/// Sends one message over REST; returns once the server stored it.
pub async fn send(args: SendArgs) -> Outcome {
    let text = if args.text == ["-"] {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::new(1, e.to_string()))?;
        s.trim_end_matches('\n').to_owned()
    } else {
        args.text.join(" ")
    };
    let session = sign_in(&args.account).await?;
    let peer = find_user(&session, &args.to).await?;
    let chat = session.open_chat(peer.id).await?;
    let temp = uuid::Uuid::now_v7().to_string();
    let ack = session.send_text(chat.id, &peer, &text, &temp).await?;
    if args.json {
        println!(
            "{}",
            json!({
                "chatId": ack.chat_id,
                "messageId": ack.message_id,
                "sequenceNumber": ack.sequence_number,
                "tempMessageId": ack.temp_message_id,
                "to": peer.username,
            })
        );
    } else {
        println!(
            "sent to {} (message {}, #{})",
            peer.username, ack.message_id, ack.sequence_number
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TailArgs {
    #[command(flatten)]
    pub account: Account,
    /// One JSON object per line: {chatId, messageId, sequenceNumber, from, text}.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<usize>,
    /// Give up (exit 6) after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Show the history first (default: only what arrives from now on).
    #[arg(long)]
    pub from_start: bool,
    /// websocket or polling.
    #[arg(long, default_value = "websocket")]
    pub transport: Transport,
}

/// Streams incoming messages, decrypted.
pub async fn tail(args: TailArgs) -> Outcome {
    let session = sign_in(&args.account).await?;
    let me = session.user().id;
    let options = Options {
        transport: args.transport,
        catch_up: if args.from_start {
            CatchUp::Everything
        } else {
            CatchUp::FromNow
        },
        ..Options::default()
    };
    let (client, mut events) = Client::start(session, options).await?;
    let names = Names::default();
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut shown = 0usize;
    let result = loop {
        if args.count.is_some_and(|n| shown >= n) {
            break Ok(());
        }
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, events.recv()).await {
                Ok(e) => e,
                Err(_) => {
                    break Err(Failure::new(
                        6,
                        format!("timed out after {shown} message(s)"),
                    ));
                }
            },
            None => events.recv().await,
        };
        let Some(event) = next else {
            break Err(Failure::new(1, "the client stopped"));
        };
        match event {
            Event::Message(r) if r.message.sender != me || args.from_start => {
                let from = names.name(&client, r.message.sender).await;
                let text = match &r.text {
                    Ok(t) => t.clone(),
                    Err(e) => format!("[cannot decrypt: {e}]"),
                };
                if args.json {
                    println!(
                        "{}",
                        json!({
                            "chatId": r.message.chat_id,
                            "messageId": r.message.id,
                            "sequenceNumber": r.message.sequence_number,
                            "from": from,
                            "text": text,
                            "decrypted": r.text.is_ok(),
                        })
                    );
                } else {
                    println!("{from}: {text}");
                }
                shown += 1;
            }
            Event::Connection(Connection::SessionExpired) => {
                break Err(Failure::new(4, "the session expired; log in again"));
            }
            Event::Connection(c) => eprintln!("{}", describe(&c)),
            _ => {}
        }
    };
    client.shutdown().await;
    result
}

/// A connection state in words.
pub fn describe(c: &Connection) -> String {
    match c {
        Connection::Connecting { attempt: 0 } => "connecting…".to_owned(),
        Connection::Connecting { attempt } => format!("connecting (attempt {})…", attempt + 1),
        Connection::Online => "online".to_owned(),
        Connection::Offline { reason, retry_in } => {
            format!(
                "offline ({reason}); retrying in {:.1} s",
                retry_in.as_secs_f32()
            )
        }
        Connection::SessionExpired => "session expired: log in again".to_owned(),
    }
}

/// Usernames by id, asked once each.
#[derive(Default)]
struct Names(tokio::sync::Mutex<std::collections::HashMap<uuid::Uuid, String>>);

impl Names {
    async fn name(&self, client: &Client, id: uuid::Uuid) -> String {
        let mut names = self.0.lock().await;
        if let Some(n) = names.get(&id) {
            return n.clone();
        }
        let n = match client.session().user_profile(id).await {
            Ok(u) => u.username,
            Err(_) => id.to_string(),
        };
        names.insert(id, n.clone());
        n
    }
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The server's address.
    #[arg(long, env = "JIBBER_SERVER", default_value = "http://localhost:8080")]
    pub server: String,
    /// The demo accounts' password.
    #[arg(long, env = "JIBBER_SEED_PASSWORD", default_value = "password123")]
    pub password: String,
}

/// The demo accounts: (username, display name, email).
pub const DEMO_USERS: [(&str, &str, &str); 4] = [
    ("tini", "Tini", "tini@test.com"),
    ("alice", "Alice", "alice@test.com"),
    ("bob", "Bob", "bob@test.com"),
    ("carol", "Carol", "carol@test.com"),
];

/// The demo conversations: (from, to, text), in order.
const DEMO_MESSAGES: [(&str, &str, &str); 11] = [
    ("alice", "tini", "Hi Tini! Welcome to Jibber."),
    (
        "tini",
        "alice",
        "Thanks! Is this really end-to-end encrypted?",
    ),
    (
        "alice",
        "tini",
        "Yes: the server only ever stores ciphertext.",
    ),
    ("tini", "alice", "Nice. Compare safety numbers later?"),
    ("bob", "tini", "Lunch tomorrow at noon?"),
    ("tini", "bob", "Sounds good, see you there."),
    ("bob", "tini", "I'll book a table."),
    ("carol", "tini", "Did you get the slides?"),
    ("tini", "carol", "Got them, thank you!"),
    ("alice", "bob", "Bob, are you coming to the meetup?"),
    ("bob", "alice", "Wouldn't miss it."),
];

/// Registers the demo accounts through real OPAQUE, with key bundles, and fills their chats
/// with real encrypted messages. Safe to run again: existing accounts are logged into, and
/// each message has a fixed idempotency key, so nothing is doubled.
pub async fn seed(args: SeedArgs) -> Outcome {
    let bar = indicatif::ProgressBar::new((DEMO_USERS.len() + DEMO_MESSAGES.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .map_err(|e| Failure::new(1, e.to_string()))?,
    );
    let mut sessions = std::collections::HashMap::new();
    for (name, display, email) in DEMO_USERS {
        bar.set_message(format!("account {name}"));
        match jibber_client::register_with(
            &args.server,
            name,
            &args.password,
            &ksf(),
            Some(display),
            Some(email),
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
        let session = jibber_client::login(&args.server, name, &args.password, &ksf())
            .await
            .map_err(|e| match e {
                ClientError::InvalidCredentials => Failure::new(
                    4,
                    format!("{name} exists with another password; not touching it"),
                ),
                e => e.into(),
            })?;
        sessions.insert(name, session);
        bar.inc(1);
    }
    let mut created = 0;
    for (n, (from, to, text)) in DEMO_MESSAGES.iter().enumerate() {
        bar.set_message(format!("{from} → {to}"));
        let sender = &sessions[from];
        let receiver = sessions[to].user();
        let peer = sender.user_profile(receiver.id).await?;
        let chat = sender.open_chat(peer.id).await?;
        let ack = sender
            .send_text(chat.id, &peer, text, &format!("seed-{n}"))
            .await?;
        if !ack.duplicate {
            created += 1;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let chats: std::collections::HashSet<[&str; 2]> = DEMO_MESSAGES
        .iter()
        .map(|(a, b, _)| if a < b { [*a, *b] } else { [*b, *a] })
        .collect();
    println!(
        "seeded {} accounts ({}; password {:?}) and {} conversations ({created} new messages)",
        DEMO_USERS.len(),
        DEMO_USERS.map(|u| u.0).join(", "),
        args.password,
        chats.len(),
    );
    Ok(())
}
