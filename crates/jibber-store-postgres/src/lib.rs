//! The [`Store`] on PostgreSQL, for one or several server nodes sharing a database.
//!
//! Same tables, guarantees and behaviour as `jibber-store-sqlite`, in native types: `uuid` ids,
//! `bytea` keys and ciphertexts, `timestamptz` times (truncated to milliseconds on the way in,
//! the precision of the SQLite backend and of the chat-list cursor). Migrations are embedded
//! (`migrations/`) and run at [`PgStore::open`] under sqlx's advisory lock, so nodes starting
//! together migrate once.
//!
//! Layout: [`PgConfig`] (URL and pool limits), [`PgStore`] (the trait), [`sql`] (every
//! statement, as a `const`, so the query-plan tests check the very text the code runs).
//!
//! # Concurrency
//!
//! Transactions run at READ COMMITTED; every counter moves inside the database with
//! `UPDATE ... RETURNING`, never read then written by the application:
//! - a chat's sequence number comes from `UPDATE chats SET next_seq = next_seq + 1`, whose row
//!   lock serializes the chat's senders until commit, on every node;
//! - sends are written in batches (group commit, `jibber_store::batch`): this node's concurrent
//!   sends share one transaction and one commit, taking the chats' row locks in chat id order
//!   and the users' (feed cursors) last, in id order;
//! - a send that loses a race on `(sender, tempMessageId)` finds the key taken by its
//!   `INSERT ... ON CONFLICT DO NOTHING` (which waits for the other transaction), gives its
//!   sequence number back while it still holds the chat's lock, and answers the winner's
//!   message as a duplicate;
//! - mark-read locks the reader's `chat_members` row before recounting, so no send can slip a
//!   message between the recount and the commit;
//! - a user's feed cursor comes from `UPDATE users SET change_seq = change_seq + 1`, which
//!   orders that user's feed writers by commit.
//!
//! Writers take row locks in one order (per chat, in chat id order: chats, then chat_members;
//! users by id last), so they wait for each other but never deadlock. A send inserts its
//! message between the two; nobody else can hold a lock on a new row, so mark-read's
//! chat_members-then-messages order does not form a cycle with it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jibber_proto::api::{
    Change, Chat, DeliveredReceipt, DeliveryStatus, Message, PublicUser, ReadReceipt,
};
use jibber_store::batch::{DeliveryRequest, GroupCommit, MAX_BATCH, SendRequest};
use jibber_store::feed::{self, FeedRow};
use jibber_store::query_timer;
use jibber_store::util::{from_ms, like_escape, to_ms};
use jibber_store::{
    ChatCursor, ChatForUser, NewMessage, NewRefreshToken, NewUser, PendingLogin, QueuedSend,
    RefreshCheck, Result, Sent, Store, StoreError, UserRecord,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

pub mod sql;

/// The name of the unique index on `lower(email)`.
const EMAIL_KEY: &str = "users_email_lower";

/// How to connect, and the pool's limits.
#[derive(Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?...`. libpq-style query parameters apply,
    /// e.g. `sslmode=require` or `options[search_path]=jibber`.
    pub url: String,
    /// Connections this node opens at most. Mind the server's `max_connections` across nodes.
    pub max_connections: u32,
    /// Connections kept open even when idle.
    pub min_connections: u32,
    /// How long a caller waits for a connection (including connecting) before the store
    /// answers [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// An idle connection above `min_connections` is closed after this long.
    pub idle_timeout: Option<Duration>,
    /// A connection is replaced after this long (spreads load after a failover).
    pub max_lifetime: Option<Duration>,
    /// The server cancels a statement that runs longer (`statement_timeout`); zero disables.
    /// Keep it below the HTTP request timeout. Migrations run without it.
    pub statement_timeout: Duration,
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// The URL with its password (and any `password=` parameter) replaced by `***`, for messages
/// and logs.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(rest_start + colon + 1..rest_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|kv| {
                if kv.to_ascii_lowercase().starts_with("password=") {
                    "password=***".to_owned()
                } else {
                    kv.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// Jibber's storage on PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// The writer task that gathers this node's concurrent sends into one transaction.
    sends: GroupCommit<SendRequest, Sent>,
    /// Delivery receipts, batched like sends (`None`: nothing changed; see `mark_delivered`).
    deliveries: GroupCommit<DeliveryRequest, Option<DeliveredReceipt>>,
}

/// SQLSTATEs that mean "the database cannot serve now" rather than "this request is wrong":
/// connection exceptions (08), insufficient resources (53, e.g. too many connections), an
/// operator or crash shutdown (57P01-57P03), a cancelled statement (57014: the statement
/// timeout) and a lock timeout (55P03).
fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "55P03")
}

fn backend_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(d) if d.code().is_some_and(|c| is_unavailable_code(&c)) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::RowNotFound => StoreError::NotFound,
        _ => StoreError::Backend(e.to_string()),
    }
}

/// The name of the unique constraint `e` broke, if it is a unique violation.
fn unique_violation(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Some(d.constraint().unwrap_or("")),
        _ => None,
    }
}

/// Times are kept to the millisecond, as on SQLite, so a value read back equals the one
/// written and the chat-list cursor (milliseconds) compares exactly.
fn ms(t: OffsetDateTime) -> OffsetDateTime {
    from_ms(to_ms(t))
}

/// Decodes a row of [`sql::FEED`].
fn feed_row(row: &PgRow) -> Result<FeedRow> {
    Ok(FeedRow {
        cursor: get(row, "seq")?,
        kind: get(row, "kind")?,
        chat_id: get(row, "chat_id")?,
        message_id: get(row, "message_id")?,
        actor_id: get(row, "actor_id")?,
        up_to_seq: get(row, "up_to_seq")?,
        at: get(row, "at")?,
    })
}

fn get<'r, T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>>(
    row: &'r PgRow,
    col: &str,
) -> Result<T> {
    row.try_get(col).map_err(backend_err)
}

fn bytes(row: &PgRow, col: &str) -> Result<jibber_proto::B64> {
    Ok(get::<Vec<u8>>(row, col)?.into())
}

fn user_from_row(row: &PgRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: get(row, "id")?,
        username: get(row, "username")?,
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        registration_record: get(row, "registration_record")?,
        public_id_key: get(row, "public_id_key")?,
        public_signing_key: get(row, "public_signing_key")?,
        key_bundle: get(row, "key_bundle")?,
        created_at: get(row, "created_at")?,
        last_seen: get(row, "last_seen")?,
    })
}

/// Reads a message whose columns carry `prefix` (see `sql::last_message_columns`).
fn message_from_row(row: &PgRow, prefix: &str) -> Result<Message> {
    let c = |name: &str| format!("{prefix}{name}");
    let status: String = get(row, &c("status"))?;
    Ok(Message {
        id: get(row, &c("id"))?,
        chat_id: get(row, &c("chat_id"))?,
        sender: get(row, &c("sender_id"))?,
        receiver: get(row, &c("receiver_id"))?,
        cipher: bytes(row, &c("cipher"))?,
        iv: bytes(row, &c("iv"))?,
        signature: bytes(row, &c("signature"))?,
        sender_public_id_key: bytes(row, &c("sender_public_id_key"))?,
        sender_public_signing_key: bytes(row, &c("sender_public_signing_key"))?,
        receiver_public_id_key: bytes(row, &c("receiver_public_id_key"))?,
        sequence_number: get(row, &c("seq"))?,
        delivery_status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Backend(format!("bad status {status:?}")))?,
        client_timestamp: get(row, &c("client_timestamp"))?,
        temp_message_id: get(row, &c("temp_message_id"))?,
        created_at: get(row, &c("created_at"))?,
        delivered_at: get(row, &c("delivered_at"))?,
        read_at: get(row, &c("read_at"))?,
    })
}

/// Reads a row of the chat statements (`sql::CHAT_LIST` and its siblings).
fn chat_from_row(row: &PgRow) -> Result<Chat> {
    let last_message = match get::<Option<Uuid>>(row, "m_id")? {
        Some(_) => Some(message_from_row(row, "m_")?),
        None => None,
    };
    let next_seq: i64 = get(row, "next_seq")?;
    Ok(Chat {
        id: get(row, "chat_id")?,
        other_user: PublicUser {
            id: get(row, "u_id")?,
            username: get(row, "u_username")?,
            display_name: get(row, "u_display_name")?,
            public_id_key: bytes(row, "u_public_id_key")?,
            public_signing_key: bytes(row, "u_public_signing_key")?,
            last_seen: get(row, "u_last_seen")?,
        },
        last_message,
        unread_count: get(row, "unread_count")?,
        last_sequence: next_seq - 1,
        created_at: get(row, "c_created_at")?,
        updated_at: get(row, "last_activity")?,
    })
}

fn public_user_from_row(row: &PgRow) -> Result<PublicUser> {
    Ok(PublicUser {
        id: get(row, "id")?,
        username: get(row, "username")?,
        display_name: get(row, "display_name")?,
        public_id_key: bytes(row, "public_id_key")?,
        public_signing_key: bytes(row, "public_signing_key")?,
        last_seen: get(row, "last_seen")?,
    })
}

/// One entry of a user's change feed.
#[derive(Clone, Copy)]
struct FeedEntry {
    kind: &'static str,
    chat: Uuid,
    message: Option<Uuid>,
    actor: Option<Uuid>,
    up_to: Option<i64>,
    at: OffsetDateTime,
}

/// Appends `e` to the feeds of `users` inside the caller's transaction.
async fn push_change(tx: &mut PgConnection, users: &[Uuid], e: FeedEntry) -> Result<()> {
    push_changes(tx, users.iter().map(|u| (*u, e)).collect()).await
}

/// Appends entries to users' feeds inside the caller's transaction, each user's in the order
/// given, in three statements whatever their number (a round trip each: one statement per
/// entry made a batch of sends wait on hundreds of round trips, BENCHMARKS.md session 17). The
/// users' rows are locked in id order first, whatever the order of `entries`, so that two
/// transactions writing to the same feeds cannot deadlock; then each feed's counter moves once
/// and the entries go in as one multi-row insert.
async fn push_changes(tx: &mut PgConnection, mut entries: Vec<(Uuid, FeedEntry)>) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    entries.sort_by_key(|(user, _)| *user); // stable: each user's entries keep their order
    let (mut users, mut counts) = (Vec::new(), Vec::new());
    for group in entries.chunk_by(|a, b| a.0 == b.0) {
        users.push(group[0].0);
        counts.push(i64::try_from(group.len()).unwrap_or(i64::MAX));
    }
    if users.len() > 1 {
        sqlx::query(sql::LOCK_USERS)
            .bind(&users)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
    }
    let bumped: Vec<(Uuid, i64)> = sqlx::query_as(sql::BUMP_CHANGE_SEQS)
        .bind(&users)
        .bind(&counts)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_err)?;
    let last: HashMap<Uuid, i64> = bumped.into_iter().collect();
    let n = entries.len();
    let mut rows = ChangeRows::with_capacity(n);
    for group in entries.chunk_by(|a, b| a.0 == b.0) {
        let user = group[0].0;
        let count = i64::try_from(group.len()).unwrap_or(i64::MAX);
        let last = *last
            .get(&user)
            .ok_or_else(|| StoreError::Backend(format!("no feed counter for user {user}")))?;
        for (seq, (_, e)) in (last - count + 1..).zip(group) {
            rows.push(user, seq, e);
        }
    }
    sqlx::query(sql::INSERT_CHANGES)
        .bind(rows.user)
        .bind(rows.seq)
        .bind(rows.kind)
        .bind(rows.chat)
        .bind(rows.message)
        .bind(rows.actor)
        .bind(rows.up_to)
        .bind(rows.at)
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?;
    Ok(())
}

/// Feed entries as the columns of [`sql::INSERT_CHANGES`].
#[derive(Default)]
struct ChangeRows {
    user: Vec<Uuid>,
    seq: Vec<i64>,
    kind: Vec<&'static str>,
    chat: Vec<Uuid>,
    message: Vec<Option<Uuid>>,
    actor: Vec<Option<Uuid>>,
    up_to: Vec<Option<i64>>,
    at: Vec<OffsetDateTime>,
}

impl ChangeRows {
    fn with_capacity(n: usize) -> Self {
        ChangeRows {
            user: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            kind: Vec::with_capacity(n),
            chat: Vec::with_capacity(n),
            message: Vec::with_capacity(n),
            actor: Vec::with_capacity(n),
            up_to: Vec::with_capacity(n),
            at: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, user: Uuid, seq: i64, e: &FeedEntry) {
        self.user.push(user);
        self.seq.push(seq);
        self.kind.push(e.kind);
        self.chat.push(e.chat);
        self.message.push(e.message);
        self.actor.push(e.actor);
        self.up_to.push(e.up_to);
        self.at.push(ms(e.at));
    }
}

/// The message stored for `(sender, tempMessageId)`, as the answer to a repeated send.
async fn stored_send(tx: &mut PgConnection, m: &NewMessage) -> Result<Option<Sent>> {
    let row = sqlx::query(sql::MESSAGE_BY_TEMP_ID)
        .bind(m.sender)
        .bind(&m.temp_message_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_err)?;
    row.map(|r| duplicate(message_from_row(&r, "")?, m))
        .transpose()
}

/// Writes one send inside the batch's transaction (see [`Store::send_message`]), except its
/// feed entries, which [`send_batch`] appends for the whole batch. The errors a send may answer
/// on its own (`NotFound`, `WrongReceiver`, `Conflict`) leave the transaction usable.
async fn send_one(tx: &mut PgConnection, r: &SendRequest) -> Result<Sent> {
    let (m, count_unread) = (&r.msg, r.count_unread);
    // The common repeat (a client retrying) is answered before any lock is taken.
    if let Some(sent) = stored_send(tx, m).await? {
        return Ok(sent);
    }
    let other: Option<Uuid> = sqlx::query_scalar(sql::OTHER_MEMBER)
        .bind(m.chat_id)
        .bind(m.sender)
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend_err)?;
    match other {
        None => return Err(StoreError::NotFound),
        Some(o) if o != m.receiver => return Err(StoreError::WrongReceiver),
        Some(_) => {}
    }
    let now = ms(m.created_at);
    // Lock order: chats, messages, chat_members (then users, for the whole batch).
    let seq: i64 = sqlx::query_scalar(sql::NEXT_SEQ)
        .bind(m.chat_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend_err)?;
    let inserted = sqlx::query(sql::INSERT_MESSAGE)
        .bind(m.id)
        .bind(m.chat_id)
        .bind(seq)
        .bind(m.sender)
        .bind(m.receiver)
        .bind(&m.cipher)
        .bind(&m.iv)
        .bind(&m.signature)
        .bind(&m.sender_public_id_key)
        .bind(&m.sender_public_signing_key)
        .bind(&m.receiver_public_id_key)
        .bind(ms(m.client_timestamp))
        .bind(&m.temp_message_id)
        .bind(now)
        .bind(count_unread)
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?;
    if inserted.rows_affected() == 0 {
        // A send of the same key (on another node) committed while this one waited for the
        // chat's lock. Give the number back and answer its message.
        tracing::debug!("a send lost the race on its tempMessageId; answering the winner");
        sqlx::query(sql::GIVE_SEQ_BACK)
            .bind(m.chat_id)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        // The constraint fired, yet there is no such message: it was deleted since.
        return stored_send(tx, m)
            .await?
            .ok_or(StoreError::Conflict("tempMessageId"));
    }
    sqlx::query(sql::TOUCH_MEMBERS)
        .bind(m.chat_id)
        .bind(now)
        .bind(m.receiver)
        .bind(count_unread)
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?;
    let message = m.clone().stored(seq);
    Ok(Sent {
        message,
        duplicate: false,
    })
}

/// Writes a batch of sends in one transaction and commits once, in a fixed number of statements
/// (a round trip each) whatever the batch's size: [`send_batch_set`]. In the rare case that a
/// key the batch checked was stored meanwhile by another node, the batch is written again one
/// send at a time ([`send_batch_each`]), which answers such a send with the other node's
/// message.
async fn send_batch(pool: PgPool, batch: Vec<SendRequest>) -> Result<Vec<Result<Sent>>> {
    let mut tx = pool.begin().await.map_err(backend_err)?;
    match send_batch_set(&mut tx, &batch).await? {
        Some(answers) => {
            tx.commit().await.map_err(backend_err)?;
            Ok(answers)
        }
        None => {
            tx.rollback().await.map_err(backend_err)?;
            send_batch_each(pool, batch).await
        }
    }
}

/// What [`send_batch_set`] decided for one send before writing anything.
enum Plan {
    /// Answered already: a repeat of a stored message, or refused.
    Answer(Box<Result<Sent>>),
    /// A repeat of the send at this index of the same batch.
    RepeatOf(usize),
    /// To be stored in its chat.
    Store,
}

/// [`send_batch`]'s set-based write: the batch's repeats and its chats' members are read in one
/// statement each and checked in memory; then the chats are locked in id order and take their
/// sequence numbers (one statement), the messages go in as one multi-row insert, the members'
/// activity and unread counts move in one statement, and the feeds get their entries
/// ([`push_changes`]). Locks are taken in the order every writer uses (chats by id, the new
/// messages, members, users by id), so batches of several nodes wait for each other but never
/// deadlock. `None`: a key was stored meanwhile by another node; the caller rolls back.
async fn send_batch_set(
    tx: &mut PgConnection,
    batch: &[SendRequest],
) -> Result<Option<Vec<Result<Sent>>>> {
    let senders: Vec<Uuid> = batch.iter().map(|r| r.msg.sender).collect();
    let temps: Vec<&str> = batch
        .iter()
        .map(|r| r.msg.temp_message_id.as_str())
        .collect();
    let found = sqlx::query(sql::MESSAGES_BY_TEMP_IDS)
        .bind(&senders)
        .bind(&temps)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_err)?
        .iter()
        .map(|row| message_from_row(row, ""))
        .collect::<Result<Vec<Message>>>()?;
    let stored: HashMap<(Uuid, &str), &Message> = found
        .iter()
        .map(|m| ((m.sender, m.temp_message_id.as_str()), m))
        .collect();
    let mut chats: Vec<Uuid> = batch.iter().map(|r| r.msg.chat_id).collect();
    chats.sort_unstable();
    chats.dedup();
    let mut members: HashMap<(Uuid, Uuid), Uuid> = HashMap::new();
    let rows: Vec<(Uuid, Uuid, Uuid)> = sqlx::query_as(sql::MEMBERS_OF_CHATS)
        .bind(&chats)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_err)?;
    for (chat, user, other) in rows {
        members.insert((chat, user), other);
    }

    // Each send's fate, in queue order; a chat's new messages get its numbers in that order.
    let mut first_of: HashMap<(Uuid, &str), usize> = HashMap::new();
    let mut plans = Vec::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        let m = &r.msg;
        let key = (m.sender, m.temp_message_id.as_str());
        let plan = if let Some(&message) = stored.get(&key) {
            Plan::Answer(Box::new(duplicate(message.clone(), m)))
        } else if let Some(&j) = first_of.get(&key) {
            Plan::RepeatOf(j)
        } else {
            match members.get(&(m.chat_id, m.sender)) {
                None => Plan::Answer(Box::new(Err(StoreError::NotFound))),
                Some(o) if *o != m.receiver => {
                    Plan::Answer(Box::new(Err(StoreError::WrongReceiver)))
                }
                Some(_) => {
                    first_of.insert(key, i);
                    Plan::Store
                }
            }
        };
        plans.push(plan);
    }

    // The chats' numbers, by chat id (the lock order): how many each takes, and the time of its
    // last send.
    let mut taken: BTreeMap<Uuid, (i64, OffsetDateTime)> = BTreeMap::new();
    for (r, _) in batch
        .iter()
        .zip(&plans)
        .filter(|(_, p)| matches!(p, Plan::Store))
    {
        let t = taken
            .entry(r.msg.chat_id)
            .or_insert((0, ms(r.msg.created_at)));
        t.0 += 1;
        t.1 = ms(r.msg.created_at);
    }
    let mut next: HashMap<Uuid, i64> = HashMap::new();
    if !taken.is_empty() {
        let ids: Vec<Uuid> = taken.keys().copied().collect();
        if ids.len() > 1 {
            sqlx::query(sql::LOCK_CHATS)
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
        }
        let counts: Vec<i64> = taken.values().map(|t| t.0).collect();
        let ats: Vec<OffsetDateTime> = taken.values().map(|t| t.1).collect();
        let after: Vec<(Uuid, i64)> = sqlx::query_as(sql::TAKE_SEQS)
            .bind(&ids)
            .bind(&counts)
            .bind(&ats)
            .fetch_all(&mut *tx)
            .await
            .map_err(backend_err)?;
        if after.len() != taken.len() {
            return Ok(None); // a chat was deleted meanwhile
        }
        // The rows come back in no particular order: each chat's first number is its next one
        // less what it took.
        for (chat, after_taking) in after {
            let (n, _) = taken
                .get(&chat)
                .ok_or_else(|| StoreError::Backend(format!("chat {chat} took no numbers")))?;
            next.insert(chat, after_taking - n);
        }
    }

    // The messages, with their numbers, in queue order.
    let mut stored_now: Vec<Option<Message>> = vec![None; batch.len()];
    let mut rows = MessageRows::with_capacity(batch.len());
    // Each member of a chat the batch stored in: its new activity, and its new unread messages.
    let mut touched: BTreeMap<(Uuid, Uuid), (OffsetDateTime, i64)> = BTreeMap::new();
    let mut feed = Vec::new();
    for (i, (r, plan)) in batch.iter().zip(&plans).enumerate() {
        if !matches!(plan, Plan::Store) {
            continue;
        }
        let m = &r.msg;
        let seq = next.get_mut(&m.chat_id).ok_or_else(|| {
            StoreError::Backend(format!("chat {} took no sequence number", m.chat_id))
        })?;
        rows.push(m, *seq, r.count_unread);
        let message = m.clone().stored(*seq);
        *seq += 1;
        for (user, n) in [(m.sender, 0), (m.receiver, i64::from(r.count_unread))] {
            let t = touched
                .entry((m.chat_id, user))
                .or_insert((message.created_at, 0));
            t.0 = message.created_at;
            t.1 += n;
        }
        let entry = FeedEntry {
            kind: "message",
            chat: message.chat_id,
            message: Some(message.id),
            actor: Some(message.sender),
            up_to: Some(message.sequence_number),
            at: message.created_at,
        };
        feed.push((message.sender, entry));
        feed.push((message.receiver, entry));
        stored_now[i] = Some(message);
    }
    if !rows.id.is_empty() {
        let expected = rows.id.len();
        let inserted: Vec<Uuid> = rows
            .bind(sqlx::query_scalar(sql::INSERT_MESSAGES))
            .fetch_all(&mut *tx)
            .await
            .map_err(backend_err)?;
        if inserted.len() != expected {
            return Ok(None); // another node stored one of these keys meanwhile
        }
        let (mut chat, mut user, mut at, mut count) = (vec![], vec![], vec![], vec![]);
        for ((c, u), (t, n)) in touched {
            chat.push(c);
            user.push(u);
            at.push(t);
            count.push(n);
        }
        sqlx::query(sql::TOUCH_MEMBERS_MANY)
            .bind(chat)
            .bind(user)
            .bind(at)
            .bind(count)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        push_changes(tx, feed).await?;
    }

    // Last to first: a repeat (always after its first send) copies the first's message before
    // the first takes it.
    let mut answers = Vec::with_capacity(batch.len());
    for (i, plan) in plans.into_iter().enumerate().rev() {
        answers.push(match plan {
            Plan::Answer(answer) => *answer,
            Plan::RepeatOf(j) => match &stored_now[j] {
                Some(first) => duplicate(first.clone(), &batch[i].msg),
                None => Err(StoreError::Backend("send not written".into())),
            },
            Plan::Store => match stored_now[i].take() {
                Some(message) => Ok(Sent {
                    message,
                    duplicate: false,
                }),
                None => Err(StoreError::Backend("send not written".into())),
            },
        });
    }
    answers.reverse();
    Ok(Some(answers))
}

/// A batch's new messages as the columns of [`sql::INSERT_MESSAGES`].
struct MessageRows<'a> {
    id: Vec<Uuid>,
    chat: Vec<Uuid>,
    seq: Vec<i64>,
    sender: Vec<Uuid>,
    receiver: Vec<Uuid>,
    cipher: Vec<&'a [u8]>,
    iv: Vec<&'a [u8]>,
    signature: Vec<&'a [u8]>,
    sender_id_key: Vec<&'a [u8]>,
    sender_signing_key: Vec<&'a [u8]>,
    receiver_id_key: Vec<&'a [u8]>,
    client_timestamp: Vec<OffsetDateTime>,
    temp: Vec<&'a str>,
    created_at: Vec<OffsetDateTime>,
    counts_unread: Vec<bool>,
}

impl<'a> MessageRows<'a> {
    fn with_capacity(n: usize) -> Self {
        MessageRows {
            id: Vec::with_capacity(n),
            chat: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            sender: Vec::with_capacity(n),
            receiver: Vec::with_capacity(n),
            cipher: Vec::with_capacity(n),
            iv: Vec::with_capacity(n),
            signature: Vec::with_capacity(n),
            sender_id_key: Vec::with_capacity(n),
            sender_signing_key: Vec::with_capacity(n),
            receiver_id_key: Vec::with_capacity(n),
            client_timestamp: Vec::with_capacity(n),
            temp: Vec::with_capacity(n),
            created_at: Vec::with_capacity(n),
            counts_unread: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, m: &'a NewMessage, seq: i64, counts_unread: bool) {
        self.id.push(m.id);
        self.chat.push(m.chat_id);
        self.seq.push(seq);
        self.sender.push(m.sender);
        self.receiver.push(m.receiver);
        self.cipher.push(&m.cipher);
        self.iv.push(&m.iv);
        self.signature.push(&m.signature);
        self.sender_id_key.push(&m.sender_public_id_key);
        self.sender_signing_key.push(&m.sender_public_signing_key);
        self.receiver_id_key.push(&m.receiver_public_id_key);
        self.client_timestamp.push(ms(m.client_timestamp));
        self.temp.push(&m.temp_message_id);
        self.created_at.push(ms(m.created_at));
        self.counts_unread.push(counts_unread);
    }

    fn bind<'q, O>(
        self,
        q: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        q.bind(self.id)
            .bind(self.chat)
            .bind(self.seq)
            .bind(self.sender)
            .bind(self.receiver)
            .bind(self.cipher)
            .bind(self.iv)
            .bind(self.signature)
            .bind(self.sender_id_key)
            .bind(self.sender_signing_key)
            .bind(self.receiver_id_key)
            .bind(self.client_timestamp)
            .bind(self.temp)
            .bind(self.created_at)
            .bind(self.counts_unread)
    }
}

/// Writes a batch of sends one send at a time, in one transaction (the fallback of
/// [`send_batch`]).
///
/// Locks are taken in the order every writer uses, so batches on several nodes wait for each
/// other but never deadlock: the sends run by chat id (a stable sort, so each chat's sends keep
/// their queue order and sequence numbers), each taking its chat's row, then the users' rows
/// for every feed entry of the batch, in id order.
async fn send_batch_each(pool: PgPool, batch: Vec<SendRequest>) -> Result<Vec<Result<Sent>>> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| batch[i].msg.chat_id);
    let mut answers: Vec<Option<Result<Sent>>> = batch.iter().map(|_| None).collect();
    let mut feed = Vec::new();
    let mut tx = pool.begin().await.map_err(backend_err)?;
    for i in order {
        let answer = match send_one(&mut tx, &batch[i]).await {
            // Something failed after a write: the batch fails as a whole (and is retried one
            // send at a time by the caller).
            Err(e @ (StoreError::Backend(_) | StoreError::Unavailable(_))) => return Err(e),
            answer => answer,
        };
        if let Ok(Sent {
            message,
            duplicate: false,
        }) = &answer
        {
            let entry = FeedEntry {
                kind: "message",
                chat: message.chat_id,
                message: Some(message.id),
                actor: Some(message.sender),
                up_to: Some(message.sequence_number),
                at: message.created_at,
            };
            // Queue order within each feed: `i` sorts the entries back below.
            feed.push((i, message.sender, entry));
            feed.push((i, message.receiver, entry));
        }
        answers[i] = Some(answer);
    }
    feed.sort_by_key(|(i, _, _)| *i);
    push_changes(&mut tx, feed.into_iter().map(|(_, u, e)| (u, e)).collect()).await?;
    tx.commit().await.map_err(backend_err)?;
    Ok(answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(StoreError::Backend("send not written".into()))))
        .collect())
}

/// Marks a batch of messages delivered in one transaction and commits once, in a fixed number
/// of statements whatever the batch's size. `None` for a message that was not `me`'s to mark or
/// was delivered already (also earlier in this batch: the first receipt queued for a message
/// marks it). The message rows are locked in id order and then the feeds' users in id order,
/// as every writer takes them, so that batches of several nodes cannot deadlock on each other.
async fn delivery_batch(
    pool: PgPool,
    batch: Vec<DeliveryRequest>,
) -> Result<Vec<Result<Option<DeliveredReceipt>>>> {
    // The first receipt of each (message, device owner), in queue order; a repeat answers
    // `None`. Receipts for one message by different users all go in: only its receiver's can
    // match.
    let mut firsts: Vec<usize> = Vec::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        if !firsts
            .iter()
            .any(|&j| batch[j].message == r.message && batch[j].me == r.me)
        {
            firsts.push(i);
        }
    }
    let ids: Vec<Uuid> = firsts.iter().map(|&i| batch[i].message).collect();
    let (mut mes, mut ats) = (Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()));
    for &i in &firsts {
        mes.push(batch[i].me);
        ats.push(ms(batch[i].at));
    }
    let mut tx = pool.begin().await.map_err(backend_err)?;
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() > 1 {
        sqlx::query(sql::LOCK_MESSAGES)
            .bind(&sorted)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
    }
    let marked: Vec<(Uuid, Uuid, i64, Uuid, Uuid)> = sqlx::query_as(sql::MARK_DELIVERED_MANY)
        .bind(&ids)
        .bind(&mes)
        .bind(&ats)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend_err)?;
    let mut answers: Vec<Result<Option<DeliveredReceipt>>> =
        batch.iter().map(|_| Ok(None)).collect();
    let mut feed = Vec::with_capacity(marked.len());
    let by_id: HashMap<Uuid, (Uuid, i64, Uuid, Uuid)> = marked
        .into_iter()
        .map(|(id, chat, seq, sender, receiver)| (id, (chat, seq, sender, receiver)))
        .collect();
    for i in firsts {
        let DeliveryRequest { me, message, at } = batch[i];
        let Some(&(chat_id, seq, sender, receiver)) = by_id.get(&message) else {
            continue;
        };
        if receiver != me {
            continue; // not this user's to mark; the receiver's receipt in the batch did
        }
        let at = ms(at);
        let entry = FeedEntry {
            kind: "delivered",
            chat: chat_id,
            message: Some(message),
            actor: Some(me),
            up_to: Some(seq),
            at,
        };
        // Queue order: each sender's feed gets the receipts in the order they came.
        feed.push((sender, entry));
        answers[i] = Ok(Some(DeliveredReceipt {
            message_id: message,
            chat_id,
            sequence_number: seq,
            delivered_at: at,
            changed: true,
        }));
    }
    push_changes(&mut tx, feed).await?;
    tx.commit().await.map_err(backend_err)?;
    Ok(answers)
}

impl PgStore {
    /// Connects, runs the migrations (without the statement timeout) and opens the pool.
    /// An unreachable server is [`StoreError::Unavailable`].
    pub async fn open(config: &PgConfig) -> Result<Self> {
        let mut opts = PgConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {e}")))?;
        if opts.get_application_name().is_none() {
            opts = opts.application_name("jibber");
        }
        // Migrations hold sqlx's advisory lock, so nodes starting together migrate once.
        let mut conn = PgConnection::connect_with(&opts)
            .await
            .map_err(backend_err)?;
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut conn)
            .await
            .map_err(backend_err)?;
        sqlx::migrate!("./migrations")
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        conn.close().await.map_err(backend_err)?;

        if !config.statement_timeout.is_zero() {
            opts = opts.options([(
                "statement_timeout",
                format!("{}ms", config.statement_timeout.as_millis()),
            )]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .min_connections(config.min_connections.min(config.max_connections))
            .acquire_timeout(config.acquire_timeout)
            .idle_timeout(config.idle_timeout)
            .max_lifetime(config.max_lifetime)
            .connect_with(opts)
            .await
            .map_err(backend_err)?;
        // Not paced: PostgreSQL's own `commit_delay` is the setting for that.
        let sends = GroupCommit::spawn("postgres", "send", MAX_BATCH, Duration::ZERO, {
            let pool = pool.clone();
            move |batch| send_batch(pool.clone(), batch)
        });
        let deliveries = GroupCommit::spawn("postgres", "delivered", MAX_BATCH, Duration::ZERO, {
            let pool = pool.clone();
            move |batch| delivery_batch(pool.clone(), batch)
        });
        Ok(PgStore {
            pool,
            sends,
            deliveries,
        })
    }

    /// The pool, for tests and tools that inspect the database (query plans).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(backend_err)
    }

    async fn is_member(&self, me: Uuid, chat: Uuid) -> Result<bool> {
        sqlx::query_scalar(sql::IS_MEMBER)
            .bind(chat)
            .bind(me)
            .fetch_one(&self.pool)
            .await
            .map_err(backend_err)
    }

    async fn messages_by_ids(&self, ids: &[Uuid]) -> Result<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sql::MESSAGES_BY_IDS)
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(|r| message_from_row(r, "")).collect()
    }
}

/// The answer to a repeated `(sender, tempMessageId)`: the first message, unless the key was
/// used in another chat, which is refused rather than silently mapped.
fn duplicate(message: Message, m: &NewMessage) -> Result<Sent> {
    if message.chat_id != m.chat_id {
        return Err(StoreError::Conflict("tempMessageId"));
    }
    Ok(Sent {
        message,
        duplicate: true,
    })
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        let _t = query_timer!("postgres", "ping");
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn create_user(&self, u: NewUser) -> Result<UserRecord> {
        let _t = query_timer!("postgres", "create_user");
        let created_at = ms(u.created_at);
        let res = sqlx::query(sql::INSERT_USER)
            .bind(u.id)
            .bind(&u.username)
            .bind(u.username.to_lowercase())
            .bind(&u.email)
            .bind(&u.display_name)
            .bind(&u.registration_record)
            .bind(&u.public_id_key)
            .bind(&u.public_signing_key)
            .bind(&u.key_bundle)
            .bind(created_at)
            .execute(&self.pool)
            .await;
        match res {
            Ok(_) => {}
            Err(e) => {
                return Err(match unique_violation(&e) {
                    Some(EMAIL_KEY) => StoreError::Conflict("email"),
                    Some(_) => StoreError::Conflict("username"),
                    None => backend_err(e),
                });
            }
        }
        Ok(UserRecord {
            id: u.id,
            username: u.username,
            email: u.email,
            display_name: u.display_name,
            registration_record: u.registration_record,
            public_id_key: u.public_id_key,
            public_signing_key: u.public_signing_key,
            key_bundle: u.key_bundle,
            created_at,
            last_seen: None,
        })
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        let _t = query_timer!("postgres", "user_by_username");
        let row = sqlx::query(sql::USER_BY_USERNAME)
            .bind(username.to_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>> {
        let _t = query_timer!("postgres", "user_by_id");
        let row = sqlx::query(sql::USER_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, limit: u32, offset: u64) -> Result<Vec<UserRecord>> {
        let _t = query_timer!("postgres", "list_users");
        let rows = sqlx::query(sql::LIST_USERS)
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn rotate_keys(
        &self,
        user: Uuid,
        public_id_key: Vec<u8>,
        public_signing_key: Vec<u8>,
        key_bundle: Vec<u8>,
    ) -> Result<()> {
        let _t = query_timer!("postgres", "rotate_keys");
        let done = sqlx::query(sql::ROTATE_KEYS)
            .bind(user)
            .bind(public_id_key)
            .bind(public_signing_key)
            .bind(key_bundle)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn contacts(
        &self,
        me: Uuid,
        search: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PublicUser>> {
        let _t = query_timer!("postgres", "contacts");
        let pattern = search
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{}%", like_escape(&s.to_lowercase())));
        let rows = sqlx::query(sql::CONTACTS)
            .bind(me)
            .bind(after.unwrap_or(""))
            .bind(pattern)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(public_user_from_row).collect()
    }

    async fn set_last_seen(&self, user: Uuid, at: OffsetDateTime) -> Result<()> {
        let _t = query_timer!("postgres", "set_last_seen");
        sqlx::query(sql::SET_LAST_SEEN)
            .bind(user)
            .bind(ms(at))
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn put_pending_login(&self, login: PendingLogin) -> Result<()> {
        let _t = query_timer!("postgres", "put_pending_login");
        sqlx::query(sql::INSERT_PENDING_LOGIN)
            .bind(login.id)
            .bind(login.user_id)
            .bind(login.state)
            .bind(ms(login.expires_at))
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn take_pending_login(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<PendingLogin>> {
        let _t = query_timer!("postgres", "take_pending_login");
        let row = sqlx::query(sql::TAKE_PENDING_LOGIN)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        let Some(row) = row else { return Ok(None) };
        let login = PendingLogin {
            id: get(&row, "id")?,
            user_id: get(&row, "user_id")?,
            state: get(&row, "state")?,
            expires_at: get(&row, "expires_at")?,
        };
        Ok((login.expires_at > now).then_some(login))
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64> {
        let _t = query_timer!("postgres", "purge_expired");
        let now = ms(now);
        let a = sqlx::query(sql::PURGE_PENDING_LOGINS)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        let b = sqlx::query(sql::PURGE_REFRESH_TOKENS)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    async fn insert_refresh_token(&self, t: NewRefreshToken) -> Result<()> {
        let _t = query_timer!("postgres", "insert_refresh_token");
        sqlx::query(sql::INSERT_REFRESH)
            .bind(t.id)
            .bind(t.user_id)
            .bind(t.family_id)
            .bind(t.token_hash.as_slice())
            .bind(ms(t.created_at))
            .bind(ms(t.expires_at))
            .execute(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn rotate_refresh_token(
        &self,
        old: [u8; 32],
        next: NewRefreshToken,
        now: OffsetDateTime,
    ) -> Result<RefreshCheck> {
        let _t = query_timer!("postgres", "rotate_refresh_token");
        let now = ms(now);
        let mut tx = self.begin().await?;
        // Spend the token only if it is live; a concurrent second use waits for the row lock,
        // finds it spent and falls through to the reuse branch.
        let spent = sqlx::query(sql::SPEND_REFRESH)
            .bind(old.as_slice())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
        if let Some(row) = spent {
            let user_id: Uuid = get(&row, "user_id")?;
            let family_id: Uuid = get(&row, "family_id")?;
            sqlx::query(sql::INSERT_REFRESH)
                .bind(next.id)
                .bind(user_id)
                .bind(family_id)
                .bind(next.token_hash.as_slice())
                .bind(ms(next.created_at))
                .bind(ms(next.expires_at))
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
            tx.commit().await.map_err(backend_err)?;
            return Ok(RefreshCheck::Valid { user_id, family_id });
        }
        let row = sqlx::query(sql::REFRESH_BY_HASH)
            .bind(old.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
        let Some(row) = row else {
            return Ok(RefreshCheck::Unknown);
        };
        let spent_or_revoked = get::<Option<OffsetDateTime>>(&row, "spent_at")?.is_some()
            || get::<Option<OffsetDateTime>>(&row, "revoked_at")?.is_some();
        if spent_or_revoked {
            let user_id: Uuid = get(&row, "user_id")?;
            sqlx::query(sql::REVOKE_FAMILY)
                .bind(get::<Uuid>(&row, "family_id")?)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
            tx.commit().await.map_err(backend_err)?;
            return Ok(RefreshCheck::Reused { user_id });
        }
        Ok(RefreshCheck::Expired)
    }

    async fn check_refresh_token(
        &self,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<RefreshCheck> {
        let _t = query_timer!("postgres", "check_refresh_token");
        let row = sqlx::query(sql::REFRESH_BY_HASH)
            .bind(hash.as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        let Some(row) = row else {
            return Ok(RefreshCheck::Unknown);
        };
        let user_id: Uuid = get(&row, "user_id")?;
        if get::<Option<OffsetDateTime>>(&row, "spent_at")?.is_some()
            || get::<Option<OffsetDateTime>>(&row, "revoked_at")?.is_some()
        {
            return Ok(RefreshCheck::Reused { user_id });
        }
        if get::<OffsetDateTime>(&row, "expires_at")? <= ms(now) {
            return Ok(RefreshCheck::Expired);
        }
        Ok(RefreshCheck::Valid {
            user_id,
            family_id: get(&row, "family_id")?,
        })
    }

    async fn revoke_refresh_family(&self, hash: [u8; 32], now: OffsetDateTime) -> Result<bool> {
        let _t = query_timer!("postgres", "revoke_refresh_family");
        let mut tx = self.begin().await?;
        let row = sqlx::query(sql::REFRESH_BY_HASH)
            .bind(hash.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
        let Some(row) = row else {
            return Ok(false);
        };
        sqlx::query(sql::REVOKE_FAMILY)
            .bind(get::<Uuid>(&row, "family_id")?)
            .bind(ms(now))
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        tx.commit().await.map_err(backend_err)?;
        Ok(true)
    }

    async fn create_or_get_chat(
        &self,
        me: Uuid,
        other: Uuid,
        new_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<ChatForUser> {
        let _t = query_timer!("postgres", "create_or_get_chat");
        if me == other {
            return Err(StoreError::NotFound);
        }
        let (low, high) = if me < other { (me, other) } else { (other, me) };
        let now = ms(now);
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(sql::INSERT_CHAT)
            .bind(new_id)
            .bind(low)
            .bind(high)
            .bind(now)
            .execute(&mut *tx)
            .await;
        let created = match inserted {
            Ok(r) => r.rows_affected() == 1,
            // A user that does not exist.
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                return Err(StoreError::NotFound);
            }
            Err(e) => return Err(backend_err(e)),
        };
        let chat_id = if created {
            for (user, peer) in [(me, other), (other, me)] {
                sqlx::query(sql::INSERT_MEMBER)
                    .bind(new_id)
                    .bind(user)
                    .bind(peer)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_err)?;
            }
            let entry = FeedEntry {
                kind: "chat",
                chat: new_id,
                message: None,
                actor: Some(me),
                up_to: None,
                at: now,
            };
            push_change(&mut tx, &[me, other], entry).await?;
            new_id
        } else {
            // A concurrent creator's insert made ours do nothing; its row is committed now.
            sqlx::query_scalar(sql::CHAT_BY_PAIR)
                .bind(low)
                .bind(high)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend_err)?
        };
        tx.commit().await.map_err(backend_err)?;
        let chat = self.chat_for(me, chat_id).await?;
        Ok(ChatForUser { chat, created })
    }

    async fn chat_for(&self, me: Uuid, chat: Uuid) -> Result<Chat> {
        let _t = query_timer!("postgres", "chat_for");
        let row = sqlx::query(sql::CHAT_ONE)
            .bind(me)
            .bind(chat)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        row.as_ref()
            .map(chat_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn chat_members(&self, me: Uuid, chat: Uuid) -> Result<(Uuid, Uuid)> {
        let _t = query_timer!("postgres", "chat_members");
        let other: Option<Uuid> = sqlx::query_scalar(sql::OTHER_MEMBER)
            .bind(chat)
            .bind(me)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend_err)?;
        Ok((me, other.ok_or(StoreError::NotFound)?))
    }

    async fn chat_peers(&self, me: Uuid) -> Result<Vec<Uuid>> {
        let _t = query_timer!("postgres", "chat_peers");
        sqlx::query_scalar(sql::CHAT_PEERS)
            .bind(me)
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)
    }

    async fn list_chats(
        &self,
        me: Uuid,
        after: Option<ChatCursor>,
        limit: u32,
    ) -> Result<Vec<Chat>> {
        let _t = query_timer!("postgres", "list_chats");
        let query = match after {
            None => sqlx::query(sql::CHAT_LIST).bind(me).bind(i64::from(limit)),
            Some(c) => sqlx::query(sql::CHAT_LIST_AFTER)
                .bind(me)
                .bind(from_ms(c.activity_ms))
                .bind(c.chat_id)
                .bind(i64::from(limit)),
        };
        let rows = query.fetch_all(&self.pool).await.map_err(backend_err)?;
        rows.iter().map(chat_from_row).collect()
    }

    async fn send_message(&self, m: NewMessage, count_unread: bool) -> Result<Sent> {
        self.queue_message(m, count_unread).await.await
    }

    async fn queue_message(&self, m: NewMessage, count_unread: bool) -> QueuedSend {
        self.sends
            .queue_send(m, count_unread, query_timer!("postgres", "send_message"))
            .await
    }

    async fn send_messages(&self, sends: Vec<SendRequest>) -> Vec<Result<Sent>> {
        let _t = query_timer!("postgres", "send_messages");
        self.sends.submit_many(sends).await
    }

    async fn messages_before(
        &self,
        me: Uuid,
        chat: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let _t = query_timer!("postgres", "messages_before");
        if !self.is_member(me, chat).await? {
            return Err(StoreError::NotFound);
        }
        let rows = sqlx::query(sql::HISTORY)
            .bind(chat)
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        let mut out = rows
            .iter()
            .map(|r| message_from_row(r, ""))
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    async fn messages_since(
        &self,
        me: Uuid,
        chat: Uuid,
        since: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let _t = query_timer!("postgres", "messages_since");
        if !self.is_member(me, chat).await? {
            return Err(StoreError::NotFound);
        }
        let rows = sqlx::query(sql::SINCE)
            .bind(chat)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        rows.iter().map(|r| message_from_row(r, "")).collect()
    }

    async fn message_for(&self, me: Uuid, id: Uuid) -> Result<Message> {
        let _t = query_timer!("postgres", "message_for");
        let msg = self
            .messages_by_ids(&[id])
            .await?
            .pop()
            .ok_or(StoreError::NotFound)?;
        if msg.sender != me && msg.receiver != me {
            return Err(StoreError::NotFound);
        }
        Ok(msg)
    }

    async fn mark_delivered(
        &self,
        me: Uuid,
        message: Uuid,
        now: OffsetDateTime,
    ) -> Result<DeliveredReceipt> {
        let _t = query_timer!("postgres", "mark_delivered");
        match self
            .deliveries
            .submit(DeliveryRequest {
                me,
                message,
                at: now,
            })
            .await?
        {
            Some(receipt) => Ok(receipt),
            // Already delivered or read, or not `me`'s to mark: answered from the message.
            None => feed::unchanged_delivery(me, &self.message_for(me, message).await?),
        }
    }

    async fn mark_read(
        &self,
        me: Uuid,
        chat: Uuid,
        up_to: i64,
        now: OffsetDateTime,
    ) -> Result<ReadReceipt> {
        let _t = query_timer!("postgres", "mark_read");
        let now = ms(now);
        let mut tx = self.begin().await?;
        // Lock the reader's member row first: a send that already counted a message holds it
        // until its commit (so the recount below sees that message), and a send that has not
        // yet counted waits for ours (and counts on top of the recount).
        let other: Option<Uuid> = sqlx::query_scalar(sql::OTHER_MEMBER_FOR_UPDATE)
            .bind(chat)
            .bind(me)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
        let other = other.ok_or(StoreError::NotFound)?;
        let marked = sqlx::query(sql::MARK_READ)
            .bind(chat)
            .bind(me)
            .bind(up_to)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?
            .rows_affected();
        let unread: i64 = sqlx::query_scalar(sql::RECOUNT_UNREAD)
            .bind(chat)
            .bind(me)
            .bind(up_to)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_err)?;
        if marked > 0 {
            let entry = FeedEntry {
                kind: "read",
                chat,
                message: None,
                actor: Some(me),
                up_to: Some(up_to),
                at: now,
            };
            push_change(&mut tx, &[other, me], entry).await?;
        }
        tx.commit().await.map_err(backend_err)?;
        Ok(ReadReceipt {
            chat_id: chat,
            up_to_sequence: up_to,
            read_at: now,
            marked: i64::try_from(marked).unwrap_or(i64::MAX),
            unread_count: unread,
        })
    }

    async fn changes_since(&self, me: Uuid, since: i64, limit: u32) -> Result<Vec<Change>> {
        let _t = query_timer!("postgres", "changes_since");
        let rows = sqlx::query(sql::FEED)
            .bind(me)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend_err)?;
        let rows = rows.iter().map(feed_row).collect::<Result<Vec<_>>>()?;
        let (message_ids, chat_ids) = feed::wanted(&rows);
        // Two more queries at most, whatever the number of changes.
        let messages = self.messages_by_ids(&message_ids).await?;
        let chats = if chat_ids.is_empty() {
            Vec::new()
        } else {
            let rows = sqlx::query(sql::CHATS_BY_IDS)
                .bind(me)
                .bind(&chat_ids)
                .fetch_all(&self.pool)
                .await
                .map_err(backend_err)?;
            rows.iter().map(chat_from_row).collect::<Result<Vec<_>>>()?
        };
        feed::assemble(rows, &messages, &chats)
    }
}

// The integration tests' helpers (a fresh schema per test) name this crate by its name.
#[cfg(test)]
extern crate self as jibber_store_postgres;

#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_schema;

#[cfg(test)]
mod tests {
    use super::*;
    use jibber_store::testsuite::{chat, message, user};
    use jibber_store::util::now_ms;

    /// One batch with two receipts for the same message, the sender's queued first: only the
    /// receiver's marks it, and the sender's answers `None`. (A first version of the set-based
    /// batch kept one receipt per message and dropped the receiver's; the suite caught it only
    /// when its concurrent receipts happened to meet in a batch this way.)
    #[tokio::test]
    async fn a_batch_marks_the_receivers_receipt_whoever_is_queued_first() {
        let store = test_schema::fresh().await;
        let (a, b) = (user(&store, "rcpt_a").await, user(&store, "rcpt_b").await);
        let chat = chat(&store, a, b).await;
        let sent = store
            .send_message(message(chat, a, b, "r1"), true)
            .await
            .expect("send")
            .message;
        let receipt = |me| DeliveryRequest {
            me,
            message: sent.id,
            at: now_ms(),
        };
        let answers = delivery_batch(
            store.pool().clone(),
            vec![receipt(a), receipt(b), receipt(b)],
        )
        .await
        .expect("batch");
        assert!(
            matches!(answers[0], Ok(None)),
            "the sender's: {:?}",
            answers[0]
        );
        let marked = match &answers[1] {
            Ok(Some(r)) => r,
            other => panic!("the receiver's receipt did not mark it: {other:?}"),
        };
        assert_eq!(
            (marked.message_id, marked.sequence_number),
            (sent.id, sent.sequence_number)
        );
        assert!(
            matches!(answers[2], Ok(None)),
            "the repeat: {:?}",
            answers[2]
        );
        let stored = store.message_for(a, sent.id).await.expect("message");
        assert_eq!(
            stored.delivery_status,
            jibber_proto::api::DeliveryStatus::Delivered
        );
        let delivered = store
            .changes_since(a, 0, 100)
            .await
            .expect("feed")
            .into_iter()
            .filter(|c| matches!(c, jibber_proto::api::Change::Delivered { .. }))
            .count();
        assert_eq!(delivered, 1, "one delivered entry in the sender's feed");
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://jibber:s3cret@db:5432/jibber"),
            "postgres://jibber:***@db:5432/jibber"
        );
        assert_eq!(
            redact_url("postgres://jibber@db/jibber?password=s3cret&sslmode=require"),
            "postgres://jibber@db/jibber?password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://db/jibber"),
            "postgresql://db/jibber"
        );
        let config = PgConfig::new("postgres://u:pw@h/d");
        assert!(!format!("{config:?}").contains("pw@"));
    }

    #[test]
    fn statements_are_complete() {
        // The chat statements are assembled from pieces; check the seams.
        assert!(sql::CHAT_LIST.contains("m.seq = c.next_seq - 1 WHERE me.user_id = $1"));
        assert!(sql::USER_BY_ID.starts_with("SELECT id, username, email"));
    }
}
