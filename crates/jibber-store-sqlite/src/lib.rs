//! The [`Store`] on embedded SQLite.
//!
//! One file in the data directory, WAL journal, `synchronous=FULL` by default, foreign keys on.
//! Writes take the process's write lock ([`write_lock`]; SQLite has one writer anyway, and
//! queueing in the process instead of in SQLite's busy handler avoids `SQLITE_BUSY` on lock
//! upgrades), then a pool of one connection (or the batch writer's own); reads go through a
//! separate pool of several connections. Migrations are embedded and run at open.
//!
//! Every statement that hot paths run is a `const` in [`sql`], so the query-plan tests check
//! the very text the code runs.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jibber_proto::api::{Change, Chat, DeliveredReceipt, Message, PublicUser, ReadReceipt};
use jibber_store::batch::{DeliveryRequest, GroupCommit, SendAnswer, SendRequest, Write, Written};
use jibber_store::feed;
use jibber_store::query_timer;
use jibber_store::util::{from_ms, like_escape, to_ms};
use jibber_store::{
    ChatCursor, ChatForUser, NewMessage, NewRefreshToken, NewUser, PendingLogin, QueuedSend,
    RefreshCheck, Result, Sent, Store, StoreError, UserRecord,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite};
use time::OffsetDateTime;
use uuid::Uuid;

mod checkpoint;
pub mod page_cache;
mod reader;
pub mod sql;
mod wal_vfs;
mod write_lock;
mod writer;

pub use checkpoint::CheckpointPolicy;

/// How SQLite syncs commits to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss. The default.
    Full,
    /// `synchronous=NORMAL`: survives a crash of the process, may lose the last commits on
    /// power loss.
    Normal,
}

/// How to open the database.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// `sqlite://path/to/file.db` (created if missing).
    pub url: String,
    pub durability: Durability,
    /// Connections of the read pool.
    pub read_connections: u32,
    /// How long a caller waits for a connection before the store answers `Unavailable`.
    pub acquire_timeout: Duration,
    /// When the WAL is copied back into the database file (off the writer's path).
    pub checkpoint: CheckpointPolicy,
    /// The least time from the start of one batch commit to the next (zero: the next starts as
    /// soon as the last is durable). Bounds the commits, and so the disk flushes, per second;
    /// see `jibber_store::batch`.
    pub commit_interval: Duration,
}

/// [`SqliteConfig::commit_interval`]'s default, the server's `sqlite_commit_interval`: at most
/// 1,000 commits a second. At 2,000 messages a second it took the server's CPU from ~60 % to
/// ~35-40 % of a core and its disk flushes from 2,235 to 483 a second, for ~2 ms more at the
/// median (BENCHMARKS.md, session 20).
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(1);

impl SqliteConfig {
    pub fn new(url: impl Into<String>) -> Self {
        SqliteConfig {
            url: url.into(),
            durability: Durability::Full,
            read_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            checkpoint: CheckpointPolicy::default(),
            commit_interval: DEFAULT_COMMIT_INTERVAL,
        }
    }
}

/// Jibber's storage on SQLite.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// sqlx's one-connection writer pool behind the process's write lock.
    writer: write_lock::Writer,
    reader: SqlitePool,
    /// The hot reads (history, sync, chat list, change feed): one blocking call each.
    reads: reader::ReadPool,
    /// The writer task that gathers concurrent sends and delivery receipts into one
    /// transaction.
    writes: GroupCommit<Write, Written>,
}

fn backend_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::RowNotFound => StoreError::NotFound,
        other => StoreError::Backend(other.to_string()),
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn uuid_col(row: &SqliteRow, col: &str) -> Result<Uuid> {
    let s: String = row.try_get(col).map_err(backend_err)?;
    Uuid::parse_str(&s).map_err(|e| StoreError::Backend(format!("bad uuid in {col}: {e}")))
}

fn opt_uuid_col(row: &SqliteRow, col: &str) -> Result<Option<Uuid>> {
    let s: Option<String> = row.try_get(col).map_err(backend_err)?;
    s.map(|s| {
        Uuid::parse_str(&s).map_err(|e| StoreError::Backend(format!("bad uuid in {col}: {e}")))
    })
    .transpose()
}

fn get<'r, T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>>(
    row: &'r SqliteRow,
    col: &str,
) -> Result<T> {
    row.try_get(col).map_err(backend_err)
}

fn user_from_row(row: &SqliteRow) -> Result<UserRecord> {
    Ok(UserRecord {
        id: uuid_col(row, "id")?,
        username: get(row, "username")?,
        email: get(row, "email")?,
        display_name: get(row, "display_name")?,
        registration_record: get(row, "registration_record")?,
        public_id_key: get(row, "public_id_key")?,
        public_signing_key: get(row, "public_signing_key")?,
        key_bundle: get(row, "key_bundle")?,
        created_at: from_ms(get(row, "created_at")?),
        last_seen: get::<Option<i64>>(row, "last_seen")?.map(from_ms),
    })
}

fn public_user_from_row(row: &SqliteRow) -> Result<PublicUser> {
    Ok(PublicUser {
        id: uuid_col(row, "id")?,
        username: get(row, "username")?,
        display_name: get(row, "display_name")?,
        public_id_key: get::<Vec<u8>>(row, "public_id_key")?.into(),
        public_signing_key: get::<Vec<u8>>(row, "public_signing_key")?.into(),
        last_seen: get::<Option<i64>>(row, "last_seen")?.map(from_ms),
    })
}

/// One entry of a user's change feed.
#[derive(Clone, Copy)]
pub(crate) struct FeedEntry {
    kind: &'static str,
    chat: Uuid,
    message: Option<Uuid>,
    actor: Option<Uuid>,
    up_to: Option<i64>,
    at: OffsetDateTime,
}

/// Stores change `e` once and appends it to the feeds of `users`, inside the caller's
/// transaction.
async fn push_change(tx: &mut SqliteConnection, users: &[Uuid], e: FeedEntry) -> Result<()> {
    let FeedEntry {
        kind,
        chat,
        message,
        actor,
        up_to,
        at,
    } = e;
    let change = sqlx::query(sql::INSERT_CHANGE)
        .bind(kind)
        .bind(chat.to_string())
        .bind(message.map(|m| m.to_string()))
        .bind(actor.map(|a| a.to_string()))
        .bind(up_to)
        .bind(to_ms(at))
        .execute(&mut *tx)
        .await
        .map_err(backend_err)?
        .last_insert_rowid();
    for user in users {
        let (feed, seq): (i64, i64) = sqlx::query_as(sql::BUMP_CHANGE_SEQ)
            .bind(user.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_err)?;
        let tail_len = sqlx::query(sql::INSERT_FEED_ENTRY)
            .bind(feed)
            .bind(seq)
            .bind(change)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?
            .last_insert_rowid();
        if tail_len >= sql::FEED_TAIL_MAX {
            for statement in sql::MOVE_FEED_TAIL {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend_err)?;
            }
        }
    }
    Ok(())
}

/// The batch writer's page cache (SQLite's `cache_size`, in KiB): the pages of the indexes it
/// writes stay in memory instead of being read back from the file for every batch.
pub(crate) const WRITER_CACHE_KIB: u32 = 32 * 1024;

/// How many writes (sends and delivery receipts) one batch transaction takes at most. A batch
/// writes about one page per chat and per user it touches whatever its size, so the pages per
/// message fall as batches grow: at the shared cap of 256 the relay's batches were always full
/// (800 writes waiting), and 1,024 delivered 9 % more (BENCHMARKS.md, session 7). A batch of
/// 1,024 holds at most a few MiB and commits in a few milliseconds.
const MAX_WRITE_BATCH: usize = 1024;

impl SqliteStore {
    /// Opens (creating if needed) the database and runs the migrations.
    pub async fn open(config: &SqliteConfig) -> Result<Self> {
        // Before the first connection: SQLite takes a page cache only until it initializes.
        if !page_cache::install() {
            tracing::debug!("SQLite was initialized before the store opened: default page cache");
        }
        let opts = SqliteConnectOptions::from_str(&config.url)
            .map_err(backend_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            // The checkpointer copies the WAL back; SQLite's own checkpoint is its safety net.
            .pragma(
                "wal_autocheckpoint",
                config.checkpoint.autocheckpoint_frames.to_string(),
            )
            .busy_timeout(Duration::from_secs(5));
        let filename = opts.get_filename().to_owned();
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(opts.clone())
            .await
            .map_err(backend_err)?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        let writer = write_lock::Writer::new(writer);
        let reader = SqlitePoolOptions::new()
            .max_connections(config.read_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(opts.read_only(true))
            .await
            .map_err(backend_err)?;
        let batch_writer = writer::BatchWriter::open(
            &filename,
            config.durability,
            config.checkpoint,
            writer.clone(),
        )?;
        let reads =
            reader::ReadPool::open(&filename, config.read_connections, config.acquire_timeout)?;
        let writes = GroupCommit::spawn(
            "sqlite",
            "write",
            MAX_WRITE_BATCH,
            config.commit_interval,
            {
                let (batch_writer, reads) = (batch_writer.clone(), reads.clone());
                move |batch| write_batch(batch_writer.clone(), reads.clone(), batch)
            },
        );
        Ok(SqliteStore {
            writer,
            reader,
            reads,
            writes,
        })
    }

    /// Hands `writes` to the batch writer as one batch (with `bench`: the writer's cost,
    /// measured by `examples/writer_cost.rs`).
    #[cfg(feature = "bench")]
    pub async fn submit_writes(&self, writes: Vec<Write>) -> Vec<Result<Written>> {
        self.writes.submit_many(writes).await
    }

    /// The read pool, for tests and tools that inspect the database (query plans).
    pub fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// Closes both pools, waiting for connections to return.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
        self.reads.close();
    }

    async fn begin(&self) -> Result<write_lock::WriteTx> {
        self.writer.begin().await
    }

    async fn chats(&self, me: Uuid, filter: reader::ChatFilter, limit: u32) -> Result<Vec<Chat>> {
        self.reads
            .run(move |conn| reader::chats(conn, me, &filter, limit))
            .await
    }

    async fn messages_by_ids(&self, ids: Vec<String>) -> Result<Vec<Message>> {
        self.reads
            .run(move |conn| reader::messages_by_ids(conn, &ids))
            .await
    }
}

/// Writes a batch of sends and receipts (see [`writer::BatchWriter::writes`]); a repeated send
/// answers the first message, read back after the commit.
async fn write_batch(
    batch_writer: writer::BatchWriter,
    reads: reader::ReadPool,
    batch: Vec<Write>,
) -> Result<Vec<Result<Written>>> {
    let outcomes = batch_writer.writes(batch).await?;
    let repeats: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Ok(writer::Outcome::Duplicate(id)) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    let firsts = if repeats.is_empty() {
        Vec::new()
    } else {
        reads
            .run(move |conn| reader::messages_by_ids(conn, &repeats))
            .await?
    };
    Ok(outcomes
        .into_iter()
        .map(|o| match o? {
            writer::Outcome::Stored(message) => Ok(Written::Sent(Sent {
                message: *message,
                duplicate: false,
            })),
            writer::Outcome::Duplicate(id) => firsts
                .iter()
                .find(|m| m.id == id)
                .map(|m| {
                    Written::Sent(Sent {
                        message: m.clone(),
                        duplicate: true,
                    })
                })
                .ok_or_else(|| StoreError::Backend(format!("message {id} vanished"))),
            writer::Outcome::Delivered(receipt) => Ok(Written::Delivered(receipt)),
        })
        .collect())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        let _t = query_timer!("sqlite", "ping");
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }

    async fn create_user(&self, u: NewUser) -> Result<UserRecord> {
        let _t = query_timer!("sqlite", "create_user");
        let res = sqlx::query(sql::INSERT_USER)
            .bind(u.id.to_string())
            .bind(&u.username)
            .bind(u.username.to_lowercase())
            .bind(&u.email)
            .bind(&u.display_name)
            .bind(&u.registration_record)
            .bind(&u.public_id_key)
            .bind(&u.public_signing_key)
            .bind(&u.key_bundle)
            .bind(to_ms(u.created_at))
            .execute(&mut *self.writer.conn().await?)
            .await;
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                let what = if e.to_string().contains("email") {
                    "email"
                } else {
                    "username"
                };
                return Err(StoreError::Conflict(what));
            }
            Err(e) => return Err(backend_err(e)),
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
            created_at: u.created_at,
            last_seen: None,
        })
    }

    async fn user_by_username(&self, username: &str) -> Result<Option<UserRecord>> {
        let _t = query_timer!("sqlite", "user_by_username");
        let row = sqlx::query(sql::USER_BY_USERNAME)
            .bind(username.to_lowercase())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn user_by_id(&self, id: Uuid) -> Result<Option<UserRecord>> {
        let _t = query_timer!("sqlite", "user_by_id");
        let row = sqlx::query(sql::USER_BY_ID)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend_err)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self, limit: u32, offset: u64) -> Result<Vec<UserRecord>> {
        let _t = query_timer!("sqlite", "list_users");
        let rows = sqlx::query("SELECT * FROM users ORDER BY username_lower LIMIT ?1 OFFSET ?2")
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
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
        let _t = query_timer!("sqlite", "rotate_keys");
        let done = sqlx::query(
            "UPDATE users SET public_id_key = ?2, public_signing_key = ?3, key_bundle = ?4 WHERE id = ?1",
        )
        .bind(user.to_string())
        .bind(public_id_key)
        .bind(public_signing_key)
        .bind(key_bundle)
        .execute(&mut *self.writer.conn().await?)
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
        let _t = query_timer!("sqlite", "contacts");
        let pattern = search
            .filter(|s| !s.is_empty())
            .map(|s| format!("%{}%", like_escape(&s.to_lowercase())));
        let rows = sqlx::query(sql::CONTACTS)
            .bind(me.to_string())
            .bind(after.unwrap_or(""))
            .bind(pattern)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(backend_err)?;
        rows.iter().map(public_user_from_row).collect()
    }

    async fn set_last_seen(&self, user: Uuid, at: OffsetDateTime) -> Result<()> {
        let _t = query_timer!("sqlite", "set_last_seen");
        sqlx::query("UPDATE users SET last_seen = ?2 WHERE id = ?1")
            .bind(user.to_string())
            .bind(to_ms(at))
            .execute(&mut *self.writer.conn().await?)
            .await
            .map_err(backend_err)?;
        Ok(())
    }

    async fn put_pending_login(&self, login: PendingLogin) -> Result<()> {
        let _t = query_timer!("sqlite", "put_pending_login");
        sqlx::query(
            "INSERT INTO pending_logins (id, user_id, state, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(login.id.to_string())
        .bind(login.user_id.map(|u| u.to_string()))
        .bind(login.state)
        .bind(to_ms(login.expires_at))
        .execute(&mut *self.writer.conn().await?)
        .await
        .map_err(backend_err)?;
        Ok(())
    }

    async fn take_pending_login(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Option<PendingLogin>> {
        let _t = query_timer!("sqlite", "take_pending_login");
        let row = sqlx::query(
            "DELETE FROM pending_logins WHERE id = ?1 RETURNING id, user_id, state, expires_at",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.writer.conn().await?)
        .await
        .map_err(backend_err)?;
        let Some(row) = row else { return Ok(None) };
        let login = PendingLogin {
            id: uuid_col(&row, "id")?,
            user_id: opt_uuid_col(&row, "user_id")?,
            state: get(&row, "state")?,
            expires_at: from_ms(get(&row, "expires_at")?),
        };
        Ok((login.expires_at > now).then_some(login))
    }

    async fn purge_expired(&self, now: OffsetDateTime) -> Result<u64> {
        let _t = query_timer!("sqlite", "purge_expired");
        let now = to_ms(now);
        let a = sqlx::query("DELETE FROM pending_logins WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *self.writer.conn().await?)
            .await
            .map_err(backend_err)?;
        let b = sqlx::query("DELETE FROM refresh_tokens WHERE expires_at <= ?1")
            .bind(now)
            .execute(&mut *self.writer.conn().await?)
            .await
            .map_err(backend_err)?;
        Ok(a.rows_affected() + b.rows_affected())
    }

    async fn insert_refresh_token(&self, t: NewRefreshToken) -> Result<()> {
        let _t = query_timer!("sqlite", "insert_refresh_token");
        sqlx::query(sql::INSERT_REFRESH)
            .bind(t.id.to_string())
            .bind(t.user_id.to_string())
            .bind(t.family_id.to_string())
            .bind(t.token_hash.as_slice())
            .bind(to_ms(t.created_at))
            .bind(to_ms(t.expires_at))
            .execute(&mut *self.writer.conn().await?)
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
        let _t = query_timer!("sqlite", "rotate_refresh_token");
        let now_ms = to_ms(now);
        let mut tx = self.begin().await?;
        // Spend the token only if it is live; the WHERE makes a concurrent second use fail.
        let spent = sqlx::query(sql::SPEND_REFRESH)
            .bind(old.as_slice())
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
        if let Some(row) = spent {
            let user_id = uuid_col(&row, "user_id")?;
            let family_id = uuid_col(&row, "family_id")?;
            sqlx::query(sql::INSERT_REFRESH)
                .bind(next.id.to_string())
                .bind(user_id.to_string())
                .bind(family_id.to_string())
                .bind(next.token_hash.as_slice())
                .bind(to_ms(next.created_at))
                .bind(to_ms(next.expires_at))
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
            tx.commit().await?;
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
        let expires_at: i64 = get(&row, "expires_at")?;
        let spent_or_revoked = get::<Option<i64>>(&row, "spent_at")?.is_some()
            || get::<Option<i64>>(&row, "revoked_at")?.is_some();
        if spent_or_revoked {
            let user_id = uuid_col(&row, "user_id")?;
            sqlx::query(sql::REVOKE_FAMILY)
                .bind(get::<String>(&row, "family_id")?)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(backend_err)?;
            tx.commit().await?;
            return Ok(RefreshCheck::Reused { user_id });
        }
        debug_assert!(expires_at <= now_ms);
        Ok(RefreshCheck::Expired)
    }

    async fn check_refresh_token(
        &self,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<RefreshCheck> {
        let _t = query_timer!("sqlite", "check_refresh_token");
        let row = sqlx::query(sql::REFRESH_BY_HASH)
            .bind(hash.as_slice())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend_err)?;
        let Some(row) = row else {
            return Ok(RefreshCheck::Unknown);
        };
        let user_id = uuid_col(&row, "user_id")?;
        if get::<Option<i64>>(&row, "spent_at")?.is_some()
            || get::<Option<i64>>(&row, "revoked_at")?.is_some()
        {
            return Ok(RefreshCheck::Reused { user_id });
        }
        if get::<i64>(&row, "expires_at")? <= to_ms(now) {
            return Ok(RefreshCheck::Expired);
        }
        Ok(RefreshCheck::Valid {
            user_id,
            family_id: uuid_col(&row, "family_id")?,
        })
    }

    async fn revoke_refresh_family(&self, hash: [u8; 32], now: OffsetDateTime) -> Result<bool> {
        let _t = query_timer!("sqlite", "revoke_refresh_family");
        let mut tx = self.begin().await?;
        let family: Option<String> =
            sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = ?1")
                .bind(hash.as_slice())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend_err)?;
        let Some(family) = family else {
            return Ok(false);
        };
        sqlx::query(sql::REVOKE_FAMILY)
            .bind(family)
            .bind(to_ms(now))
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_or_get_chat(
        &self,
        me: Uuid,
        other: Uuid,
        new_id: Uuid,
        now: OffsetDateTime,
    ) -> Result<ChatForUser> {
        let _t = query_timer!("sqlite", "create_or_get_chat");
        if me == other {
            return Err(StoreError::NotFound);
        }
        let (low, high) = if me < other { (me, other) } else { (other, me) };
        let now_ms = to_ms(now);
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO chats (id, user_low, user_high, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (user_low, user_high) DO NOTHING",
        )
        .bind(new_id.to_string())
        .bind(low.to_string())
        .bind(high.to_string())
        .bind(now_ms)
        .execute(&mut *tx)
        .await;
        let created = match inserted {
            Ok(r) => r.rows_affected() == 1,
            // The other user does not exist.
            Err(sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                return Err(StoreError::NotFound);
            }
            Err(e) => return Err(backend_err(e)),
        };
        let chat_id = if created {
            for (user, peer) in [(me, other), (other, me)] {
                sqlx::query(
                    "INSERT INTO chat_members (chat_id, user_id, other_id, last_activity) VALUES (?1, ?2, ?3, ?4)",
                )
                .bind(new_id.to_string())
                .bind(user.to_string())
                .bind(peer.to_string())
                .bind(now_ms)
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
            let id: String =
                sqlx::query_scalar("SELECT id FROM chats WHERE user_low = ?1 AND user_high = ?2")
                    .bind(low.to_string())
                    .bind(high.to_string())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(backend_err)?;
            Uuid::parse_str(&id).map_err(|e| StoreError::Backend(e.to_string()))?
        };
        tx.commit().await?;
        let chat = self.chat_for(me, chat_id).await?;
        Ok(ChatForUser { chat, created })
    }

    async fn chat_for(&self, me: Uuid, chat: Uuid) -> Result<Chat> {
        let _t = query_timer!("sqlite", "chat_for");
        self.chats(me, reader::ChatFilter::Ids(vec![chat]), 1)
            .await?
            .pop()
            .ok_or(StoreError::NotFound)
    }

    async fn chat_members(&self, me: Uuid, chat: Uuid) -> Result<(Uuid, Uuid)> {
        let _t = query_timer!("sqlite", "chat_members");
        let other: Option<String> = sqlx::query_scalar(
            "SELECT other_id FROM chat_members WHERE chat_id = ?1 AND user_id = ?2",
        )
        .bind(chat.to_string())
        .bind(me.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend_err)?;
        let other = other.ok_or(StoreError::NotFound)?;
        Ok((
            me,
            Uuid::parse_str(&other).map_err(|e| StoreError::Backend(e.to_string()))?,
        ))
    }

    async fn chat_peers(&self, me: Uuid) -> Result<Vec<Uuid>> {
        let _t = query_timer!("sqlite", "chat_peers");
        self.reads
            .run(move |conn| reader::chat_peers(conn, me))
            .await
    }

    async fn list_chats(
        &self,
        me: Uuid,
        after: Option<ChatCursor>,
        limit: u32,
    ) -> Result<Vec<Chat>> {
        let _t = query_timer!("sqlite", "list_chats");
        let filter = match after {
            None => reader::ChatFilter::First,
            Some(c) => reader::ChatFilter::After(c.activity_ms, c.chat_id),
        };
        self.chats(me, filter, limit).await
    }

    async fn send_message(&self, m: NewMessage, count_unread: bool) -> Result<Sent> {
        self.queue_message(m, count_unread).await.await
    }

    async fn queue_message(&self, m: NewMessage, count_unread: bool) -> QueuedSend {
        self.writes
            .queue_send(m, count_unread, query_timer!("sqlite", "send_message"))
            .await
    }

    async fn send_messages(&self, sends: Vec<SendRequest>) -> Vec<Result<Sent>> {
        let _t = query_timer!("sqlite", "send_messages");
        self.writes
            .submit_many(sends.into_iter().map(Write::Send).collect())
            .await
            .into_iter()
            .map(|w| w.and_then(SendAnswer::into_sent))
            .collect()
    }

    async fn messages_before(
        &self,
        me: Uuid,
        chat: Uuid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let _t = query_timer!("sqlite", "messages_before");
        let before = before.unwrap_or(i64::MAX);
        self.reads
            .run(move |conn| reader::history(conn, me, chat, before, limit))
            .await
    }

    async fn messages_since(
        &self,
        me: Uuid,
        chat: Uuid,
        since: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let _t = query_timer!("sqlite", "messages_since");
        self.reads
            .run(move |conn| reader::since(conn, me, chat, since, limit))
            .await
    }

    async fn message_for(&self, me: Uuid, id: Uuid) -> Result<Message> {
        let _t = query_timer!("sqlite", "message_for");
        let msg = self
            .messages_by_ids(vec![id.to_string()])
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
        let _t = query_timer!("sqlite", "mark_delivered");
        match self
            .writes
            .submit(Write::Delivered(DeliveryRequest {
                me,
                message,
                at: now,
            }))
            .await?
            .into_delivered()?
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
        let _t = query_timer!("sqlite", "mark_read");
        let now_ms = to_ms(now);
        let mut tx = self.begin().await?;
        let member: Option<(String, i64, i64)> = sqlx::query_as(sql::READ_FLOOR)
            .bind(chat.to_string())
            .bind(me.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend_err)?;
        let (other, floor, last) = member.ok_or(StoreError::NotFound)?;
        // After the marks, everything up to `up_to` is read, but never beyond the chat's last
        // message: one that comes later must not count as read.
        let new_floor = floor.max(up_to.min(last));
        let marked = sqlx::query(sql::MARK_READ)
            .bind(chat.to_string())
            .bind(me.to_string())
            .bind(up_to)
            .bind(now_ms)
            .bind(floor)
            .execute(&mut *tx)
            .await
            .map_err(backend_err)?
            .rows_affected();
        let unread: i64 = sqlx::query_scalar(sql::RECOUNT_UNREAD)
            .bind(chat.to_string())
            .bind(me.to_string())
            .bind(new_floor)
            .fetch_one(&mut *tx)
            .await
            .map_err(backend_err)?;
        if marked > 0 {
            let other = Uuid::parse_str(&other).map_err(|e| StoreError::Backend(e.to_string()))?;
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
        tx.commit().await?;
        Ok(ReadReceipt {
            chat_id: chat,
            up_to_sequence: up_to,
            read_at: now,
            marked: i64::try_from(marked).unwrap_or(i64::MAX),
            unread_count: unread,
        })
    }

    async fn changes_since(&self, me: Uuid, since: i64, limit: u32) -> Result<Vec<Change>> {
        let _t = query_timer!("sqlite", "changes_since");
        self.reads
            .run(move |conn| reader::changes_since(conn, me, since, limit))
            .await
    }
}
