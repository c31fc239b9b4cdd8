//! The storage seam of Jibber.
//!
//! Handlers talk to a [`Store`]; each backend (`jibber-store-sqlite`, `jibber-store-postgres`)
//! lives in its own crate with its own migrations. Everything above this trait is
//! backend-agnostic.
//!
//! Guarantees every backend must keep (the shared suite in the `testsuite` module, which each
//! backend's `tests/suite.rs` runs, checks them):
//! - a chat's sequence numbers start at 1 and have no gap or duplicate, assigned in the database
//!   inside the transaction that stores the message;
//! - `(sender, tempMessageId)` is unique: a repeated send returns the first message;
//! - unread counts change in the same transaction as the messages they count;
//! - every chat-scoped call takes the acting user and answers [`StoreError::NotFound`] when that
//!   user is not a member, so no handler can forget the check;
//! - refresh tokens are stored only as hashes; reusing a spent one revokes its family.

use async_trait::async_trait;
use jibber_proto::api::{Change, Chat, DeliveredReceipt, Message, PublicUser, ReadReceipt};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod batch;
#[cfg(feature = "bench")]
pub mod benchkit;
pub mod feed;
#[cfg(feature = "testsuite")]
pub mod testsuite;
pub mod util;

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (a taken username). The string names what.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// Not there, or not visible to the acting user.
    #[error("not found")]
    NotFound,
    /// The message names a receiver that is not the other member of the chat.
    #[error("receiver is not the other member of the chat")]
    WrongReceiver,
    /// The database is unreachable or overloaded (pool timeout, connection refused).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the backend reported. The text is for logs only.
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A send queued by [`Store::queue_message`]: awaiting it gives the answer once it is committed.
pub type QueuedSend = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Sent>> + Send>>;

/// A stored account.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// `ServerRegistration::serialize()` of opaque-ke, as it is.
    pub registration_record: Vec<u8>,
    pub public_id_key: Vec<u8>,
    pub public_signing_key: Vec<u8>,
    /// The user's private keys sealed by the client; the server cannot open it.
    pub key_bundle: Vec<u8>,
    pub created_at: OffsetDateTime,
    pub last_seen: Option<OffsetDateTime>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only identifiers: no e-mail, no key material.
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl UserRecord {
    pub fn public(&self) -> PublicUser {
        PublicUser {
            id: self.id,
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            public_id_key: self.public_id_key.clone().into(),
            public_signing_key: self.public_signing_key.clone().into(),
            last_seen: self.last_seen,
        }
    }
}

/// A new account, validated by the caller.
#[derive(Clone)]
pub struct NewUser {
    pub id: Uuid,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub registration_record: Vec<u8>,
    pub public_id_key: Vec<u8>,
    pub public_signing_key: Vec<u8>,
    pub key_bundle: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// An OPAQUE login between its two steps.
#[derive(Clone)]
pub struct PendingLogin {
    pub id: Uuid,
    /// None when the username is unknown: the login then fails at the finish, like a wrong
    /// password.
    pub user_id: Option<Uuid>,
    /// `ServerLogin::serialize()`.
    pub state: Vec<u8>,
    pub expires_at: OffsetDateTime,
}

/// A refresh token to store. Only its SHA-256 hash is kept.
#[derive(Clone)]
pub struct NewRefreshToken {
    pub id: Uuid,
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub token_hash: [u8; 32],
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshCheck {
    /// Live: the user and the family it belongs to.
    Valid {
        user_id: Uuid,
        family_id: Uuid,
    },
    /// Already spent or revoked. When rotating, the whole family has now been revoked.
    Reused {
        user_id: Uuid,
    },
    Expired,
    Unknown,
}

/// A message to store. The sender comes from the token, never from the body.
#[derive(Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub sender: Uuid,
    pub receiver: Uuid,
    pub cipher: Vec<u8>,
    pub iv: Vec<u8>,
    pub signature: Vec<u8>,
    pub sender_public_id_key: Vec<u8>,
    pub sender_public_signing_key: Vec<u8>,
    pub receiver_public_id_key: Vec<u8>,
    pub client_timestamp: OffsetDateTime,
    pub temp_message_id: String,
    pub created_at: OffsetDateTime,
}

impl NewMessage {
    /// The message as stored with `sequence`: status `sent`, times to the millisecond (as both
    /// backends keep them, so the acknowledgement equals what is read back later).
    pub fn stored(self, sequence: i64) -> Message {
        let ms = |t| util::from_ms(util::to_ms(t));
        Message {
            id: self.id,
            chat_id: self.chat_id,
            sender: self.sender,
            receiver: self.receiver,
            cipher: self.cipher.into(),
            iv: self.iv.into(),
            signature: self.signature.into(),
            sender_public_id_key: self.sender_public_id_key.into(),
            sender_public_signing_key: self.sender_public_signing_key.into(),
            receiver_public_id_key: self.receiver_public_id_key.into(),
            sequence_number: sequence,
            delivery_status: jibber_proto::api::DeliveryStatus::Sent,
            client_timestamp: ms(self.client_timestamp),
            temp_message_id: self.temp_message_id,
            created_at: ms(self.created_at),
            delivered_at: None,
            read_at: None,
        }
    }
}

/// The outcome of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message: Message,
    /// True when `(sender, tempMessageId)` had been stored before: nothing new was written.
    pub duplicate: bool,
}

/// Position in a user's chat list (most recent activity first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatCursor {
    pub activity_ms: i64,
    pub chat_id: Uuid,
}

/// The result of creating or fetching a 1:1 chat.
#[derive(Debug, Clone)]
pub struct ChatForUser {
    /// The chat as the acting user sees it.
    pub chat: Chat,
    /// True when this call created it.
    pub created: bool,
}

/// Jibber's storage. Every backend implements all of it with the same guarantees.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name of the backend ("sqlite", "postgres").
    fn backend(&self) -> &'static str;

    /// A round trip to the database.
    async fn ping(&self) -> Result<()>;

    /// Closes the store's connections, waiting for those in use to be returned. Called once at
    /// shutdown; the store must not be used afterwards.
    async fn close(&self) {}

    // ------------------------------------------------------------ users

    /// Creates an account; [`StoreError::Conflict`] when the username is taken (any case).
    async fn create_user(&self, user: NewUser) -> Result<UserRecord>;
    /// Looks a user up by username, case-insensitively.
    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>>;
    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>>;
    /// Every account, by username, for operators (`jibber users list`).
    async fn list_users(&self, limit: u32, offset: u64) -> Result<Vec<UserRecord>>;
    /// Replaces the user's public keys and sealed key bundle.
    async fn rotate_keys(
        &self,
        user: Uuid,
        public_id_key: Vec<u8>,
        public_signing_key: Vec<u8>,
        key_bundle: Vec<u8>,
    ) -> Result<()>;
    /// Other users by username, after `after` (a lower-cased username), optionally those whose
    /// username or display name contains `search` (case-insensitive). Never the caller.
    async fn contacts(
        &self,
        me: Uuid,
        search: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PublicUser>>;
    async fn set_last_seen(&self, user: Uuid, at: OffsetDateTime) -> Result<()>;

    // ------------------------------------------------------------ login and tokens

    async fn put_pending_login(&self, login: PendingLogin) -> Result<()>;
    /// Removes and returns a pending login that has not expired (each is usable once).
    async fn take_pending_login(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<PendingLogin>>;
    /// Deletes expired pending logins and refresh tokens that expired before `now`.
    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64>;

    async fn insert_refresh_token(&self, token: NewRefreshToken) -> Result<()>;
    /// Spends the token with hash `old` and stores `next` in its family, atomically. Reuse of a
    /// spent or revoked token revokes every token of its family. `next.user_id` and
    /// `next.family_id` are replaced by the old token's.
    async fn rotate_refresh_token(
        &self,
        old: [u8; 32],
        next: NewRefreshToken,
        now: OffsetDateTime,
    ) -> Result<RefreshCheck>;
    /// Checks a refresh token without spending it.
    async fn check_refresh_token(
        &self,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<RefreshCheck>;
    /// Revokes the family of the token with this hash; false if there is no such token.
    async fn revoke_refresh_family(&self, hash: [u8; 32], now: OffsetDateTime) -> Result<bool>;

    // ------------------------------------------------------------ chats

    /// The 1:1 chat of `me` and `other`, created (with `new_id`) if absent.
    async fn create_or_get_chat(
        &self,
        me: Uuid,
        other: Uuid,
        new_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<ChatForUser>;
    /// One chat as `me` sees it.
    async fn chat_for(&self, me: Uuid, chat: Uuid) -> Result<Chat>;
    /// The two members of a chat, if `me` is one of them (`me` first).
    async fn chat_members(&self, me: Uuid, chat: Uuid) -> Result<(Uuid, Uuid)>;
    /// Every user who shares a chat with `me` (who may see `me`'s presence).
    async fn chat_peers(&self, me: Uuid) -> Result<Vec<Uuid>>;
    /// `me`'s chats, most recent activity first, after the cursor. One query, whatever the
    /// number of chats.
    async fn list_chats(
        &self,
        me: Uuid,
        after: Option<ChatCursor>,
        limit: u32,
    ) -> Result<Vec<Chat>>;

    // ------------------------------------------------------------ messages

    /// Stores a message with the chat's next sequence number, or returns the first message of
    /// a repeated `(sender, tempMessageId)`. `count_unread` is false when the receiver has the
    /// chat open on some device.
    async fn send_message(&self, msg: NewMessage, count_unread: bool) -> Result<Sent>;
    /// [`Store::send_message`] in two steps, for pipelining: returns once the send is queued,
    /// and the returned future answers once it is committed. Sends queued one after another
    /// (each call returned before the next began) are stored in that order, so a chat's
    /// sequence numbers follow it, while they commit together. The default stores the message
    /// before it returns.
    async fn queue_message(&self, msg: NewMessage, count_unread: bool) -> QueuedSend {
        let answer = self.send_message(msg, count_unread).await;
        Box::pin(std::future::ready(answer))
    }
    /// Several sends, each with the semantics of [`Store::send_message`] and its own answer
    /// (one failing send does not fail the others), in order. The backends write them in one
    /// transaction (group commit, see [`batch`]); keep batches to a few hundred sends.
    async fn send_messages(&self, sends: Vec<batch::SendRequest>) -> Vec<Result<Sent>> {
        let mut out = Vec::with_capacity(sends.len());
        for s in sends {
            out.push(self.send_message(s.msg, s.count_unread).await);
        }
        out
    }
    /// Up to `limit` messages before sequence `before` (or the newest), chronological.
    async fn messages_before(
        &self,
        me: Uuid,
        chat: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>>;
    /// Up to `limit` messages after sequence `since`, chronological.
    async fn messages_since(
        &self,
        me: Uuid,
        chat: Uuid,
        since: i64,
        limit: u32,
    ) -> Result<Vec<Message>>;
    /// A message `me` sent or received.
    async fn message_for(&self, me: Uuid, id: Uuid) -> Result<Message>;
    /// Marks a message delivered, once. Only its receiver may.
    async fn mark_delivered(
        &self,
        me: Uuid,
        message: Uuid,
        now: OffsetDateTime,
    ) -> Result<DeliveredReceipt>;
    /// Marks every message `me` received in the chat up to `up_to` as read and recounts
    /// `me`'s unread count, in one transaction.
    async fn mark_read(
        &self,
        me: Uuid,
        chat: Uuid,
        up_to: i64,
        now: OffsetDateTime,
    ) -> Result<ReadReceipt>;
    /// `me`'s change feed after `since`, in order.
    async fn changes_since(&self, me: Uuid, since: i64, limit: u32) -> Result<Vec<Change>>;
}
