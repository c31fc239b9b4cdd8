//! The resilient client: what applications (the terminal client, the load generator, the tests)
//! use on top of a signed-in [`Session`].
//!
//! - **Connection.** One Socket.IO connection, re-made forever after any loss with exponential
//!   backoff and full jitter (a random delay between `backoff_min` and
//!   `min(backoff_max, backoff_min · 2^attempt)`; 1 s to 30 s by default). The access token is
//!   refreshed before it expires and handed to the live socket (`refreshToken`); a refused
//!   handshake with an expired token refreshes and retries at once. Only a refresh token the
//!   server no longer accepts (unknown, revoked or expired) ends the client
//!   ([`Connection::SessionExpired`]). [`Client::reconnect_now`] cuts a backoff short.
//! - **Sending.** [`Client::send`] seals the text and commits it to the [`Outbox`] before it
//!   returns; a sender task sends the outbox in order whenever the socket is up, and removes an
//!   entry only when the server acknowledged it (after the server's commit). A lost
//!   acknowledgement means sending again with the same `tempMessageId`, which the server stores
//!   once. States: `Sending` → `Sent` → `Delivered` → `Read`, or `Failed` (refused for good;
//!   [`Client::retry`] puts it back in line).
//! - **Receiving and catch-up.** On every connect (and on `syncRequired`) the client walks
//!   `GET /sync` from its cursor (kept in the outbox file). Messages reach the application once
//!   and in sequence order per chat: a message whose predecessor is missing makes the client
//!   fetch the gap first (`GET /messages/{chat}/sync`). A received message is acknowledged
//!   (live) or marked delivered over REST (caught up), which the sender sees as `Delivered`.
//!   A message is shown only once it could be opened or refused for good: when the peer's keys
//!   cannot be read now (the server or the network failed), it is neither shown nor
//!   acknowledged, the connection is re-made, and its catch-up hands the message over again.
//! - **Cache.** Chats and peers' public keys are cached; the server stays the source of truth
//!   ([`Client::chats`] asks it whenever it is reachable).
//! - **Trusted keys.** A contact's keys are trusted when first seen (docs/crypto.md §7.2) and
//!   kept in the outbox file: a directory entry with other keys (from a chat, a profile, or the
//!   re-read after `KEY_MISMATCH`), in this run or a later one, raises [`Event::KeyChanged`];
//!   the earlier pairs stay trusted, so messages sealed before a rotation still verify.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jibber_proto::ErrorCode;
use jibber_proto::api::{Change, Chat, DeliveryStatus, Message, PublicUser, SendMessageResponse};
use jibber_proto::events::{
    self, Ack, EventError, MessageDelivered, MessageRead, OnlineUsers, UserPresence, UserTyping,
};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{Notify, mpsc, watch};
use uuid::Uuid;

use crate::outbox::Outbox;
use crate::sio::{Inbound, SioError, Socket, Transport};
use crate::{ClientError, Session};

/// Events queued for the application before the client waits for it.
const EVENT_QUEUE: usize = 1024;

/// How a client connects and behaves.
#[derive(Debug, Clone)]
pub struct Options {
    pub transport: Transport,
    /// The outbox file (None: in memory, lost with the process).
    pub outbox: Option<PathBuf>,
    pub catch_up: CatchUp,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a request (an event with acknowledgement) may wait.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transport: Transport::WebSocket,
            outbox: None,
            catch_up: CatchUp::Everything,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the first catch-up starts when the outbox file has no cursor yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Everything the account has (history included).
    Everything,
    /// Only what happens from now on (older changes are skipped, not shown).
    FromNow,
}

/// The connection as the application sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting {
        attempt: u32,
    },
    /// Connected and caught up.
    Online,
    Offline {
        reason: String,
        retry_in: Duration,
    },
    /// The server no longer accepts this session: log in again. Nothing more follows.
    SessionExpired,
}

/// Where one of this device's messages stands.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageState {
    /// In the outbox, not yet acknowledged.
    Sending,
    /// Stored by the server.
    Sent { message_id: Uuid, sequence: i64 },
    /// Refused for good; [`Client::retry`] tries again.
    Failed { code: ErrorCode, reason: String },
}

/// Presence of a chat peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Presence {
    Online,
    Offline { last_seen: Option<OffsetDateTime> },
    Away,
    Back,
}

/// A message of one of the user's chats, from the peer or from another device of the user.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Message,
    /// The plaintext, or why it cannot be read (the message is never dropped).
    pub text: Result<String, String>,
    /// True when it came through catch-up rather than live.
    pub caught_up: bool,
}

/// Everything the client tells the application, in order.
#[derive(Debug, Clone)]
pub enum Event {
    Connection(Connection),
    /// Per chat, in sequence order, each message once.
    Message(Box<Received>),
    /// A message sent from this device changed state.
    State {
        chat_id: Uuid,
        temp_id: String,
        state: MessageState,
    },
    /// A message this user sent reached the receiver.
    Delivered(MessageDelivered),
    /// Messages were read (by the peer, or by this user on any device).
    Read(MessageRead),
    Typing(UserTyping),
    Presence {
        user: Uuid,
        presence: Presence,
    },
    /// A chat appeared (started by the peer, or by this user on another device).
    NewChat(Box<Chat>),
    /// The server refused an event (also answered to the request that caused it).
    Error(EventError),
    /// A peer's public keys are not the ones this client trusted (in this run or, with an
    /// outbox file, an earlier one): their safety number changed. (A key rotation, or someone in
    /// the middle: compare it again.)
    KeyChanged {
        user: Uuid,
    },
}

/// Per-chat delivery order: everything up to `applied` reached the application.
#[derive(Debug, Default)]
struct Track {
    applied: i64,
    /// Messages of this device acknowledged beyond `applied` (shown as `Sent`, not again).
    own: BTreeMap<i64, Uuid>,
}

/// What learning a contact's directory entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Learned {
    /// The keys are the current trusted pair already.
    Unchanged,
    /// The first keys seen for this contact (trust on first use).
    FirstSeen,
    /// Other keys than the current trusted pair: the safety number changed.
    Changed,
}

impl Cache {
    fn remember_peer(&mut self, p: &PublicUser) -> Learned {
        let known = self.known_keys.entry(p.id).or_default();
        let same = |k: &PublicUser| {
            k.public_id_key == p.public_id_key && k.public_signing_key == p.public_signing_key
        };
        let learned = match known.first() {
            None => Learned::FirstSeen,
            Some(current) if same(current) => Learned::Unchanged,
            Some(_) => Learned::Changed,
        };
        known.retain(|k| !same(k));
        known.insert(0, p.clone());
        self.peers.insert(p.id, p.clone());
        learned
    }
}

impl Track {
    /// Message `sequence` reached the application (or was settled): `applied` moves to it, and
    /// on over this device's own acknowledged messages that follow.
    fn reach(&mut self, sequence: i64) {
        self.applied = self.applied.max(sequence);
        self.advance();
    }

    /// Moves `applied` over this device's own acknowledged messages that are next.
    fn advance(&mut self) {
        while self.own.remove(&(self.applied + 1)).is_some() {
            self.applied += 1;
        }
    }
}

#[derive(Default)]
struct Cache {
    chats: HashMap<Uuid, Chat>,
    peers: HashMap<Uuid, PublicUser>,
    /// Every key set seen for a peer, current first: messages sent before a rotation still
    /// verify against the keys this client knew then.
    known_keys: HashMap<Uuid, Vec<PublicUser>>,
    tracks: HashMap<Uuid, Track>,
    online: HashSet<Uuid>,
}

struct Shared {
    session: Arc<Session>,
    options: Options,
    outbox: Outbox,
    events: mpsc::Sender<Event>,
    cache: Mutex<Cache>,
    socket: Mutex<Option<Socket>>,
    /// Wakes the sender task (new outbox entry, retry, new connection).
    wake: Notify,
    /// Cuts the wait before the next connection attempt short ([`Client::reconnect_now`]).
    reconnect: Notify,
    stop: watch::Sender<bool>,
    /// The connection loop's task ([`Client::shutdown`] ends it).
    runner: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Shared {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn socket(&self) -> Option<Socket> {
        self.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_socket(&self, socket: Option<Socket>) {
        *self
            .socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = socket;
    }

    async fn emit(&self, event: Event) {
        // The application dropped its stream: nothing to tell.
        let _ = self.events.send(event).await;
    }

    fn me(&self) -> Uuid {
        self.session.user().id
    }

    /// A peer's directory entry (cached; `fresh` asks the server again, after a key change).
    async fn peer(&self, id: Uuid, fresh: bool) -> Result<PublicUser, ClientError> {
        if !fresh && let Some(p) = self.cache().peers.get(&id) {
            return Ok(p.clone());
        }
        let p = self.session.user_profile(id).await?;
        self.learn_peer(&p).await;
        Ok(p)
    }

    /// A contact's directory entry arrived (a chat, or their profile): their keys are compared
    /// with the trusted ones (kept in the outbox file across runs); new trusted keys are saved,
    /// and a change is told to the application.
    async fn learn_peer(&self, p: &PublicUser) {
        let learned = self.cache().remember_peer(p);
        if learned == Learned::Unchanged {
            return;
        }
        if let Err(e) = self.outbox.trust_peer(p).await {
            tracing::warn!(error = %e, "cannot save a contact's keys");
        }
        if learned == Learned::Changed {
            self.emit(Event::KeyChanged { user: p.id }).await;
        }
    }

    async fn remember_chat(&self, chat: &Chat) {
        self.cache().chats.insert(chat.id, chat.clone());
        self.learn_peer(&chat.other_user).await;
    }

    /// The peer's key sets this client knows, current first.
    fn known_keys(&self, id: Uuid) -> Vec<PublicUser> {
        self.cache()
            .known_keys
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// The other member of a chat.
    async fn peer_of_chat(&self, chat: Uuid) -> Result<PublicUser, ClientError> {
        let known = self.cache().chats.get(&chat).map(|c| c.other_user.id);
        match known {
            Some(id) => self.peer(id, false).await,
            None => {
                let chats = self.session.chats_all().await?;
                for c in &chats {
                    self.remember_chat(c).await;
                }
                let id = chats
                    .iter()
                    .find(|c| c.id == chat)
                    .map(|c| c.other_user.id)
                    .ok_or_else(|| {
                        ClientError::Protocol(format!("chat {chat} is not one of this user's"))
                    })?;
                self.peer(id, false).await
            }
        }
    }

    /// Opens a message; a key mismatch re-reads the peer's keys once (they may have rotated).
    /// `Ok(Err(reason))`: the message cannot be opened (a bad signature, unknown keys), for good.
    /// `Err`: the peer's keys could not be read now (the server or the network failed; see
    /// [`ClientError::is_transient`]): trying again later can succeed.
    async fn open(&self, m: &Message) -> Result<Result<String, String>, ClientError> {
        let peer_id = if m.sender == self.me() {
            m.receiver
        } else {
            m.sender
        };
        let peer = |fresh| async move {
            match self.peer(peer_id, fresh).await {
                Ok(p) => Ok(Ok(p)),
                Err(e) if e.is_transient() => Err(e),
                Err(e) => Ok(Err(e.to_string())),
            }
        };
        if let Err(reason) = peer(false).await? {
            return Ok(Err(reason));
        }
        match self.session.decrypt_known(m, &self.known_keys(peer_id)) {
            // The keys may have changed: read them again (a change is told to the application).
            Err(ClientError::Crypto { source }) if source.code() == "KEY_MISMATCH" => {
                Ok(match peer(true).await? {
                    Ok(peer) => self
                        .session
                        .decrypt_known(m, &self.known_keys(peer.id))
                        .map_err(|e| e.to_string()),
                    Err(reason) => Err(reason),
                })
            }
            other => Ok(other.map_err(|e| e.to_string())),
        }
    }

    /// [`Shared::open`] for display: a failure to reach the server is a reason too.
    async fn decrypt(&self, m: &Message) -> Result<String, String> {
        self.open(m).await.unwrap_or_else(|e| Err(e.to_string()))
    }

    /// Hands messages of one chat to the application in order, once each; fetches a gap first.
    async fn deliver(&self, messages: Vec<Message>, caught_up: bool) -> Result<(), ClientError> {
        for m in messages {
            let chat = m.chat_id;
            let applied = self.cache().tracks.entry(chat).or_default().applied;
            if m.sequence_number <= applied {
                continue;
            }
            if m.sequence_number > applied + 1 {
                // A gap: fetch from the last applied message on (this one included), in pages.
                let mut since = applied;
                loop {
                    let page = self.session.messages_since(chat, since).await?;
                    let Some(last) = page.last().map(|m| m.sequence_number) else {
                        break;
                    };
                    for fetched in page {
                        self.apply(fetched, true).await?;
                    }
                    if last >= m.sequence_number {
                        break;
                    }
                    since = last;
                }
                // If the server had nothing more, the message itself still comes next.
            }
            self.apply(m, caught_up).await?;
        }
        Ok(())
    }

    /// Applies one message if it is the next of its chat.
    ///
    /// A message whose peer's keys cannot be read now (the server went away between handing
    /// it over and this read) is not applied: the error ends the connection, and the catch-up
    /// after the reconnect hands it over again (it stays on the server, unacknowledged). Showing
    /// it as unreadable instead would lose a good message for good.
    async fn apply(&self, m: Message, caught_up: bool) -> Result<(), ClientError> {
        let chat = m.chat_id;
        let own_here = {
            let mut cache = self.cache();
            let track = cache.tracks.entry(chat).or_default();
            if m.sequence_number != track.applied + 1 {
                return Ok(());
            }
            let own_here = track.own.remove(&m.sequence_number).is_some();
            if own_here {
                track.reach(m.sequence_number);
            }
            own_here
        };
        if own_here {
            self.save_applied(chat).await;
            return Ok(());
        }
        // This device's own message whose acknowledgement was lost (the connection broke after
        // the server stored it): seeing it stored is the acknowledgement, not a new message.
        let text = if m.sender == self.me()
            && self
                .settle(m.chat_id, &m.temp_message_id, m.id, m.sequence_number)
                .await
        {
            None
        } else {
            Some(self.open(&m).await?)
        };
        self.cache()
            .tracks
            .entry(chat)
            .or_default()
            .reach(m.sequence_number);
        if let Some(text) = text {
            self.emit(Event::Message(Box::new(Received {
                message: m,
                text,
                caught_up,
            })))
            .await;
        }
        self.save_applied(chat).await;
        Ok(())
    }

    /// Keeps how far a chat reached the application in the outbox file: a restarted client
    /// goes on from there instead of showing the chat again. (Saved after the hand-over: a
    /// crash in between shows a message twice, never loses it.)
    async fn save_applied(&self, chat: Uuid) {
        let applied = self.cache().tracks.get(&chat).map_or(0, |t| t.applied);
        if let Err(e) = self.outbox.set_applied(chat, applied).await {
            tracing::warn!(error = %e, "cannot save the chat's position");
        }
    }

    /// An outbox entry is stored on the server: removes it and tells the application `Sent`,
    /// once, whichever comes first of its acknowledgement, its `messageSent` and its appearance
    /// in a catch-up. False when the entry was not (or no longer) in the outbox.
    ///
    /// Both steps run in a task of their own, awaited here: the caller may be cut off between
    /// them (a lost connection aborts the task that reads the socket, as a server killed right
    /// after `messageSent` does), and an entry gone from the outbox whose `Sent` was never told
    /// would be lost to the application for good (its file no longer holds it to resend).
    async fn settle(&self, chat_id: Uuid, temp_id: &str, message_id: Uuid, sequence: i64) -> bool {
        let (outbox, events, temp_id) =
            (self.outbox.clone(), self.events.clone(), temp_id.to_owned());
        let settle = tokio::spawn(async move {
            if !matches!(outbox.remove(&temp_id).await, Ok(true)) {
                return false;
            }
            // The application dropped its stream: nothing to tell.
            let _ = events
                .send(Event::State {
                    chat_id,
                    temp_id,
                    state: MessageState::Sent {
                        message_id,
                        sequence,
                    },
                })
                .await;
            true
        });
        settle.await.unwrap_or(false)
    }

    /// Records that the server stored a message of this device.
    fn own_stored(&self, ack: &SendMessageResponse) {
        let mut cache = self.cache();
        let track = cache.tracks.entry(ack.chat_id).or_default();
        if ack.sequence_number == track.applied + 1 {
            track.applied = ack.sequence_number;
            track.advance();
        } else if ack.sequence_number > track.applied {
            track.own.insert(ack.sequence_number, ack.message_id);
        }
    }

    /// Walks `/sync` from the saved cursor. `quiet`: only move the cursor and the order tracks.
    async fn catch_up(&self, quiet: bool) -> Result<(), ClientError> {
        let mut cursor = self.outbox.cursor().await?;
        loop {
            let page = self.session.sync(cursor).await?;
            let mut to_mark = Vec::new();
            for change in page.changes {
                match change {
                    Change::Chat { chat, .. } => {
                        self.remember_chat(&chat).await;
                        if !quiet {
                            self.emit(Event::NewChat(chat)).await;
                        }
                    }
                    Change::Message { message, .. } if quiet => {
                        {
                            let mut cache = self.cache();
                            let track = cache.tracks.entry(message.chat_id).or_default();
                            track.applied = track.applied.max(message.sequence_number);
                        }
                        self.save_applied(message.chat_id).await;
                    }
                    Change::Message { message, .. } => {
                        if message.receiver == self.me()
                            && message.delivery_status == DeliveryStatus::Sent
                        {
                            to_mark.push(message.id);
                        }
                        self.deliver(vec![*message], true).await?;
                    }
                    Change::Delivered {
                        chat_id,
                        message_id,
                        sequence_number,
                        delivered_at,
                        ..
                    } if !quiet => {
                        self.emit(Event::Delivered(MessageDelivered {
                            message_id,
                            chat_id,
                            sequence_number,
                            delivered_at,
                        }))
                        .await;
                    }
                    Change::Read {
                        chat_id,
                        reader,
                        up_to_sequence,
                        read_at,
                        ..
                    } if !quiet => {
                        self.emit(Event::Read(MessageRead {
                            chat_id,
                            up_to_sequence,
                            reader,
                            read_at,
                        }))
                        .await;
                    }
                    _ => {}
                }
            }
            for id in to_mark {
                self.session.mark_delivered(id).await?;
            }
            cursor = page.next_cursor;
            self.outbox.set_cursor(cursor).await?;
            if !page.has_more {
                return Ok(());
            }
        }
    }

    /// Sends the outbox in order while the socket is up.
    async fn send_outbox(self: &Arc<Self>, socket: &Socket) {
        loop {
            let woken = self.wake.notified();
            let pending = match self.outbox.pending().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox");
                    Vec::new()
                }
            };
            for entry in pending {
                loop {
                    let answer: Result<Ack<SendMessageResponse>, SioError> = socket
                        .request(
                            events::SEND_MESSAGE,
                            &entry.body,
                            self.options.request_timeout,
                        )
                        .await;
                    match answer {
                        Ok(Ack {
                            ok: true,
                            data: Some(ack),
                            ..
                        }) => {
                            // A lost connection aborts this task; once the entry leaves the
                            // outbox, `Sent` must still be told: both run in a task of their own.
                            let shared = self.clone();
                            let (chat_id, temp_id) = (entry.chat_id, entry.temp_id.clone());
                            let settle = tokio::spawn(async move {
                                shared.own_stored(&ack);
                                shared.save_applied(chat_id).await;
                                shared
                                    .settle(chat_id, &temp_id, ack.message_id, ack.sequence_number)
                                    .await;
                            });
                            let _ = settle.await;
                            break;
                        }
                        Ok(Ack {
                            error: Some(error), ..
                        }) if is_transient(error.code) => {
                            let wait = error
                                .retry_after_ms
                                .map_or(self.options.backoff_min, Duration::from_millis);
                            tokio::time::sleep(wait).await;
                        }
                        Ok(ack) => {
                            let (code, reason) = ack.error.map_or(
                                (ErrorCode::Internal, "unreadable answer".to_owned()),
                                |e| (e.code, e.message),
                            );
                            let _ = self.outbox.fail(&entry.temp_id, code, &reason).await;
                            self.emit(Event::State {
                                chat_id: entry.chat_id,
                                temp_id: entry.temp_id.clone(),
                                state: MessageState::Failed { code, reason },
                            })
                            .await;
                            break;
                        }
                        // No answer in time: the same tempMessageId again is safe.
                        Err(SioError::Timeout(_)) => {}
                        Err(_) => return,
                    }
                }
            }
            woken.await;
        }
    }
}

fn is_transient(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::ServiceUnavailable
    )
}

/// A full-jitter backoff delay for the `attempt`-th retry (0 = first).
pub fn backoff_delay(min: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = min
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(max)
        .max(min);
    let span = cap.as_millis() as u64 - min.as_millis() as u64;
    min + Duration::from_millis(rand::thread_rng().gen_range(0..=span))
}

/// The application's handle on a running client.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("user", &self.shared.me())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the client (connects in the background); events arrive on the returned stream.
    pub async fn start(
        session: Session,
        options: Options,
    ) -> Result<(Client, mpsc::Receiver<Event>), ClientError> {
        let outbox = match &options.outbox {
            Some(path) => Outbox::open(path).await?,
            None => Outbox::in_memory().await?,
        };
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            session: Arc::new(session),
            options,
            outbox,
            events: tx,
            cache: Mutex::default(),
            socket: Mutex::default(),
            wake: Notify::new(),
            reconnect: Notify::new(),
            stop,
            runner: Mutex::default(),
        });
        // The contacts' keys trusted in earlier runs (newest first: the current pair first).
        for p in shared.outbox.trusted_peers().await? {
            shared.cache().known_keys.entry(p.id).or_default().push(p);
        }
        // Each chat goes on from where an earlier run handed it to the application.
        for (chat, applied) in shared.outbox.applied().await? {
            shared.cache().tracks.entry(chat).or_default().applied = applied;
        }
        // Messages still in the outbox from an earlier run show as sending.
        for entry in shared.outbox.entries().await? {
            let state = match entry.failed {
                Some((code, reason)) => MessageState::Failed { code, reason },
                None => MessageState::Sending,
            };
            shared
                .emit(Event::State {
                    chat_id: entry.chat_id,
                    temp_id: entry.temp_id,
                    state,
                })
                .await;
        }
        let runner = tokio::spawn(run(shared.clone()));
        *shared
            .runner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(runner);
        Ok((Client { shared }, rx))
    }

    pub fn session(&self) -> &Session {
        &self.shared.session
    }

    pub fn me(&self) -> Uuid {
        self.shared.me()
    }

    pub fn is_online(&self) -> bool {
        self.shared.socket().is_some_and(|s| s.is_open())
    }

    /// Seals `text` for the chat and puts it in the outbox; returns its `tempMessageId`. The
    /// message is safe on disk when this returns, and goes out as soon as the socket is up.
    pub async fn send(&self, chat: Uuid, text: &str) -> Result<String, ClientError> {
        let peer = self.shared.peer_of_chat(chat).await?;
        let temp_id = Uuid::now_v7().to_string();
        let body = self.shared.session.seal_text(chat, &peer, text, &temp_id)?;
        let now = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        self.shared.outbox.push(&temp_id, chat, &body, now).await?;
        self.shared
            .emit(Event::State {
                chat_id: chat,
                temp_id: temp_id.clone(),
                state: MessageState::Sending,
            })
            .await;
        self.shared.wake.notify_one();
        Ok(temp_id)
    }

    /// Cuts the wait before the next connection attempt short: when offline, reconnects now
    /// instead of at the end of the backoff (a user's "retry now"). Does nothing while
    /// connected; during a connection attempt, the next attempt (should this one fail) starts
    /// at once.
    pub fn reconnect_now(&self) {
        self.shared.reconnect.notify_one();
    }

    /// Puts a failed message back in line (its state goes back to `Sending` first); false
    /// when no failed message has this `tempMessageId`.
    pub async fn retry(&self, temp_id: &str) -> Result<bool, ClientError> {
        let failed = self
            .shared
            .outbox
            .entries()
            .await?
            .into_iter()
            .find(|e| e.temp_id == temp_id && e.failed.is_some());
        let Some(entry) = failed else {
            return Ok(false);
        };
        // Told before the entry is back in line: its `Sent` can only come after.
        self.shared
            .emit(Event::State {
                chat_id: entry.chat_id,
                temp_id: entry.temp_id,
                state: MessageState::Sending,
            })
            .await;
        let again = self.shared.outbox.retry(temp_id).await?;
        if again {
            self.shared.wake.notify_one();
        }
        Ok(again)
    }

    /// Messages not yet acknowledged (including failed ones).
    pub async fn unsent(&self) -> Result<Vec<crate::outbox::Entry>, ClientError> {
        self.shared.outbox.entries().await
    }

    /// The chat with `user` (created if absent).
    pub async fn open_chat(&self, user: Uuid) -> Result<Chat, ClientError> {
        let chat = self.shared.session.open_chat(user).await?;
        self.shared.remember_chat(&chat).await;
        Ok(chat)
    }

    /// The user's chats, most recent first: from the server when reachable, else the cache.
    pub async fn chats(&self) -> Result<Vec<Chat>, ClientError> {
        match self.shared.session.chats_all().await {
            Ok(chats) => {
                for c in &chats {
                    self.shared.remember_chat(c).await;
                }
                Ok(chats)
            }
            Err(e) if e.is_transient() => {
                let mut chats: Vec<Chat> = self.shared.cache().chats.values().cloned().collect();
                chats.sort_by_key(|c| std::cmp::Reverse(c.updated_at));
                Ok(chats)
            }
            Err(e) => Err(e),
        }
    }

    /// Chat peers known to be online now.
    pub fn online(&self) -> HashSet<Uuid> {
        self.shared.cache().online.clone()
    }

    /// A page of history ending before sequence `before` (None: the newest), decrypted.
    pub async fn history(
        &self,
        chat: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Received>, ClientError> {
        let page = self.shared.session.history(chat, before, limit).await?;
        let mut out = Vec::with_capacity(page.len());
        for m in page {
            let text = self.shared.decrypt(&m).await;
            out.push(Received {
                message: m,
                text,
                caught_up: true,
            });
        }
        Ok(out)
    }

    /// Decrypts a message of one of the user's chats.
    pub async fn decrypt(&self, message: &Message) -> Result<String, String> {
        self.shared.decrypt(message).await
    }

    /// Marks a chat read up to a sequence (over the socket when it is up, else REST).
    pub async fn mark_read(&self, chat: Uuid, up_to: i64) -> Result<(), ClientError> {
        let body = json!({ "chatId": chat, "upToSequence": up_to });
        match self.shared.socket() {
            Some(s) => self
                .request::<serde_json::Value>(&s, events::MARK_READ, &body)
                .await
                .map(|_| ()),
            None => self.shared.session.mark_read(chat, up_to).await.map(|_| ()),
        }
    }

    /// Tells the server which chat this device shows (None: none), so its messages do not
    /// count as unread.
    pub async fn set_active_chat(&self, chat: Option<Uuid>) -> Result<(), ClientError> {
        let id = chat.map(|c| c.to_string()).unwrap_or_default();
        let socket = self
            .shared
            .socket()
            .ok_or(ClientError::Socket(SioError::Closed))?;
        self.request::<serde_json::Value>(
            &socket,
            events::SET_ACTIVE_CHAT,
            &json!({ "activeChatId": id }),
        )
        .await
        .map(|_| ())
    }

    /// The typing indicator (best effort: nothing happens offline).
    pub async fn typing(&self, chat: Uuid, is_typing: bool) {
        if let Some(s) = self.shared.socket() {
            let _ = s
                .emit(
                    events::TYPING,
                    &json!({ "chatId": chat, "isTyping": is_typing }),
                )
                .await;
        }
    }

    /// Away or back (presence for chat peers).
    pub async fn set_away(&self, away: bool) {
        if let Some(s) = self.shared.socket() {
            let event = if away {
                events::USER_AWAY
            } else {
                events::USER_BACK
            };
            let _ = s.emit(event, &json!({})).await;
        }
    }

    async fn request<R: DeserializeOwned>(
        &self,
        socket: &Socket,
        event: &str,
        body: &serde_json::Value,
    ) -> Result<R, ClientError> {
        let ack: Ack<R> = socket
            .request(event, body, self.shared.options.request_timeout)
            .await?;
        match (ack.ok, ack.data, ack.error) {
            (true, Some(data), _) => Ok(data),
            (_, _, Some(e)) => Err(ClientError::Event(e)),
            _ => Err(ClientError::Protocol(format!(
                "{event}: empty acknowledgement"
            ))),
        }
    }

    /// Stops the client: closes the socket and the outbox file. Unsent messages stay there.
    pub async fn shutdown(self) {
        let _ = self.shared.stop.send(true);
        // Wait for the connection loop to end (it closes its socket): nothing more reaches
        // the application or the outbox file once this returns. (A catch-up was otherwise still
        // handing messages over after the file closed, their positions no longer saved.) A loop
        // stuck on an application that stopped reading its events is cut short.
        let runner = self
            .shared
            .runner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut runner) = runner
            && tokio::time::timeout(self.shared.options.request_timeout, &mut runner)
                .await
                .is_err()
        {
            runner.abort();
            let _ = runner.await;
        }
        if let Some(s) = self.shared.socket() {
            s.close().await;
        }
        self.shared.set_socket(None);
        self.shared.outbox.close().await;
    }
}

/// The connection loop: connect, run, reconnect forever with backoff.
async fn run(shared: Arc<Shared>) {
    let mut stop = shared.stop.subscribe();
    let mut attempt: u32 = 0;
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        shared
            .emit(Event::Connection(Connection::Connecting { attempt }))
            .await;
        let reason = match connect(&shared).await {
            Ok((socket, inbound)) => {
                attempt = 0;
                // A "retry now" from before this connection is spent: it does not cut the wait
                // after a later loss short.
                let _ = futures_util::FutureExt::now_or_never(shared.reconnect.notified());
                let quiet = first
                    && shared.options.catch_up == CatchUp::FromNow
                    && shared.outbox.cursor().await.unwrap_or(0) == 0;
                first = false;
                let reason = tokio::select! {
                    r = connected(&shared, &socket, inbound, quiet) => r,
                    _ = stop.changed() => "stopped".to_owned(),
                };
                shared.set_socket(None);
                socket.close().await;
                reason
            }
            Err(Stop::Expired) => {
                shared
                    .emit(Event::Connection(Connection::SessionExpired))
                    .await;
                return;
            }
            Err(Stop::Retry(reason)) => reason,
        };
        if *stop.borrow() {
            return;
        }
        let delay = backoff_delay(
            shared.options.backoff_min,
            shared.options.backoff_max,
            attempt,
        );
        attempt = attempt.saturating_add(1);
        shared
            .emit(Event::Connection(Connection::Offline {
                reason,
                retry_in: delay,
            }))
            .await;
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.reconnect.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

enum Stop {
    Expired,
    Retry(String),
}

/// Whether a failed token refresh means the session is over (the refresh token is unknown,
/// revoked or expired), rather than a server or network problem that passes.
fn session_gone(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::InvalidToken | ErrorCode::Unauthenticated | ErrorCode::TokenExpired)
    )
}

/// One handshake; a refusal for an expired token refreshes and tries once more.
async fn connect(shared: &Shared) -> Result<(Socket, mpsc::Receiver<Inbound>), Stop> {
    for fresh in [false, true] {
        let token = if fresh {
            shared.session.refresh().await
        } else {
            shared.session.access_token().await
        };
        let token = match token {
            Ok(t) => t,
            Err(e) if session_gone(&e) => return Err(Stop::Expired),
            Err(e) => return Err(Stop::Retry(e.to_string())),
        };
        match Socket::connect(
            shared.session.base(),
            shared.options.transport,
            &json!({ "token": token }),
            shared.options.connect_timeout,
        )
        .await
        {
            Ok(ok) => return Ok(ok),
            Err(SioError::Refused {
                code: Some(ErrorCode::TokenExpired | ErrorCode::InvalidToken),
                ..
            }) if !fresh => continue,
            Err(e) => return Err(Stop::Retry(e.to_string())),
        }
    }
    Err(Stop::Retry("the server refused a fresh token".to_owned()))
}

/// Runs one connection until it ends; returns why it ended.
async fn connected(
    shared: &Arc<Shared>,
    socket: &Socket,
    mut inbound: mpsc::Receiver<Inbound>,
    quiet: bool,
) -> String {
    if let Err(e) = shared.catch_up(quiet).await {
        return format!("catch-up failed: {e}");
    }
    shared.set_socket(Some(socket.clone()));
    shared.emit(Event::Connection(Connection::Online)).await;
    // Aborted when the connection ends, also when this future is dropped (a shutdown).
    let _sender = AbortOnDrop({
        let shared = shared.clone();
        let socket = socket.clone();
        tokio::spawn(async move { shared.send_outbox(&socket).await })
    });
    let _refresher = AbortOnDrop(tokio::spawn(keep_authorised(
        shared.clone(),
        socket.clone(),
    )));
    loop {
        let Some(next) = inbound.recv().await else {
            break "connection ended".to_owned();
        };
        let (name, data, ack) = match next {
            Inbound::Closed { reason } => break reason,
            Inbound::Event { name, data, ack } => (name, data, ack),
        };
        match handle(shared, &name, data).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Reconnect(reason)) => break reason,
            Err(e) => break format!("{name}: {e}"),
        }
        // Acknowledging `receivedMessage` marks it delivered: only once it was handled.
        if let Some(ack) = ack {
            ack.send(&json!({ "ok": true })).await;
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Flow {
    Continue,
    Reconnect(String),
}

fn decode<T: DeserializeOwned>(name: &str, data: serde_json::Value) -> Result<T, ClientError> {
    serde_json::from_value(data).map_err(|e| ClientError::Protocol(format!("{name}: {e}")))
}

/// One server event.
async fn handle(shared: &Shared, name: &str, data: serde_json::Value) -> Result<Flow, ClientError> {
    let presence = |user: Uuid, presence: Presence| Event::Presence { user, presence };
    match name {
        events::RECEIVED_MESSAGE => {
            let m: Message = decode(name, data)?;
            shared.deliver(vec![m], false).await?;
        }
        // The server tells every device of the sender, before the receiver gets the message: for
        // a message of this device it settles the outbox entry here, in order with the events,
        // so its `Sent` always comes before its `Delivered` and `Read` (the acknowledgement,
        // handled in a task of its own, may come later; whichever is first settles, once).
        events::MESSAGE_SENT => {
            let ack: SendMessageResponse = decode(name, data)?;
            if shared
                .settle(
                    ack.chat_id,
                    &ack.temp_message_id,
                    ack.message_id,
                    ack.sequence_number,
                )
                .await
            {
                shared.own_stored(&ack);
                shared.save_applied(ack.chat_id).await;
            }
        }
        events::MESSAGE_DELIVERED => {
            shared.emit(Event::Delivered(decode(name, data)?)).await;
        }
        events::MESSAGE_READ => shared.emit(Event::Read(decode(name, data)?)).await,
        events::USER_TYPING => shared.emit(Event::Typing(decode(name, data)?)).await,
        events::NEW_CONVERSATION => {
            let chat: Chat = decode(name, data)?;
            shared.remember_chat(&chat).await;
            shared.emit(Event::NewChat(Box::new(chat))).await;
        }
        events::ONLINE_USERS => {
            let users: OnlineUsers = decode(name, data)?;
            shared.cache().online = users.user_ids.iter().copied().collect();
            for user in users.user_ids {
                shared.emit(presence(user, Presence::Online)).await;
            }
        }
        events::USER_ONLINE | events::USER_OFFLINE | events::USER_AWAY | events::USER_BACK => {
            let p: UserPresence = decode(name, data)?;
            let state = match name {
                events::USER_ONLINE => Presence::Online,
                events::USER_OFFLINE => Presence::Offline {
                    last_seen: p.last_seen,
                },
                events::USER_AWAY => Presence::Away,
                _ => Presence::Back,
            };
            {
                let mut cache = shared.cache();
                if matches!(state, Presence::Offline { .. }) {
                    cache.online.remove(&p.user_id);
                } else {
                    cache.online.insert(p.user_id);
                }
            }
            shared.emit(presence(p.user_id, state)).await;
        }
        events::SYNC_REQUIRED => shared.catch_up(false).await?,
        events::SERVER_SHUTDOWN => {
            return Ok(Flow::Reconnect("the server is shutting down".to_owned()));
        }
        events::SESSION_EXPIRED => {
            return Ok(Flow::Reconnect("the socket's session expired".to_owned()));
        }
        events::ERROR => shared.emit(Event::Error(decode(name, data)?)).await,
        // messageSent repeats the acknowledgement this device already handled; other devices'
        // messages arrive as receivedMessage. Unknown events are ignored (forward compatibility).
        _ => {}
    }
    Ok(Flow::Continue)
}

/// Refreshes the access token before it runs out and hands it to the live socket (unless the
/// session refreshes only when told it expired: then the server ends the socket at expiry and
/// the next handshake, refused, refreshes).
async fn keep_authorised(shared: Arc<Shared>, socket: Socket) {
    loop {
        if !shared.session.refreshes_ahead() {
            return;
        }
        tokio::time::sleep(shared.session.refresh_due_in()).await;
        let token = match shared.session.refresh().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "token refresh failed");
                // The server ends the socket at expiry; the connection loop takes over.
                return;
            }
        };
        let answer: Result<Ack<serde_json::Value>, SioError> = socket
            .request(
                events::REFRESH_TOKEN,
                &json!({ "token": token }),
                shared.options.request_timeout,
            )
            .await;
        if let Ok(Ack {
            ok: false, error, ..
        }) = &answer
        {
            tracing::warn!(?error, "the server refused the refreshed token");
        }
        if answer.is_err() {
            return;
        }
    }
}
