//! The group-commit batches (sends and delivery receipts, together) on a connection of their own.
//!
//! sqlx runs every SQLite statement on the connection's worker thread and hands the result
//! back to the async task: two thread switches per statement. A send is about nine statements
//! and a receipt three, so a batch of a few dozen sends spent most of its time switching
//! threads (measured: a batch round took about 1 ms per send while the server was half idle,
//! BENCHMARKS.md). Here a whole batch runs in ONE blocking call on a rusqlite connection to the
//! same database file, with cached prepared statements, and commits once.
//!
//! The rows that many writes of a batch share (a chat's sequence counter and its members'
//! activity and unread counts, a user's feed cursor) are read once per batch, counted in memory
//! and written back once before the commit ([`Counters`]): a chat with eight sends in a batch
//! rewrites its row once, not eight times. Foreign keys are not checked on this connection: a
//! send is checked against the chat's membership before anything is written, and nothing else
//! writes while a batch runs.
//!
//! There is still one writer at a time: a batch first takes the process's write lock
//! ([`crate::write_lock`]), which sqlx's writes (accounts, chats, read marks) take too, and
//! holds it until it has committed, so they queue fairly behind each other instead of meeting
//! `SQLITE_BUSY`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::{Arc, Mutex};

use jibber_proto::api::{DeliveredReceipt, Message};
use jibber_store::batch::{DeliveryRequest, SendRequest, Write};
use jibber_store::util::to_ms;
use jibber_store::{Result, StoreError};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, ToSql, TransactionBehavior, params};
use uuid::Uuid;

use crate::checkpoint::{CheckpointPolicy, Checkpoints};
use crate::write_lock::Writer;
use crate::{Durability, FeedEntry, sql};

/// An id as the schema stores it (36-character hyphenated text), formatted on the stack for a
/// statement's parameter. `Uuid::to_string` went through `fmt` and allocated a `String` for each
/// of the ~12 ids a relayed message binds: ~6 % of the batch writer's instructions
/// (BENCHMARKS.md, session 10).
#[derive(Clone, Copy)]
struct IdText([u8; uuid::fmt::Hyphenated::LENGTH]);

impl IdText {
    fn new(id: Uuid) -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        id.hyphenated().encode_lower(&mut text);
        IdText(text)
    }
}

impl ToSql for IdText {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(&self.0)))
    }
}

/// An id read from a text column, parsed without an intermediate `String`.
struct IdColumn(Uuid);

impl FromSql for IdColumn {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Uuid::try_parse_ascii(value.as_bytes()?)
            .map(IdColumn)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// What one write of a batch came to.
pub(crate) enum Outcome {
    Stored(Box<Message>),
    /// A repeat of this (sender, tempMessageId): the first message's id (loaded after the commit).
    Duplicate(Uuid),
    /// A delivery receipt (`None`: nothing changed).
    Delivered(Option<DeliveredReceipt>),
}

/// The batch connection; cloning shares it.
#[derive(Clone)]
pub(crate) struct BatchWriter {
    conn: Arc<Mutex<Connection>>,
    /// The process's write lock, held during each batch.
    gate: Writer,
    /// Copies the WAL back into the database file beside the writer (see [`crate::checkpoint`]).
    checkpoints: Checkpoints,
}

pub(crate) fn sq_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

impl BatchWriter {
    /// Opens the database file (already migrated by sqlx) with the same settings as sqlx's
    /// connections.
    pub(crate) fn open(
        path: &Path,
        durability: Durability,
        checkpoint: CheckpointPolicy,
        gate: Writer,
    ) -> Result<Self> {
        let conn = match durability {
            // Commits sync the WAL, so its frames can be gathered into one write per commit.
            Durability::Full => {
                crate::wal_vfs::register().map_err(|rc| {
                    StoreError::Backend(format!("registering the WAL VFS failed: {rc}"))
                })?;
                Connection::open_with_flags_and_vfs(
                    path,
                    rusqlite::OpenFlags::default(),
                    crate::wal_vfs::NAME,
                )
            }
            Durability::Normal => Connection::open(path),
        }
        .map_err(sq_err)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF; \
             PRAGMA wal_autocheckpoint = {}; PRAGMA cache_size = -{};",
            checkpoint.autocheckpoint_frames,
            crate::WRITER_CACHE_KIB
        ))
        .map_err(sq_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sq_err)?;
        conn.set_prepared_statement_cache_capacity(32);
        let checkpoints = Checkpoints::start(path, synchronous, checkpoint)?;
        Ok(BatchWriter {
            conn: Arc::new(Mutex::new(conn)),
            gate,
            checkpoints,
        })
    }

    /// Runs `work` in one IMMEDIATE transaction on the blocking pool and commits; `Err` means
    /// nothing was committed.
    async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        let _gate = self.gate.lock().await?;
        let (conn, checkpoints) = (self.conn.clone(), self.checkpoints.clone());
        tokio::task::spawn_blocking(move || {
            // A panic mid-batch rolled its transaction back when it unwound: the connection
            // itself is fine.
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            checkpoints.before_batch(&conn);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sq_err)?;
            let out = work(&tx)?;
            tx.commit().map_err(sq_err)?;
            checkpoints.after_commit(&conn);
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("the batch writer failed: {e}")))?
    }

    /// Writes a batch of sends and delivery receipts in one transaction, in queue order. Each
    /// item answers on its own (`NotFound`, `WrongReceiver`, `Conflict` come before anything
    /// of it is written); a database error fails the whole batch.
    pub(crate) async fn writes(&self, batch: Vec<Write>) -> Result<Vec<Result<Outcome>>> {
        self.run(move |tx| {
            let mut st = Statements::prepare(tx)?;
            let mut counters = Counters::default();
            let mut out = Vec::with_capacity(batch.len());
            for w in batch {
                let answer = match w {
                    Write::Send(r) => send_one(&mut st, &mut counters, r),
                    Write::Delivered(r) => {
                        deliver_one(&mut st, &mut counters, r).map(Outcome::Delivered)
                    }
                };
                match answer {
                    Err(e @ (StoreError::Backend(_) | StoreError::Unavailable(_))) => {
                        return Err(e);
                    }
                    answer => out.push(answer),
                }
            }
            drop(st);
            counters.write(tx)?;
            Ok(out)
        })
        .await
    }
}

/// The statements a batch runs for every write, taken from the connection's statement cache
/// once per batch rather than once per use (each lookup hashes the statement's text: ~2 % of
/// the server in the relay, BENCHMARKS.md session 8).
struct Statements<'c> {
    chat: rusqlite::CachedStatement<'c>,
    insert_message: rusqlite::CachedStatement<'c>,
    message_by_temp_id: rusqlite::CachedStatement<'c>,
    undelivered: rusqlite::CachedStatement<'c>,
    mark_delivered: rusqlite::CachedStatement<'c>,
    insert_change: rusqlite::CachedStatement<'c>,
    insert_feed_entry: rusqlite::CachedStatement<'c>,
    change_seq: rusqlite::CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(tx: &'c rusqlite::Transaction<'_>) -> Result<Self> {
        let p = |sql: &str| tx.prepare_cached(sql).map_err(sq_err);
        Ok(Statements {
            chat: p(sql::CHAT_SEQ_AND_MEMBERS)?,
            insert_message: p(sql::INSERT_MESSAGE)?,
            message_by_temp_id: p(sql::MESSAGE_ID_BY_TEMP_ID)?,
            undelivered: p(sql::UNDELIVERED)?,
            mark_delivered: p(sql::MARK_DELIVERED)?,
            insert_change: p(sql::INSERT_CHANGE)?,
            insert_feed_entry: p(sql::INSERT_FEED_ENTRY)?,
            change_seq: p(sql::CHANGE_SEQ)?,
        })
    }
}

/// Marks one message delivered inside the batch's transaction. `None` for a message that was
/// not `me`'s to mark or was delivered already (also earlier in this batch).
fn deliver_one(
    st: &mut Statements<'_>,
    counters: &mut Counters,
    DeliveryRequest { me, message, at }: DeliveryRequest,
) -> Result<Option<DeliveredReceipt>> {
    let undelivered = st
        .undelivered
        .query_row(params![IdText::new(message), IdText::new(me)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, IdColumn>(1)?.0,
                row.get::<_, i64>(2)?,
                row.get::<_, IdColumn>(3)?.0,
            ))
        })
        .optional()
        .map_err(sq_err)?;
    let Some((row, chat_id, seq, sender)) = undelivered else {
        return Ok(None);
    };
    st.mark_delivered
        .execute(params![row, to_ms(at)])
        .map_err(sq_err)?;
    let entry = FeedEntry {
        kind: "delivered",
        chat: chat_id,
        message: Some(message),
        actor: Some(me),
        up_to: Some(seq),
        at,
    };
    counters.push_change(st, &[sender], &entry)?;
    Ok(Some(DeliveredReceipt {
        message_id: message,
        chat_id,
        sequence_number: seq,
        delivered_at: at,
        changed: true,
    }))
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s)
        .map_err(|e| StoreError::Backend(format!("bad uuid {s:?} in the database: {e}")))
}

/// A chat as a batch sees it: its members, read once, and its counters as the batch leaves
/// them.
struct ChatCounters {
    /// Each member with the other member (none: no such chat).
    members: Vec<(Uuid, Uuid)>,
    /// The sequence number the chat's next message gets.
    next_seq: i64,
    /// Whether the batch stored a message in the chat (only then are its counters written).
    used: bool,
    /// The time of the batch's last send in the chat.
    at: i64,
    /// Messages of the batch that count as unread, per receiver (at most the two members).
    unread: Vec<(Uuid, i64)>,
}

impl ChatCounters {
    /// The other member, if `user` is a member.
    fn other_of(&self, user: Uuid) -> Option<Uuid> {
        self.members
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, o)| *o)
    }

    /// The batch stored message `next_seq` in this chat.
    fn stored(&mut self, now_ms: i64, receiver: Uuid, count_unread: bool) {
        self.next_seq += 1;
        self.used = true;
        self.at = now_ms;
        if count_unread {
            match self.unread.iter_mut().find(|(u, _)| *u == receiver) {
                Some((_, n)) => *n += 1,
                None => self.unread.push((receiver, 1)),
            }
        }
    }
}

/// The shared rows a batch reads and changes, read on first use and written back by
/// [`Counters::write`] before the commit.
#[derive(Default)]
struct Counters {
    /// Each user's feed: its number and the last cursor given out.
    feeds: HashMap<Uuid, (i64, i64)>,
    chats: HashMap<Uuid, ChatCounters>,
    /// The feed tail's length after the batch's last entry (its rowid).
    tail_len: i64,
}

impl Counters {
    /// The chat as this batch sees it (read once per batch: the batch writer is the only writer
    /// while it runs, so neither its members nor its counter change underneath).
    fn chat(&mut self, st: &mut Statements<'_>, chat: Uuid) -> Result<&mut ChatCounters> {
        let slot = match self.chats.entry(chat) {
            Entry::Occupied(known) => return Ok(known.into_mut()),
            Entry::Vacant(slot) => slot,
        };
        let mut next_seq = 0;
        let mut members = Vec::with_capacity(2);
        let mut rows = st.chat.query([IdText::new(chat)]).map_err(sq_err)?;
        while let Some(row) = rows.next().map_err(sq_err)? {
            next_seq = row.get(0).map_err(sq_err)?;
            let id = |i| row.get::<_, IdColumn>(i).map(|c| c.0).map_err(sq_err);
            members.push((id(1)?, id(2)?));
        }
        Ok(slot.insert(ChatCounters {
            members,
            next_seq,
            used: false,
            at: 0,
            unread: Vec::new(),
        }))
    }

    /// Stores change `e` once and appends it to the feed of each of `users`.
    fn push_change(
        &mut self,
        st: &mut Statements<'_>,
        users: &[Uuid],
        e: &FeedEntry,
    ) -> Result<()> {
        let change = st
            .insert_change
            .insert(params![
                e.kind,
                IdText::new(e.chat),
                e.message.map(IdText::new),
                e.actor.map(IdText::new),
                e.up_to,
                to_ms(e.at),
            ])
            .map_err(sq_err)?;
        for user in users {
            let (feed, seq) = self.next_feed_seq(st, *user)?;
            self.tail_len = st
                .insert_feed_entry
                .insert(params![feed, seq, change])
                .map_err(sq_err)?;
        }
        Ok(())
    }

    /// `user`'s feed number and its next cursor (the last one is read once per batch).
    fn next_feed_seq(&mut self, st: &mut Statements<'_>, user: Uuid) -> Result<(i64, i64)> {
        Ok(match self.feeds.get_mut(&user) {
            Some((feed, seq)) => {
                *seq += 1;
                (*feed, *seq)
            }
            None => {
                let (feed, last): (i64, i64) = st
                    .change_seq
                    .query_row([IdText::new(user)], |row| Ok((row.get(0)?, row.get(1)?)))
                    .map_err(sq_err)?;
                self.feeds.insert(user, (feed, last + 1));
                (feed, last + 1)
            }
        })
    }

    /// Writes the counters back, once per chat and per user, and moves the feed tail into
    /// `user_feed` if the batch filled it.
    fn write(self, tx: &rusqlite::Transaction<'_>) -> Result<()> {
        if self.tail_len >= sql::FEED_TAIL_MAX {
            for statement in sql::MOVE_FEED_TAIL {
                tx.prepare_cached(statement)
                    .and_then(|mut s| s.execute([]))
                    .map_err(sq_err)?;
            }
        }
        for (feed, seq) in self.feeds.into_values() {
            tx.prepare_cached(sql::SET_CHANGE_SEQ)
                .and_then(|mut s| s.execute(params![feed, seq]))
                .map_err(sq_err)?;
        }
        for (chat, c) in self.chats.into_iter().filter(|(_, c)| c.used) {
            let chat = IdText::new(chat);
            tx.prepare_cached(sql::SET_NEXT_SEQ)
                .and_then(|mut s| s.execute(params![chat, c.next_seq, c.at]))
                .map_err(sq_err)?;
            let unread = |k: usize| c.unread.get(k).map(|(u, n)| (Some(IdText::new(*u)), *n));
            let (a, na) = unread(0).unwrap_or((None, 0));
            let (b, nb) = unread(1).unwrap_or((None, 0));
            tx.prepare_cached(sql::TOUCH_MEMBERS)
                .and_then(|mut s| s.execute(params![chat, c.at, a, na, b, nb]))
                .map_err(sq_err)?;
        }
        Ok(())
    }
}

/// One send inside the batch's transaction (the steps of `Store::send_message`).
///
/// The membership comes from the batch's copy of the chat. The message is then inserted with
/// the chat's next sequence number unless its (sender, tempMessageId) is taken: the insert's own
/// unique-index check is the repeat check, and only a repeat looks the first message up (one
/// statement per send fewer than checking first). The sequence number is used only when the
/// insert stored the row, so a repeat leaves no gap.
fn send_one(st: &mut Statements<'_>, counters: &mut Counters, r: SendRequest) -> Result<Outcome> {
    let SendRequest {
        msg: m,
        count_unread,
    } = r;
    let (sender, chat, receiver) = (m.sender, m.chat_id, m.receiver);
    let c = counters.chat(st, chat)?;
    match c.other_of(sender) {
        None => return Err(StoreError::NotFound),
        Some(o) if o != receiver => return Err(StoreError::WrongReceiver),
        Some(_) => {}
    }
    let now_ms = to_ms(m.created_at);
    let seq = c.next_seq;
    let stored = st
        .insert_message
        .execute(params![
            IdText::new(m.id),
            IdText::new(chat),
            seq,
            IdText::new(sender),
            IdText::new(receiver),
            m.cipher,
            m.iv,
            m.signature,
            m.sender_public_id_key,
            m.sender_public_signing_key,
            m.receiver_public_id_key,
            to_ms(m.client_timestamp),
            m.temp_message_id,
            now_ms,
            count_unread,
        ])
        .map_err(sq_err)?;
    if stored == 0 {
        // A repeat of (sender, tempMessageId) returns the first message, whenever it came.
        let (id, its_chat) = st
            .message_by_temp_id
            .query_row(params![IdText::new(sender), m.temp_message_id], |row| {
                Ok((row.get::<_, IdColumn>(0)?.0, row.get::<_, IdColumn>(1)?.0))
            })
            .map_err(sq_err)?;
        if its_chat != chat {
            // Same idempotency key reused for another chat: refuse rather than mislead.
            return Err(StoreError::Conflict("tempMessageId"));
        }
        return Ok(Outcome::Duplicate(id));
    }
    c.stored(now_ms, receiver, count_unread);
    let entry = FeedEntry {
        kind: "message",
        chat: m.chat_id,
        message: Some(m.id),
        actor: Some(m.sender),
        up_to: Some(seq),
        at: m.created_at,
    };
    counters.push_change(st, &[sender, receiver], &entry)?;
    Ok(Outcome::Stored(Box::new(m.stored(seq))))
}
