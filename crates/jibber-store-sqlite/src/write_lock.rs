//! The process's write lock: one writer at a time, queued fairly in the process instead of in
//! SQLite's busy handler.
//!
//! Two connections write: sqlx's one-connection writer pool (accounts, chats, read marks) and
//! the batch writer's rusqlite connection (sends and receipts). Each takes this lock before it
//! begins and holds it until it has committed, so neither meets `SQLITE_BUSY` on the other.
//!
//! The lock used to be the sqlx pool itself: the batch writer held the pool's one connection
//! while it ran a batch. But sqlx pings a SQLite connection on its worker thread when it is
//! acquired and again, from a task of its own, when it is released, so every batch cost two
//! round trips to a thread that did no work for it: at half the maximum rate the server's core is
//! ~90 % busy, and each hand-off waited for its turn (BENCHMARKS.md, session 17). This lock is a
//! `tokio::sync::Mutex`, fair (first come, first served) and without a thread of its own; sqlx's
//! writes take it and then their connection, the batch writer takes only it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use jibber_store::{Result, StoreError};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Sqlite, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::backend_err;

/// sqlx's writer pool behind the write lock; cloning shares both.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pool: SqlitePool,
    lock: Arc<Mutex<()>>,
}

/// The write lock, held: nothing else writes until it is dropped.
pub(crate) type Held = OwnedMutexGuard<()>;

impl Writer {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Writer {
            pool,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// Takes the write lock alone (the batch writer, which has a connection of its own). Waits
    /// at most the pool's acquire timeout, as a wait for the pool's connection did: a writer
    /// stuck behind another gets [`StoreError::Unavailable`] instead of waiting forever.
    pub(crate) async fn lock(&self) -> Result<Held> {
        let wait = self.pool.options().get_acquire_timeout();
        tokio::time::timeout(wait, self.lock.clone().lock_owned())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("the write lock was not free within {wait:?}"))
            })
    }

    /// The writer connection, for statements that commit on their own.
    pub(crate) async fn conn(&self) -> Result<WriteConn> {
        let lock = self.lock().await?;
        let conn = self.pool.acquire().await.map_err(backend_err)?;
        Ok(WriteConn { conn, _lock: lock })
    }

    /// A transaction on the writer connection; dropping it uncommitted rolls it back.
    pub(crate) async fn begin(&self) -> Result<WriteTx> {
        let lock = self.lock().await?;
        let tx = self.pool.begin().await.map_err(backend_err)?;
        Ok(WriteTx { tx, _lock: lock })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

/// The writer connection with the write lock (the connection goes back to the pool first).
pub(crate) struct WriteConn {
    conn: PoolConnection<Sqlite>,
    _lock: Held,
}

impl Deref for WriteConn {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

/// A transaction on the writer connection with the write lock.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Sqlite>,
    _lock: Held,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(backend_err)
    }
}

impl Deref for WriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    async fn writer() -> Writer {
        writer_waiting(std::time::Duration::from_secs(5)).await
    }

    /// A writer whose lock is waited for at most `wait` (the pool's acquire timeout).
    async fn writer_waiting(wait: std::time::Duration) -> Writer {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(wait)
            .connect("sqlite::memory:")
            .await
            .expect("pool");
        Writer::new(pool)
    }

    /// Whether the batch writer could take the lock now.
    fn free(w: &Writer) -> bool {
        w.lock.clone().try_lock_owned().is_ok()
    }

    #[tokio::test]
    async fn a_transaction_holds_the_lock_until_it_ends() {
        let w = writer().await;
        assert!(free(&w));
        let mut tx = w.begin().await.expect("begin");
        assert!(!free(&w), "the batch writer waits for an open transaction");
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *tx)
            .await
            .expect("create");
        tx.commit().await.expect("commit");
        assert!(free(&w), "a commit releases the lock");

        let tx = w.begin().await.expect("begin");
        assert!(!free(&w));
        drop(tx);
        assert!(free(&w), "a rollback releases the lock");
    }

    #[tokio::test]
    async fn a_statement_holds_the_lock_and_waits_for_a_batch() {
        let w = writer().await;
        let conn = w.conn().await.expect("conn");
        assert!(!free(&w), "the batch writer waits for a statement");
        drop(conn);
        assert!(free(&w));

        let batch = w.lock().await.expect("lock");
        let queued = tokio::spawn({
            let w = w.clone();
            async move { w.conn().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        assert!(!queued.is_finished(), "a statement waits for the batch");
        drop(batch);
        queued
            .await
            .expect("task")
            .expect("the statement got the connection");
    }

    #[tokio::test]
    async fn a_writer_waits_for_the_lock_no_longer_than_the_acquire_timeout() {
        let w = writer_waiting(std::time::Duration::from_millis(50)).await;
        let _batch = w.lock().await.expect("lock");
        match w.conn().await {
            Err(StoreError::Unavailable(_)) => {}
            Err(e) => panic!("expected Unavailable, got {e}"),
            Ok(_) => panic!("the statement got the lock while a batch held it"),
        }
        assert!(matches!(w.lock().await, Err(StoreError::Unavailable(_))));
    }
}
