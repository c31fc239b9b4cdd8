//! The hot reads (history, sync, chat list, change feed) on a pool of rusqlite connections.
//!
//! sqlx runs a SQLite statement on the connection's worker thread and sends each row back to
//! the async task through a channel: a page of 50 messages was some 50 wake-ups and thread
//! switches, and on a 2-core machine that also runs the tokio workers the tail of a read was
//! scheduling (history p99 4.9–6.6 ms at 10 M messages with a median near 1 ms, BENCHMARKS.md).
//! Here a whole read — the membership check, the page, and for the change feed the messages and
//! chats it refers to — is ONE blocking call on a read-only connection with cached prepared
//! statements, like the batch writer's writes ([`crate::writer`]).
//!
//! The pool holds `read_connections` connections; a caller waits at most `acquire_timeout` for
//! one and then gets `Unavailable`, as with sqlx's pools. WAL mode lets these readers run while
//! the writer commits; each read sees one consistent snapshot (one implicit transaction per
//! statement, or one explicit read transaction where a read runs several statements).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jibber_proto::api::{Change, Chat, DeliveryStatus, Message, PublicUser};
use jibber_store::feed::{self, FeedRow};
use jibber_store::util::from_ms;
use jibber_store::{Result, StoreError};
use rusqlite::types::{FromSql, ValueRef};
use rusqlite::{Connection, OpenFlags, Row, Statement, params, params_from_iter};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::sql;
use crate::writer::{parse_uuid, sq_err};

/// Read-only rusqlite connections to the database file; cloning shares them.
#[derive(Clone)]
pub(crate) struct ReadPool {
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for ReadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadPool")
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

/// Gives the connection back to the pool when the read ends, also when it panicked.
struct Lease {
    conn: Option<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
    }
}

impl ReadPool {
    /// Opens `connections` read-only connections to the (already migrated) database file.
    pub(crate) fn open(path: &Path, connections: u32, acquire_timeout: Duration) -> Result<Self> {
        let n = connections.max(1);
        let mut idle = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let conn = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI,
            )
            .map_err(sq_err)?;
            conn.busy_timeout(Duration::from_secs(5)).map_err(sq_err)?;
            conn.set_prepared_statement_cache_capacity(32);
            idle.push(conn);
        }
        Ok(ReadPool {
            idle: Arc::new(Mutex::new(idle)),
            permits: Arc::new(Semaphore::new(n as usize)),
            acquire_timeout,
        })
    }

    /// Runs `read` on a connection of the pool, in one blocking call.
    pub(crate) async fn run<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit =
            tokio::time::timeout(self.acquire_timeout, self.permits.clone().acquire_owned())
                .await
                .map_err(|_| {
                    StoreError::Unavailable("no database read connection was free".into())
                })?
                .map_err(|_| StoreError::Unavailable("the read pool is closed".into()))?;
        let idle = self.idle.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let lease = Lease { conn, idle };
            match lease.conn.as_ref() {
                Some(conn) => read(conn),
                // Every permit has a connection, unless the pool was closed meanwhile.
                None => Err(StoreError::Unavailable("the read pool is closed".into())),
            }
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a database read failed: {e}")))?
    }

    /// Closes the pool: later reads answer `Unavailable`; connections close as reads end.
    pub(crate) fn close(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A column by position, its decoding errors as `Backend`. Rows are decoded by position: a
/// lookup by name asks SQLite for every column's name until it matches, which for a chat-list
/// page of ~30 columns and 50 rows cost more than the query itself.
fn col<T: FromSql>(row: &Row<'_>, i: usize) -> Result<T> {
    row.get(i)
        .map_err(|e| StoreError::Backend(format!("column {i}: {e}")))
}

/// A text column holding a UUID, parsed without copying the text.
fn opt_uuid_col(row: &Row<'_>, i: usize) -> Result<Option<Uuid>> {
    match row.get_ref(i) {
        Ok(ValueRef::Null) => Ok(None),
        Ok(v) => v
            .as_str()
            .map_err(|e| StoreError::Backend(format!("column {i}: {e}")))
            .and_then(parse_uuid)
            .map(Some),
        Err(e) => Err(StoreError::Backend(format!("column {i}: {e}"))),
    }
}

fn uuid_col(row: &Row<'_>, i: usize) -> Result<Uuid> {
    opt_uuid_col(row, i)?.ok_or_else(|| StoreError::Backend(format!("column {i}: null uuid")))
}

/// Reads a message whose [`sql::MESSAGE_COLUMNS`] start at position `at`.
fn message(row: &Row<'_>, at: usize) -> Result<Message> {
    let status: String = col(row, at + 13)?;
    Ok(Message {
        id: uuid_col(row, at)?,
        chat_id: uuid_col(row, at + 1)?,
        sequence_number: col(row, at + 2)?,
        sender: uuid_col(row, at + 3)?,
        receiver: uuid_col(row, at + 4)?,
        cipher: col::<Vec<u8>>(row, at + 5)?.into(),
        iv: col::<Vec<u8>>(row, at + 6)?.into(),
        signature: col::<Vec<u8>>(row, at + 7)?.into(),
        sender_public_id_key: col::<Vec<u8>>(row, at + 8)?.into(),
        sender_public_signing_key: col::<Vec<u8>>(row, at + 9)?.into(),
        receiver_public_id_key: col::<Vec<u8>>(row, at + 10)?.into(),
        client_timestamp: from_ms(col(row, at + 11)?),
        temp_message_id: col(row, at + 12)?,
        delivery_status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Backend(format!("bad status {status:?}")))?,
        created_at: from_ms(col(row, at + 14)?),
        delivered_at: col::<Option<i64>>(row, at + 15)?.map(from_ms),
        read_at: col::<Option<i64>>(row, at + 16)?.map(from_ms),
    })
}

/// Reads a row of [`sql::CHAT_SELECT`].
fn chat(row: &Row<'_>) -> Result<Chat> {
    let at = sql::CHAT_SELECT_MESSAGE_AT;
    let last_message = match opt_uuid_col(row, at)? {
        Some(_) => Some(message(row, at)?),
        None => None,
    };
    let next_seq: i64 = col(row, 4)?;
    Ok(Chat {
        id: uuid_col(row, 0)?,
        other_user: PublicUser {
            id: uuid_col(row, 5)?,
            username: col(row, 6)?,
            display_name: col(row, 7)?,
            public_id_key: col::<Vec<u8>>(row, 8)?.into(),
            public_signing_key: col::<Vec<u8>>(row, 9)?.into(),
            last_seen: col::<Option<i64>>(row, 10)?.map(from_ms),
        },
        last_message,
        unread_count: col(row, 1)?,
        last_sequence: next_seq - 1,
        created_at: from_ms(col(row, 3)?),
        updated_at: from_ms(col(row, 2)?),
    })
}

/// Reads a row of [`sql::FEED`] (seq, kind, chat_id, message_id, actor_id, up_to_seq, at).
fn feed_row(row: &Row<'_>) -> Result<FeedRow> {
    Ok(FeedRow {
        cursor: col(row, 0)?,
        kind: col(row, 1)?,
        chat_id: uuid_col(row, 2)?,
        message_id: opt_uuid_col(row, 3)?,
        actor_id: opt_uuid_col(row, 4)?,
        up_to_seq: col(row, 5)?,
        at: from_ms(col(row, 6)?),
    })
}

/// Runs a cached statement and decodes every row.
fn rows<T>(
    conn: &Connection,
    statement: &str,
    params: impl rusqlite::Params,
    decode: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(statement).map_err(sq_err)?;
    collect(&mut stmt, params, decode)
}

/// Runs a prepared statement and decodes every row.
fn collect<T>(
    stmt: &mut Statement<'_>,
    params: impl rusqlite::Params,
    decode: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut rows = stmt.query(params).map_err(sq_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sq_err)? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// Runs `read` in one read transaction, so that its statements see one snapshot. The
/// transaction ends when `read` does, also when it fails or panics (rusqlite rolls it back on
/// drop), so a connection never goes back to the pool inside one.
fn snapshot<T>(conn: &Connection, read: impl FnOnce() -> Result<T>) -> Result<T> {
    let tx = conn.unchecked_transaction().map_err(sq_err)?;
    let out = read()?;
    tx.commit().map_err(sq_err)?;
    Ok(out)
}

fn is_member(conn: &Connection, me: &str, chat: &str) -> Result<bool> {
    let n: i64 = conn
        .prepare_cached(sql::IS_MEMBER)
        .and_then(|mut s| s.query_row(params![chat, me], |row| row.get(0)))
        .map_err(sq_err)?;
    Ok(n > 0)
}

/// A page of a chat's messages by `statement` ([`sql::HISTORY`] or [`sql::SINCE`], bound to
/// the chat, a sequence number and the page size), in the statement's order; `NotFound` unless
/// `me` is a member.
fn page(
    conn: &Connection,
    me: Uuid,
    chat: Uuid,
    statement: &str,
    seq: i64,
    limit: u32,
) -> Result<Vec<Message>> {
    let (me, chat) = (me.to_string(), chat.to_string());
    snapshot(conn, || {
        if !is_member(conn, &me, &chat)? {
            return Err(StoreError::NotFound);
        }
        rows(conn, statement, params![chat, seq, i64::from(limit)], |r| {
            message(r, 0)
        })
    })
}

/// A page of a chat's messages before `before`, oldest first.
pub(crate) fn history(
    conn: &Connection,
    me: Uuid,
    chat: Uuid,
    before: i64,
    limit: u32,
) -> Result<Vec<Message>> {
    let mut out = page(conn, me, chat, sql::HISTORY.as_str(), before, limit)?;
    out.reverse();
    Ok(out)
}

/// A chat's messages after `since`, oldest first.
pub(crate) fn since(
    conn: &Connection,
    me: Uuid,
    chat: Uuid,
    since: i64,
    limit: u32,
) -> Result<Vec<Message>> {
    page(conn, me, chat, sql::SINCE.as_str(), since, limit)
}

/// The messages with these ids (in no particular order).
pub(crate) fn messages_by_ids(conn: &Connection, ids: &[String]) -> Result<Vec<Message>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; ids.len()].join(",");
    let query = format!(
        "SELECT {} FROM messages m WHERE m.id IN ({placeholders})",
        sql::message_columns("m", "")
    );
    // The number of ids varies: not worth a slot in the statement cache.
    collect(
        &mut conn.prepare(&query).map_err(sq_err)?,
        params_from_iter(ids),
        |r| message(r, 0),
    )
}

/// Which of `me`'s chats [`chats`] returns.
pub(crate) enum ChatFilter {
    /// The first page, newest activity first.
    First,
    /// The page after a cursor (activity in ms, chat id).
    After(i64, Uuid),
    /// These chats.
    Ids(Vec<Uuid>),
}

/// `me`'s chats with the other member and the last message, newest activity first.
pub(crate) fn chats(
    conn: &Connection,
    me: Uuid,
    filter: &ChatFilter,
    limit: u32,
) -> Result<Vec<Chat>> {
    let (me, limit) = (me.to_string(), i64::from(limit));
    match filter {
        ChatFilter::First => rows(conn, sql::CHAT_LIST.as_str(), params![me, limit], chat),
        ChatFilter::After(activity, id) => rows(
            conn,
            sql::CHAT_LIST_AFTER.as_str(),
            params![me, activity, id.to_string(), limit],
            chat,
        ),
        ChatFilter::Ids(ids) => {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let placeholders = (0..ids.len())
                .map(|i| format!("?{}", i + 2))
                .collect::<Vec<_>>()
                .join(",");
            let query = format!(
                "{} WHERE me.user_id = ?1 AND me.chat_id IN ({placeholders})",
                sql::CHAT_SELECT.as_str()
            );
            let binds = std::iter::once(me).chain(ids.iter().map(Uuid::to_string));
            // The number of ids varies: not worth a slot in the statement cache.
            collect(
                &mut conn.prepare(&query).map_err(sq_err)?,
                params_from_iter(binds),
                chat,
            )
        }
    }
}

/// The other members of `me`'s chats (every socket handshake asks, so it runs here rather than
/// through sqlx, whose pools ping a connection's worker thread at every acquire and release).
pub(crate) fn chat_peers(conn: &Connection, me: Uuid) -> Result<Vec<Uuid>> {
    rows(conn, sql::CHAT_PEERS, params![me.to_string()], |row| {
        uuid_col(row, 0)
    })
}

/// `me`'s change feed after `since`, with the messages and chats it refers to, from one
/// snapshot.
pub(crate) fn changes_since(
    conn: &Connection,
    me: Uuid,
    since: i64,
    limit: u32,
) -> Result<Vec<Change>> {
    snapshot(conn, || {
        let user = me.to_string();
        let mut feed_rows = rows(
            conn,
            sql::FEED,
            params![user, since, i64::from(limit)],
            feed_row,
        )?;
        // The tail's entries come after all of `user_feed`'s (see the migration `feed_tail`).
        let left = i64::from(limit) - feed_rows.len() as i64;
        if left > 0 {
            feed_rows.extend(rows(
                conn,
                sql::FEED_TAIL,
                params![user, since, left],
                feed_row,
            )?);
        }
        let (message_ids, chat_ids) = feed::wanted(&feed_rows);
        // Two more queries at most, whatever the number of changes.
        let message_ids: Vec<String> = message_ids.iter().map(Uuid::to_string).collect();
        let messages = messages_by_ids(conn, &message_ids)?;
        let chats = chats(conn, me, &ChatFilter::Ids(chat_ids), u32::MAX)?;
        feed::assemble(feed_rows, &messages, &chats)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decoders read by position: the statements must put each column where they look.
    #[test]
    fn the_decoders_positions_match_the_statements_columns() {
        let conn = Connection::open_in_memory().expect("open");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut migrations: Vec<_> = std::fs::read_dir(&dir)
            .expect("migrations")
            .map(|e| e.expect("entry").path())
            .collect();
        migrations.sort();
        for m in migrations {
            conn.execute_batch(&std::fs::read_to_string(&m).expect("read"))
                .unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        }
        let names = |statement: &str| -> Vec<String> {
            conn.prepare(statement)
                .expect("prepare")
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect()
        };
        let message: Vec<String> = sql::MESSAGE_COLUMNS
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        assert_eq!(names(sql::HISTORY.as_str()), message);
        assert_eq!(names(sql::SINCE.as_str()), message);
        let chat = names(sql::CHAT_LIST.as_str());
        let at = sql::CHAT_SELECT_MESSAGE_AT;
        let m_message: Vec<String> = message.iter().map(|c| format!("m_{c}")).collect();
        assert_eq!(chat[at..], m_message[..]);
        assert_eq!(
            chat[..at],
            [
                "chat_id",
                "unread_count",
                "last_activity",
                "c_created_at",
                "next_seq",
                "u_id",
                "u_username",
                "u_display_name",
                "u_public_id_key",
                "u_public_signing_key",
                "u_last_seen"
            ]
        );
        assert_eq!(names(sql::CHAT_LIST_AFTER.as_str()), chat);
        assert_eq!(names(sql::FEED_TAIL), names(sql::FEED));
        assert_eq!(
            names(sql::FEED),
            [
                "seq",
                "kind",
                "chat_id",
                "message_id",
                "actor_id",
                "up_to_seq",
                "at"
            ]
        );
    }
}
