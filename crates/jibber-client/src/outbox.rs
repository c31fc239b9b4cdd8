//! The outbox: sends not yet acknowledged by the server, kept in SQLite so that a message written
//! while offline, or in flight when the process died, is sent after a restart. Each entry is the
//! sealed body with its `tempMessageId`; the server stores a repeated `tempMessageId` of the same
//! sender once, so sending an entry again after a crash never makes a duplicate.
//!
//! The same file keeps the client's change-feed cursor (`/sync`) and, per chat, the last
//! sequence handed to the application, so a restarted client catches up from where it stopped
//! and does not show a chat again; and the contacts' trusted public keys, so a key change between
//! two runs is noticed and messages sealed before a contact's rotation still verify.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use jibber_proto::api::PublicUser;
use jibber_proto::{B64, ErrorCode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};
use uuid::Uuid;

use crate::ClientError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    temp_id TEXT NOT NULL UNIQUE,
    chat_id TEXT NOT NULL,
    body TEXT NOT NULL,
    failed_code TEXT,
    failed_reason TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_keys (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    id_key TEXT NOT NULL,
    signing_key TEXT NOT NULL,
    profile TEXT NOT NULL,
    UNIQUE (user_id, id_key, signing_key)
);";

/// One unsent message.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub temp_id: String,
    pub chat_id: Uuid,
    /// The `sendMessage` payload (sealed).
    pub body: serde_json::Value,
    /// Set when the server refused the message for good; [`Outbox::retry`] clears it.
    pub failed: Option<(ErrorCode, String)>,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// The on-disk (or in-memory) outbox of one account on one device.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: SqlitePool,
    /// In memory: a connection that only holds the database open. SQLite drops an in-memory
    /// database with its last connection, and the pool closes its connection whenever an
    /// operation on it is cancelled (a task aborted at a reconnect): without this one, the next
    /// operation would meet an empty database, the unsent messages gone.
    _keeper: Option<Arc<Keeper>>,
}

/// (The mutex only makes the connection shareable; nothing locks it.)
struct Keeper {
    _conn: tokio::sync::Mutex<sqlx::SqliteConnection>,
}

impl std::fmt::Debug for Keeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keeper")
    }
}

fn storage(e: sqlx::Error) -> ClientError {
    ClientError::Storage(e.to_string())
}

impl Outbox {
    /// Opens (creating if needed) the outbox file. Commits are durable (WAL, synchronous=FULL):
    /// a message is in the outbox before `send` returns.
    pub async fn open(path: &Path) -> Result<Outbox, ClientError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| ClientError::Storage(e.to_string()))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        Self::with(options).await
    }

    /// An outbox that lives as long as the process (for clients that keep nothing on disk).
    pub async fn in_memory() -> Result<Outbox, ClientError> {
        // A named, shared-cache database (sqlx names each `:memory:` one): every connection to
        // these options sees the same data.
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(storage)?;
        let keeper = options.connect().await.map_err(storage)?;
        let mut outbox = Self::with(options).await?;
        outbox._keeper = Some(Arc::new(Keeper {
            _conn: tokio::sync::Mutex::new(keeper),
        }));
        Ok(outbox)
    }

    async fn with(options: SqliteConnectOptions) -> Result<Outbox, ClientError> {
        // One connection: the outbox is small, and one writer keeps its order simple.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(storage)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(storage)?;
        Ok(Outbox {
            pool,
            _keeper: None,
        })
    }

    /// Adds a message; a second push of the same `temp_id` is ignored.
    pub async fn push(
        &self,
        temp_id: &str,
        chat_id: Uuid,
        body: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO outbox (temp_id, chat_id, body, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (temp_id) DO NOTHING",
        )
        .bind(temp_id)
        .bind(chat_id.to_string())
        .bind(body.to_string())
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// Every entry, oldest first.
    pub async fn entries(&self) -> Result<Vec<Entry>, ClientError> {
        let rows = sqlx::query(
            "SELECT temp_id, chat_id, body, failed_code, failed_reason, created_at
             FROM outbox ORDER BY position",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        rows.into_iter()
            .map(|r| {
                let chat: String = r.get("chat_id");
                let body: String = r.get("body");
                let code: Option<String> = r.get("failed_code");
                let reason: Option<String> = r.get("failed_reason");
                let corrupt = |e: String| ClientError::Storage(format!("outbox entry: {e}"));
                let failed = code.map(|c| {
                    (
                        serde_json::from_value(serde_json::Value::String(c))
                            .unwrap_or(ErrorCode::Internal),
                        reason.unwrap_or_default(),
                    )
                });
                Ok(Entry {
                    temp_id: r.get("temp_id"),
                    chat_id: Uuid::parse_str(&chat).map_err(|e| corrupt(e.to_string()))?,
                    body: serde_json::from_str(&body).map_err(|e| corrupt(e.to_string()))?,
                    failed,
                    created_at: r.get("created_at"),
                })
            })
            .collect()
    }

    /// Entries still to send, oldest first.
    pub async fn pending(&self) -> Result<Vec<Entry>, ClientError> {
        Ok(self
            .entries()
            .await?
            .into_iter()
            .filter(|e| e.failed.is_none())
            .collect())
    }

    /// Forgets an entry the server acknowledged; true when it was there.
    pub async fn remove(&self, temp_id: &str) -> Result<bool, ClientError> {
        let done = sqlx::query("DELETE FROM outbox WHERE temp_id = ?")
            .bind(temp_id)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks an entry refused for good (it stays, visible, until retried or discarded).
    pub async fn fail(
        &self,
        temp_id: &str,
        code: ErrorCode,
        reason: &str,
    ) -> Result<(), ClientError> {
        sqlx::query("UPDATE outbox SET failed_code = ?, failed_reason = ? WHERE temp_id = ?")
            .bind(code.as_str())
            .bind(reason)
            .bind(temp_id)
            .execute(&self.pool)
            .await
            .map_err(storage)?;
        Ok(())
    }

    /// Puts a failed entry back in line; true when there was one.
    pub async fn retry(&self, temp_id: &str) -> Result<bool, ClientError> {
        let done = sqlx::query(
            "UPDATE outbox SET failed_code = NULL, failed_reason = NULL
             WHERE temp_id = ? AND failed_code IS NOT NULL",
        )
        .bind(temp_id)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(done.rows_affected() > 0)
    }

    /// The change-feed cursor the client has applied (0 when it never synced).
    pub async fn cursor(&self) -> Result<i64, ClientError> {
        let row = sqlx::query("SELECT value FROM state WHERE key = 'sync_cursor'")
            .fetch_optional(&self.pool)
            .await
            .map_err(storage)?;
        Ok(row.map(|r| r.get::<i64, _>("value")).unwrap_or(0))
    }

    /// Records the applied change-feed cursor.
    pub async fn set_cursor(&self, cursor: i64) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO state (key, value) VALUES ('sync_cursor', ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(cursor)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// Per chat, the last sequence the client handed to the application (so that a restarted
    /// client does not show them again).
    pub async fn applied(&self) -> Result<Vec<(Uuid, i64)>, ClientError> {
        let rows = sqlx::query("SELECT key, value FROM state WHERE key LIKE 'applied:%'")
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let key: String = r.get("key");
                let chat = Uuid::parse_str(key.strip_prefix("applied:")?).ok()?;
                Some((chat, r.get::<i64, _>("value")))
            })
            .collect())
    }

    /// Records that a chat was handed to the application up to `sequence` (never moves back).
    pub async fn set_applied(&self, chat: Uuid, sequence: i64) -> Result<(), ClientError> {
        sqlx::query(
            "INSERT INTO state (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        )
        .bind(format!("applied:{chat}"))
        .bind(sequence)
        .execute(&self.pool)
        .await
        .map_err(storage)?;
        Ok(())
    }

    /// Records a contact's public keys as their current trusted pair (trust on first use,
    /// docs/crypto.md §7.2); pairs trusted before stay, older.
    pub async fn trust_peer(&self, peer: &PublicUser) -> Result<(), ClientError> {
        let profile = serde_json::to_string(peer)
            .map_err(|e| ClientError::Storage(format!("peer keys: {e}")))?;
        let mut tx = self.pool.begin().await.map_err(storage)?;
        let keys = (
            peer.id.to_string(),
            B64::encode(peer.public_id_key.as_bytes()),
            B64::encode(peer.public_signing_key.as_bytes()),
        );
        // Deleted and inserted again: the newest position is the current pair.
        sqlx::query("DELETE FROM peer_keys WHERE user_id = ? AND id_key = ? AND signing_key = ?")
            .bind(&keys.0)
            .bind(&keys.1)
            .bind(&keys.2)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        sqlx::query(
            "INSERT INTO peer_keys (user_id, id_key, signing_key, profile) VALUES (?, ?, ?, ?)",
        )
        .bind(&keys.0)
        .bind(&keys.1)
        .bind(&keys.2)
        .bind(profile)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        tx.commit().await.map_err(storage)
    }

    /// Every trusted key pair of every contact, newest first (so a contact's current pair comes
    /// before the ones it replaced).
    pub async fn trusted_peers(&self) -> Result<Vec<PublicUser>, ClientError> {
        let rows = sqlx::query("SELECT profile FROM peer_keys ORDER BY position DESC")
            .fetch_all(&self.pool)
            .await
            .map_err(storage)?;
        rows.into_iter()
            .map(|r| {
                serde_json::from_str(r.get::<&str, _>("profile"))
                    .map_err(|e| ClientError::Storage(format!("peer keys: {e}")))
            })
            .collect()
    }

    /// Closes the file (waits for the connection to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool closes a connection whose operation was cancelled; an in-memory outbox must
    /// keep its entries (and its tables) through that.
    #[tokio::test]
    async fn an_in_memory_outbox_survives_its_connection_closing() {
        let outbox = Outbox::in_memory().await.expect("outbox");
        let chat = Uuid::now_v7();
        outbox
            .push("t1", chat, &serde_json::json!({"n": 1}), 1)
            .await
            .expect("push");
        let conn = outbox.pool.acquire().await.expect("acquire");
        conn.close().await.expect("close");
        let entries = outbox
            .entries()
            .await
            .expect("entries after a new connection");
        assert_eq!(
            entries
                .iter()
                .map(|e| e.temp_id.as_str())
                .collect::<Vec<_>>(),
            ["t1"]
        );
    }

    #[tokio::test]
    async fn entries_survive_reopening_in_order_and_failures_can_be_retried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("outbox.db");
        let chat = Uuid::now_v7();
        {
            let outbox = Outbox::open(&path).await.expect("open");
            for i in 0..5 {
                let body = serde_json::json!({ "n": i });
                outbox
                    .push(&format!("t{i}"), chat, &body, i)
                    .await
                    .expect("push");
            }
            // A repeated push is ignored.
            outbox
                .push("t0", chat, &serde_json::json!({ "n": 99 }), 9)
                .await
                .expect("push again");
            outbox
                .fail("t1", ErrorCode::ValidationFailed, "bad")
                .await
                .expect("fail");
            outbox.set_cursor(42).await.expect("cursor");
            outbox.close().await;
        }
        let outbox = Outbox::open(&path).await.expect("reopen");
        let all = outbox.entries().await.expect("entries");
        let ids: Vec<&str> = all.iter().map(|e| e.temp_id.as_str()).collect();
        assert_eq!(ids, ["t0", "t1", "t2", "t3", "t4"]);
        assert_eq!(all[0].body, serde_json::json!({ "n": 0 }));
        assert_eq!(
            all[1].failed,
            Some((ErrorCode::ValidationFailed, "bad".to_owned()))
        );
        let pending: Vec<String> = outbox
            .pending()
            .await
            .expect("pending")
            .into_iter()
            .map(|e| e.temp_id)
            .collect();
        assert_eq!(pending, ["t0", "t2", "t3", "t4"]);
        assert_eq!(outbox.cursor().await.expect("cursor"), 42);
        outbox.set_applied(chat, 7).await.expect("applied");
        outbox
            .set_applied(chat, 5)
            .await
            .expect("applied never moves back");
        assert_eq!(outbox.applied().await.expect("applied"), [(chat, 7)]);

        assert!(outbox.retry("t1").await.expect("retry"));
        assert!(!outbox.retry("t1").await.expect("retry twice"));
        assert!(outbox.remove("t0").await.expect("remove"));
        assert!(!outbox.remove("t0").await.expect("remove twice"));
        let pending: Vec<String> = outbox
            .pending()
            .await
            .expect("pending")
            .into_iter()
            .map(|e| e.temp_id)
            .collect();
        assert_eq!(pending, ["t1", "t2", "t3", "t4"]);
    }
}
