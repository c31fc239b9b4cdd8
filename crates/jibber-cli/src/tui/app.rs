//! The terminal client's state and how keys and client events change it. No I/O here: keys
//! produce [`Command`]s that the runner carries out, and their results come back as [`Done`].

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use jibber_client::realtime::{Connection, Event, MessageState, Presence, Received};
use jibber_proto::api::{Chat, Me, PublicUser};
use uuid::Uuid;

/// Work for the runner.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Login {
        server: String,
        username: String,
        password: String,
        signup: bool,
    },
    /// Open a chat: load its latest history, mark it read, make it the active chat.
    Open(Uuid),
    LoadOlder {
        chat: Uuid,
        before: i64,
    },
    Send {
        chat: Uuid,
        text: String,
    },
    Retry(String),
    Typing {
        chat: Uuid,
        on: bool,
    },
    MarkRead {
        chat: Uuid,
        up_to: i64,
    },
    Search(String),
    StartChat(Uuid),
    Refresh,
    /// Offline: reconnect now instead of at the end of the backoff.
    ReconnectNow,
    /// The session expired: stop the client (the login form is back).
    SignOut,
    Quit,
}

/// Results of commands.
#[derive(Debug)]
pub enum Done {
    LoggedIn(Box<Me>),
    LoginFailed(String),
    Chats(Vec<Chat>),
    History {
        chat: Uuid,
        messages: Vec<Received>,
        older: bool,
    },
    /// Search results for a query (stale ones, for an older query, are ignored).
    Contacts {
        query: String,
        users: Vec<PublicUser>,
    },
    Started(Box<Chat>),
    /// A message is in the outbox.
    Queued {
        chat: Uuid,
        temp_id: String,
        text: String,
    },
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Server,
    Username,
    Password,
}

#[derive(Debug, Clone)]
pub struct LoginForm {
    pub server: String,
    pub username: String,
    pub password: String,
    pub focus: Field,
    pub signup: bool,
    pub busy: bool,
    pub error: Option<String>,
}

/// How a line of the conversation stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// From the peer.
    Incoming,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Line {
    pub message_id: Option<Uuid>,
    pub temp_id: Option<String>,
    pub sequence: Option<i64>,
    pub mine: bool,
    pub text: Result<String, String>,
    pub mark: Mark,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Focus {
    Chats,
    Input,
}

#[derive(Debug, Clone)]
pub enum Overlay {
    /// Start a chat: search contacts.
    NewChat {
        query: String,
        results: Vec<PublicUser>,
        selected: usize,
        searched: bool,
    },
    /// The safety number of the open chat.
    Safety,
    Help,
}

pub struct Main {
    /// The server logged into (the login form offers it again if the session expires).
    pub server: String,
    pub me: Me,
    pub chats: Vec<Chat>,
    pub chats_loaded: bool,
    pub selected: usize,
    pub open: Option<Uuid>,
    pub lines: HashMap<Uuid, Vec<Line>>,
    /// Chats whose history has no older page.
    pub complete: HashSet<Uuid>,
    pub input: String,
    pub focus: Focus,
    pub typing: HashMap<Uuid, Instant>,
    pub online: HashSet<Uuid>,
    pub connection: Connection,
    pub notice: Option<String>,
    pub overlay: Option<Overlay>,
    pub scroll: usize,
    pub typing_sent: bool,
    /// Receipts that arrived before this device learned the message's id (the send's
    /// acknowledgement and the peer's receipt travel separately and can cross): applied when
    /// the id arrives, so a mark is never lost to that race.
    pub early_delivered: HashSet<Uuid>,
    /// Per chat, the highest sequence the peer has read.
    pub peer_read_up_to: HashMap<Uuid, i64>,
}

pub enum Screen {
    Login(LoginForm),
    Main(Box<Main>),
}

pub struct App {
    pub screen: Screen,
    pub quit: bool,
}

fn ctrl(key: &KeyEvent, c: char) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char(c)
}

impl App {
    pub fn new(server: String, username: String) -> App {
        let focus = if username.is_empty() {
            Field::Username
        } else {
            Field::Password
        };
        App {
            screen: Screen::Login(LoginForm {
                server,
                username,
                password: String::new(),
                focus,
                signup: false,
                busy: false,
                error: None,
            }),
            quit: false,
        }
    }

    /// A key press.
    pub fn key(&mut self, key: KeyEvent) -> Vec<Command> {
        if ctrl(&key, 'c') {
            self.quit = true;
            return vec![Command::Quit];
        }
        match &mut self.screen {
            Screen::Login(form) => login_key(form, key),
            Screen::Main(main) => main_key(main, key),
        }
    }

    /// A command finished.
    pub fn done(&mut self, done: Done) -> Vec<Command> {
        match (&mut self.screen, done) {
            (Screen::Login(form), Done::LoggedIn(me)) => {
                self.screen = Screen::Main(Box::new(Main {
                    server: form.server.trim().to_owned(),
                    me: *me,
                    chats: Vec::new(),
                    chats_loaded: false,
                    selected: 0,
                    open: None,
                    lines: HashMap::new(),
                    complete: HashSet::new(),
                    input: String::new(),
                    focus: Focus::Chats,
                    typing: HashMap::new(),
                    online: HashSet::new(),
                    connection: Connection::Connecting { attempt: 0 },
                    notice: None,
                    overlay: None,
                    scroll: 0,
                    typing_sent: false,
                    early_delivered: HashSet::new(),
                    peer_read_up_to: HashMap::new(),
                }));
                vec![Command::Refresh]
            }
            (Screen::Login(form), Done::LoginFailed(e)) => {
                form.busy = false;
                form.error = Some(e);
                form.password.clear();
                form.focus = Field::Password;
                vec![]
            }
            (Screen::Main(main), done) => main_done(main, done),
            _ => vec![],
        }
    }

    /// An event of the client.
    pub fn event(&mut self, event: Event) -> Vec<Command> {
        let Screen::Main(main) = &mut self.screen else {
            return vec![];
        };
        if matches!(event, Event::Connection(Connection::SessionExpired)) {
            // The server no longer accepts this session: log in again right here (unsent
            // messages wait in the outbox of the account on disk).
            self.screen = Screen::Login(LoginForm {
                server: main.server.clone(),
                username: main.me.username.clone(),
                password: String::new(),
                focus: Field::Password,
                signup: false,
                busy: false,
                error: Some(SESSION_EXPIRED.to_owned()),
            });
            return vec![Command::SignOut];
        }
        main_event(main, event)
    }
}

/// What the login form says when a session ended.
pub const SESSION_EXPIRED: &str = "Your session expired: log in again.";

fn login_key(form: &mut LoginForm, key: KeyEvent) -> Vec<Command> {
    if form.busy {
        return vec![];
    }
    if ctrl(&key, 'n') {
        form.signup = !form.signup;
        form.error = None;
        return vec![];
    }
    let field = match form.focus {
        Field::Server => &mut form.server,
        Field::Username => &mut form.username,
        Field::Password => &mut form.password,
    };
    match key.code {
        KeyCode::Tab | KeyCode::Down => {
            form.focus = match form.focus {
                Field::Server => Field::Username,
                Field::Username => Field::Password,
                Field::Password => Field::Server,
            }
        }
        KeyCode::BackTab | KeyCode::Up => {
            form.focus = match form.focus {
                Field::Server => Field::Password,
                Field::Username => Field::Server,
                Field::Password => Field::Username,
            }
        }
        KeyCode::Backspace => {
            field.pop();
        }
        KeyCode::Char(c) => field.push(c),
        KeyCode::Enter => {
            if form.username.trim().is_empty() || form.password.is_empty() {
                form.error = Some("Enter a username and a password.".to_owned());
                return vec![];
            }
            form.busy = true;
            form.error = None;
            return vec![Command::Login {
                server: form.server.trim().to_owned(),
                username: form.username.trim().to_owned(),
                password: form.password.clone(),
                signup: form.signup,
            }];
        }
        _ => {}
    }
    vec![]
}

impl Main {
    pub fn selected_chat(&self) -> Option<&Chat> {
        self.chats.get(self.selected)
    }

    pub fn open_chat(&self) -> Option<&Chat> {
        self.open
            .and_then(|id| self.chats.iter().find(|c| c.id == id))
    }

    /// Highest sequence shown in a chat.
    fn last_sequence(&self, chat: Uuid) -> i64 {
        self.lines
            .get(&chat)
            .and_then(|l| l.iter().filter_map(|l| l.sequence).max())
            .unwrap_or(0)
    }

    fn upsert(&mut self, chat: Uuid, mut line: Line) {
        if line.mine {
            if line
                .message_id
                .is_some_and(|id| self.early_delivered.remove(&id))
                && rank(&line.mark) < rank(&Mark::Delivered)
            {
                line.mark = Mark::Delivered;
            }
            if let (Some(seq), Some(read)) = (line.sequence, self.peer_read_up_to.get(&chat))
                && seq <= *read
                && rank(&line.mark) >= rank(&Mark::Sent)
            {
                line.mark = Mark::Read;
            }
        }
        let lines = self.lines.entry(chat).or_default();
        let existing = lines.iter_mut().find(|l| {
            (line.message_id.is_some() && l.message_id == line.message_id)
                || (line.temp_id.is_some() && l.temp_id == line.temp_id)
        });
        match existing {
            Some(l) => {
                if line.message_id.is_some() {
                    l.message_id = line.message_id;
                    l.sequence = line.sequence;
                }
                // A later state never goes back (a late "sent" after "delivered").
                if rank(&line.mark) >= rank(&l.mark) {
                    l.mark = line.mark;
                }
                if line.text.is_ok() || l.text.is_err() {
                    l.text = line.text;
                }
            }
            None => lines.push(line),
        }
        lines.sort_by_key(|l| l.sequence.unwrap_or(i64::MAX));
    }

    fn bump(&mut self, chat: Uuid) {
        if let Some(pos) = self.chats.iter().position(|c| c.id == chat) {
            let keep = self.chats.get(self.selected).map(|c| c.id);
            let c = self.chats.remove(pos);
            self.chats.insert(0, c);
            if let Some(id) = keep {
                self.selected = self.chats.iter().position(|c| c.id == id).unwrap_or(0);
            }
        }
    }
}

fn rank(mark: &Mark) -> u8 {
    match mark {
        Mark::Failed(_) | Mark::Sending | Mark::Incoming => 0,
        Mark::Sent => 1,
        Mark::Delivered => 2,
        Mark::Read => 3,
    }
}

fn line_of(r: &Received, me: Uuid) -> Line {
    let mine = r.message.sender == me;
    let mark = if !mine {
        Mark::Incoming
    } else {
        match r.message.delivery_status {
            jibber_proto::api::DeliveryStatus::Sent => Mark::Sent,
            jibber_proto::api::DeliveryStatus::Delivered => Mark::Delivered,
            jibber_proto::api::DeliveryStatus::Read => Mark::Read,
        }
    };
    Line {
        message_id: Some(r.message.id),
        temp_id: Some(r.message.temp_message_id.clone()),
        sequence: Some(r.message.sequence_number),
        mine,
        text: r.text.clone(),
        mark,
    }
}

fn main_key(main: &mut Main, key: KeyEvent) -> Vec<Command> {
    if let Some(overlay) = &mut main.overlay {
        return overlay_key(main_overlay_take(overlay), main, key);
    }
    if ctrl(&key, 'n') {
        main.overlay = Some(Overlay::NewChat {
            query: String::new(),
            results: Vec::new(),
            selected: 0,
            searched: false,
        });
        return vec![Command::Search(String::new())];
    }
    if ctrl(&key, 'k') && main.open.is_some() {
        main.overlay = Some(Overlay::Safety);
        return vec![];
    }
    if ctrl(&key, 'r') {
        // Offline: reconnect now. Retry every failed message of the open chat. Else reload.
        let mut out = Vec::new();
        if matches!(main.connection, Connection::Offline { .. }) {
            out.push(Command::ReconnectNow);
        }
        let failed: Vec<Command> = main
            .open
            .and_then(|c| main.lines.get(&c))
            .map(|lines| {
                lines
                    .iter()
                    .filter(|l| matches!(l.mark, Mark::Failed(_)))
                    .filter_map(|l| l.temp_id.clone().map(Command::Retry))
                    .collect()
            })
            .unwrap_or_default();
        main.notice = None;
        out.extend(failed);
        if out.is_empty() {
            out.push(Command::Refresh);
        }
        return out;
    }
    match (&main.focus, key.code) {
        (_, KeyCode::Tab) => {
            main.focus = if main.focus == Focus::Chats && main.open.is_some() {
                Focus::Input
            } else {
                Focus::Chats
            };
            vec![]
        }
        (Focus::Chats, KeyCode::Char('?')) => {
            main.overlay = Some(Overlay::Help);
            vec![]
        }
        (Focus::Chats, KeyCode::Char('q')) => vec![Command::Quit],
        (Focus::Chats, KeyCode::Up | KeyCode::Char('k')) => {
            main.selected = main.selected.saturating_sub(1);
            vec![]
        }
        (Focus::Chats, KeyCode::Down | KeyCode::Char('j')) => {
            if main.selected + 1 < main.chats.len() {
                main.selected += 1;
            }
            vec![]
        }
        (Focus::Chats, KeyCode::Enter) => match main.selected_chat() {
            Some(c) => {
                let id = c.id;
                main.open = Some(id);
                main.focus = Focus::Input;
                main.scroll = 0;
                if let Some(c) = main.chats.iter_mut().find(|c| c.id == id) {
                    c.unread_count = 0;
                }
                vec![Command::Open(id)]
            }
            None => vec![],
        },
        (Focus::Input, KeyCode::Esc) => {
            main.focus = Focus::Chats;
            stop_typing(main)
        }
        (Focus::Input, KeyCode::PageUp) => {
            main.scroll += 5;
            match main.open {
                Some(chat) if !main.complete.contains(&chat) => {
                    let first = main
                        .lines
                        .get(&chat)
                        .and_then(|l| l.iter().filter_map(|l| l.sequence).min());
                    match first {
                        Some(before) if before > 1 => vec![Command::LoadOlder { chat, before }],
                        _ => vec![],
                    }
                }
                _ => vec![],
            }
        }
        (Focus::Input, KeyCode::PageDown) => {
            main.scroll = main.scroll.saturating_sub(5);
            vec![]
        }
        (Focus::Input, KeyCode::Enter) => {
            let text = main.input.trim().to_owned();
            main.input.clear();
            main.scroll = 0;
            let mut out = stop_typing(main);
            if let (Some(chat), false) = (main.open, text.is_empty()) {
                out.push(Command::Send { chat, text });
            }
            out
        }
        (Focus::Input, KeyCode::Backspace) => {
            main.input.pop();
            vec![]
        }
        (Focus::Input, KeyCode::Char(c)) => {
            main.input.push(c);
            match (main.open, main.typing_sent) {
                (Some(chat), false) => {
                    main.typing_sent = true;
                    vec![Command::Typing { chat, on: true }]
                }
                _ => vec![],
            }
        }
        _ => vec![],
    }
}

fn stop_typing(main: &mut Main) -> Vec<Command> {
    match (main.open, main.typing_sent) {
        (Some(chat), true) => {
            main.typing_sent = false;
            vec![Command::Typing { chat, on: false }]
        }
        _ => vec![],
    }
}

/// Takes the overlay out for handling (it is put back unless closed).
fn main_overlay_take(overlay: &mut Overlay) -> Overlay {
    std::mem::replace(overlay, Overlay::Help)
}

fn overlay_key(mut overlay: Overlay, main: &mut Main, key: KeyEvent) -> Vec<Command> {
    let mut out = vec![];
    let mut close = key.code == KeyCode::Esc;
    if let Overlay::NewChat {
        query,
        results,
        selected,
        ..
    } = &mut overlay
    {
        if ctrl(&key, 'r') {
            // Search again (someone may have signed up since).
            out.push(Command::Search(query.clone()));
            main.overlay = Some(overlay);
            return out;
        }
        match key.code {
            KeyCode::Up => *selected = selected.saturating_sub(1),
            KeyCode::Down if *selected + 1 < results.len() => {
                *selected += 1;
            }
            KeyCode::Backspace => {
                query.pop();
                out.push(Command::Search(query.clone()));
            }
            KeyCode::Char(c) => {
                query.push(c);
                out.push(Command::Search(query.clone()));
            }
            KeyCode::Enter => {
                if let Some(user) = results.get(*selected) {
                    out.push(Command::StartChat(user.id));
                    close = true;
                }
            }
            _ => {}
        }
    } else if matches!(key.code, KeyCode::Enter | KeyCode::Char('q')) {
        close = true;
    }
    main.overlay = (!close).then_some(overlay);
    out
}

fn main_done(main: &mut Main, done: Done) -> Vec<Command> {
    match done {
        Done::Chats(chats) => {
            let keep = main.selected_chat().map(|c| c.id);
            main.chats = chats;
            main.chats_loaded = true;
            main.selected = keep
                .and_then(|id| main.chats.iter().position(|c| c.id == id))
                .unwrap_or(0);
            vec![]
        }
        Done::History {
            chat,
            messages,
            older,
        } => {
            if older && messages.is_empty() {
                main.complete.insert(chat);
            }
            let me = main.me.id;
            for r in &messages {
                main.upsert(chat, line_of(r, me));
            }
            let last = main.last_sequence(chat);
            if main.open == Some(chat) && last > 0 && !older {
                vec![Command::MarkRead { chat, up_to: last }]
            } else {
                vec![]
            }
        }
        Done::Contacts {
            query: asked,
            users,
        } => {
            if let Some(Overlay::NewChat {
                query,
                results,
                selected,
                searched,
            }) = &mut main.overlay
                && *query == asked
            {
                *results = users;
                *selected = 0;
                *searched = true;
            }
            vec![]
        }
        Done::Started(chat) => {
            let id = chat.id;
            if !main.chats.iter().any(|c| c.id == id) {
                main.chats.insert(0, *chat);
            }
            main.selected = main.chats.iter().position(|c| c.id == id).unwrap_or(0);
            main.open = Some(id);
            main.focus = Focus::Input;
            vec![Command::Open(id)]
        }
        Done::Queued {
            chat,
            temp_id,
            text,
        } => {
            main.upsert(
                chat,
                Line {
                    message_id: None,
                    temp_id: Some(temp_id),
                    sequence: None,
                    mine: true,
                    text: Ok(text),
                    mark: Mark::Sending,
                },
            );
            main.bump(chat);
            vec![]
        }
        Done::Failed(e) => {
            main.notice = Some(e);
            vec![]
        }
        Done::LoggedIn(_) | Done::LoginFailed(_) => vec![],
    }
}

fn main_event(main: &mut Main, event: Event) -> Vec<Command> {
    let me = main.me.id;
    match event {
        Event::Connection(c) => {
            let back = c == Connection::Online && main.connection != Connection::Online;
            main.connection = c;
            if back {
                // Back online: the server is the source of truth for the list and the open chat.
                let mut out = vec![Command::Refresh];
                out.extend(main.open.map(Command::Open));
                return out;
            }
        }
        Event::Message(r) => {
            let chat = r.message.chat_id;
            let seq = r.message.sequence_number;
            let from_peer = r.message.sender != me;
            main.typing.remove(&chat);
            main.upsert(chat, line_of(&r, me));
            let known = main.chats.iter_mut().find(|c| c.id == chat);
            match known {
                Some(c) => {
                    c.last_message = Some(r.message.clone());
                    c.last_sequence = c.last_sequence.max(seq);
                    if from_peer && main.open != Some(chat) {
                        c.unread_count += 1;
                    }
                }
                None => return vec![Command::Refresh],
            }
            main.bump(chat);
            if from_peer && main.open == Some(chat) {
                return vec![Command::MarkRead { chat, up_to: seq }];
            }
        }
        Event::State {
            chat_id,
            temp_id,
            state,
        } => {
            let (mark, id, seq) = match state {
                MessageState::Sending => (Mark::Sending, None, None),
                MessageState::Sent {
                    message_id,
                    sequence,
                } => (Mark::Sent, Some(message_id), Some(sequence)),
                MessageState::Failed { code, reason } => {
                    (Mark::Failed(format!("{code}: {reason}")), None, None)
                }
            };
            let text = main
                .lines
                .get(&chat_id)
                .and_then(|l| l.iter().find(|l| l.temp_id.as_deref() == Some(&temp_id)))
                .map(|l| l.text.clone())
                .unwrap_or(Err("(sent from this device)".to_owned()));
            main.upsert(
                chat_id,
                Line {
                    message_id: id,
                    temp_id: Some(temp_id),
                    sequence: seq,
                    mine: true,
                    text,
                    mark,
                },
            );
        }
        Event::Delivered(d) => {
            let loaded = main.lines.contains_key(&d.chat_id);
            match main
                .lines
                .get_mut(&d.chat_id)
                .and_then(|l| l.iter_mut().find(|l| l.message_id == Some(d.message_id)))
            {
                Some(l) if rank(&l.mark) < rank(&Mark::Delivered) => l.mark = Mark::Delivered,
                Some(_) => {}
                // Only a chat on screen can race its own acknowledgement; a chat loaded later
                // gets its marks from the server. Bounded all the same.
                None if loaded => {
                    if main.early_delivered.len() >= 1024 {
                        main.early_delivered.clear();
                    }
                    main.early_delivered.insert(d.message_id);
                }
                None => {}
            }
        }
        Event::Read(r) if r.reader != me => {
            let read = main.peer_read_up_to.entry(r.chat_id).or_insert(0);
            *read = (*read).max(r.up_to_sequence);
            if let Some(lines) = main.lines.get_mut(&r.chat_id) {
                for l in lines
                    .iter_mut()
                    .filter(|l| l.mine && l.sequence.is_some_and(|s| s <= r.up_to_sequence))
                {
                    l.mark = Mark::Read;
                }
            }
        }
        Event::Read(r) => {
            if let Some(c) = main.chats.iter_mut().find(|c| c.id == r.chat_id) {
                c.unread_count = 0;
            }
        }
        Event::Typing(t) if t.user_id != me => {
            if t.is_typing {
                main.typing.insert(t.chat_id, Instant::now());
            } else {
                main.typing.remove(&t.chat_id);
            }
        }
        Event::Presence { user, presence } => match presence {
            Presence::Offline { .. } => {
                main.online.remove(&user);
            }
            Presence::Online | Presence::Back | Presence::Away => {
                main.online.insert(user);
            }
        },
        Event::NewChat(chat) if !main.chats.iter().any(|c| c.id == chat.id) => {
            let keep = main.selected_chat().map(|c| c.id);
            main.chats.insert(0, *chat);
            main.selected = keep
                .and_then(|id| main.chats.iter().position(|c| c.id == id))
                .unwrap_or(0);
        }
        Event::Error(e) => main.notice = Some(format!("{}: {}", e.code, e.message)),
        Event::KeyChanged { user } => {
            let name = main
                .chats
                .iter()
                .find(|c| c.other_user.id == user)
                .map(|c| display(&c.other_user))
                .unwrap_or_else(|| user.to_string());
            main.notice = Some(format!(
                "{name}'s keys changed: compare the safety number again (Ctrl-K)"
            ));
            return vec![Command::Refresh];
        }
        _ => {}
    }
    vec![]
}

/// Typing indicators older than this are stale (the server also stops them).
pub const TYPING_SHOWN: std::time::Duration = std::time::Duration::from_secs(6);

/// Forgets stale typing indicators.
pub fn expire_typing(main: &mut Main) {
    main.typing.retain(|_, at| at.elapsed() < TYPING_SHOWN);
}

/// The plaintext a line shows.
pub fn shown_text(text: &Result<String, String>) -> String {
    match text {
        Ok(t) => t.clone(),
        Err(e) => format!("⚠ cannot decrypt this message ({e})"),
    }
}

/// The text a user is known by.
pub fn display(u: &PublicUser) -> String {
    u.display_name.clone().unwrap_or_else(|| u.username.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jibber_proto::b64::B64;
    use jibber_proto::events::{MessageDelivered, MessageRead};
    use time::OffsetDateTime;

    fn logged_in() -> (App, Uuid) {
        let me = Me {
            id: Uuid::new_v4(),
            username: "tini".to_owned(),
            email: None,
            display_name: None,
            public_id_key: B64(vec![1; 32]),
            public_signing_key: B64(vec![2; 32]),
            created_at: OffsetDateTime::now_utc(),
        };
        let mut app = App::new("http://x".to_owned(), String::new());
        let id = me.id;
        app.done(Done::LoggedIn(Box::new(me)));
        (app, id)
    }

    fn mark_of(app: &App, chat: Uuid, temp: &str) -> Mark {
        let Screen::Main(main) = &app.screen else {
            panic!("not logged in")
        };
        main.lines[&chat]
            .iter()
            .find(|l| l.temp_id.as_deref() == Some(temp))
            .expect("the line")
            .mark
            .clone()
    }

    fn sent(chat: Uuid, temp: &str, message_id: Uuid, sequence: i64) -> Event {
        Event::State {
            chat_id: chat,
            temp_id: temp.to_owned(),
            state: MessageState::Sent {
                message_id,
                sequence,
            },
        }
    }

    /// The peer's receipt can overtake this device's acknowledgement; the mark must not be lost.
    #[test]
    fn receipts_that_overtake_the_acknowledgement_are_kept() {
        let (mut app, me) = logged_in();
        let chat = Uuid::new_v4();
        let peer = Uuid::new_v4();
        for temp in ["t1", "t2"] {
            app.done(Done::Queued {
                chat,
                temp_id: temp.to_owned(),
                text: "hi".to_owned(),
            });
        }
        let (m1, m2) = (Uuid::new_v4(), Uuid::new_v4());

        app.event(Event::Delivered(MessageDelivered {
            message_id: m1,
            chat_id: chat,
            sequence_number: 1,
            delivered_at: OffsetDateTime::now_utc(),
        }));
        assert_eq!(mark_of(&app, chat, "t1"), Mark::Sending);
        app.event(sent(chat, "t1", m1, 1));
        assert_eq!(mark_of(&app, chat, "t1"), Mark::Delivered);

        app.event(Event::Read(MessageRead {
            chat_id: chat,
            up_to_sequence: 2,
            reader: peer,
            read_at: OffsetDateTime::now_utc(),
        }));
        assert_eq!(mark_of(&app, chat, "t2"), Mark::Sending);
        app.event(sent(chat, "t2", m2, 2));
        assert_eq!(mark_of(&app, chat, "t2"), Mark::Read);
        assert_eq!(mark_of(&app, chat, "t1"), Mark::Read);

        // My own read receipt (from another device) marks nothing of mine as read.
        app.done(Done::Queued {
            chat,
            temp_id: "t3".to_owned(),
            text: "more".to_owned(),
        });
        app.event(Event::Read(MessageRead {
            chat_id: chat,
            up_to_sequence: 3,
            reader: me,
            read_at: OffsetDateTime::now_utc(),
        }));
        app.event(sent(chat, "t3", Uuid::new_v4(), 3));
        assert_eq!(mark_of(&app, chat, "t3"), Mark::Sent);
    }
}
