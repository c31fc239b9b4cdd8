//! Checkpoints off the batch writer's path.
//!
//! In WAL mode every commit appends pages to the WAL, and a checkpoint copies them back into the
//! database file and syncs it. SQLite's automatic checkpoint runs inside the commit that crosses
//! its threshold, on the committing connection: the batch writer stopped for the whole copy and
//! sync (at 9,000 messages a second, about 1,100 pages and an `fsync` of the database every
//! ~0.2 s), and every message that arrived meanwhile waited for it. Moving it aside makes
//! such stalls in the tail rarer; it does not change the relay's p99 at high rates, which
//! the core's load sets (BENCHMARKS.md, session 15).
//!
//! Here a thread of its own, on a connection of its own, does the copying with passive
//! checkpoints, which never block the writer. One thing it cannot do alone: SQLite starts the
//! WAL over only when a write transaction begins while every frame of the WAL has been copied
//! back, and beside a busy writer a passive checkpoint always ends a few frames behind. So:
//!
//! 1. After each batch's commit the writer reads the WAL's length (`wal_checkpoint(NOOP)`: the
//!    WAL index header, no I/O). Once the WAL holds [`CheckpointPolicy::restart_frames`]
//!    frames it wakes the checkpointer.
//! 2. The checkpointer copies the WAL back, pass after pass, until at most
//!    [`CheckpointPolicy::catch_up_frames`] frames are left, and then asks the writer to catch
//!    up.
//! 3. Before its next batch the writer copies that short rest itself (a passive checkpoint on
//!    its own connection, while nothing else writes), and that batch's transaction starts the
//!    WAL over.
//!
//! SQLite's own automatic checkpoint stays on every connection at
//! [`CheckpointPolicy::autocheckpoint_frames`], well above the restart threshold, as a safety
//! net: it only runs if the checkpointer cannot keep up (or stops).
//!
//! Durability does not depend on any of this: a commit is in the WAL, and with
//! `synchronous=FULL` synced, before it is acknowledged; a checkpoint syncs the database file
//! before the WAL is reused. The time of every checkpoint pass is in the
//! `jibber_store_checkpoint_seconds{by}` histogram (`by`: `checkpointer` or `writer`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use jibber_store::{Result, StoreError};
use rusqlite::Connection;

use crate::writer::sq_err;

/// When the WAL is copied back and started over. The defaults suit any load; tests use small
/// values to exercise the cycle quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// WAL frames (4 KiB pages) after which the checkpointer copies the WAL back and the WAL
    /// is started over. 10,000 frames is a WAL of about 40 MiB: a shorter WAL would rewrite the
    /// same hot pages (index leaves, counters) to the database file more often.
    pub restart_frames: u32,
    /// The most frames the checkpointer leaves to the writer, which copies them while the
    /// batches wait.
    pub catch_up_frames: u32,
    /// SQLite's own automatic checkpoint on every connection (`wal_autocheckpoint`): the safety
    /// net if the checkpointer falls behind.
    pub autocheckpoint_frames: u32,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            restart_frames: 10_000,
            catch_up_frames: 500,
            autocheckpoint_frames: 40_000,
        }
    }
}

/// How long the checkpointer sleeps when nobody wakes it; then it copies back whatever the
/// other writers (accounts, chats, read marks) left in the WAL.
const IDLE: Duration = Duration::from_secs(5);

/// The most passes the checkpointer makes for one wake-up before it leaves the rest to the
/// writer anyway (each pass is shorter than the one before, as it copies only what was
/// committed during the one before).
const MAX_PASSES: usize = 6;

/// What the batch writer and the checkpointer share.
struct Shared {
    policy: CheckpointPolicy,
    /// The checkpointer has left at most `catch_up_frames`: the writer copies the rest before
    /// its next batch.
    catch_up: AtomicBool,
}

/// The batch writer's side of the checkpointer. Dropping the last clone stops the thread.
#[derive(Clone)]
pub(crate) struct Checkpoints {
    shared: Arc<Shared>,
    wake: SyncSender<()>,
}

/// The WAL's length in frames and how many of them are copied back, as a checkpoint reports
/// them.
#[derive(Debug, Clone, Copy)]
struct WalState {
    busy: bool,
    frames: i64,
    copied: i64,
}

const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
/// Reads the WAL index header only: no lock, no I/O.
const NOOP: &str = "PRAGMA wal_checkpoint(NOOP)";

fn checkpoint(conn: &Connection, sql: &str) -> rusqlite::Result<WalState> {
    conn.prepare_cached(sql)?.query_row([], |row| {
        Ok(WalState {
            busy: row.get::<_, i64>(0)? != 0,
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

fn record(by: &'static str, started: Instant) {
    metrics::histogram!("jibber_store_checkpoint_seconds", "by" => by)
        .record(started.elapsed().as_secs_f64());
}

impl Checkpoints {
    /// Starts the checkpointer on a connection of its own to `path` (already in WAL mode).
    /// `synchronous` is the pragma's value, which decides whether a checkpoint syncs.
    pub(crate) fn start(path: &Path, synchronous: &str, policy: CheckpointPolicy) -> Result<Self> {
        let conn = Connection::open(path).map_err(sq_err)?;
        // It never commits, so SQLite's automatic checkpoint has nothing to do here.
        conn.execute_batch(&format!("PRAGMA synchronous = {synchronous};"))
            .map_err(sq_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(sq_err)?;
        let shared = Arc::new(Shared {
            policy,
            catch_up: AtomicBool::new(false),
        });
        let (wake, rx) = sync_channel(1);
        std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn({
                let shared = shared.clone();
                move || checkpointer(&conn, &rx, &shared)
            })
            .map_err(|e| StoreError::Backend(format!("starting the checkpointer failed: {e}")))?;
        Ok(Checkpoints { shared, wake })
    }

    /// Before a batch: if the checkpointer asked for it, copies the rest of the WAL back on
    /// the writer's connection, so that the batch's transaction starts the WAL over. A failure
    /// is logged, not the batch's: the next batch tries again.
    pub(crate) fn before_batch(&self, conn: &Connection) {
        if !self.shared.catch_up.swap(false, Ordering::AcqRel) {
            return;
        }
        let started = Instant::now();
        match checkpoint(conn, PASSIVE) {
            Ok(state) if state.busy || state.copied < state.frames => {
                // A reader held back part of the WAL (or the checkpointer was mid-pass): the
                // WAL cannot start over yet. The next commit wakes the checkpointer again.
                tracing::debug!(?state, "the writer's catch-up left frames behind");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the writer's WAL catch-up failed"),
        }
        record("writer", started);
    }

    /// After a batch's commit: wakes the checkpointer once the WAL is long enough to start
    /// over.
    pub(crate) fn after_commit(&self, conn: &Connection) {
        if self.shared.catch_up.load(Ordering::Acquire) {
            return;
        }
        match checkpoint(conn, NOOP) {
            Ok(state) if state.frames >= i64::from(self.shared.policy.restart_frames) => {
                match self.wake.try_send(()) {
                    // Full: a wake-up is already pending.
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    Err(TrySendError::Disconnected(())) => {
                        static ONCE: OnceLock<()> = OnceLock::new();
                        ONCE.get_or_init(|| {
                            tracing::error!(
                                "the checkpointer stopped; SQLite's own checkpoints take over"
                            );
                        });
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading the WAL's length failed"),
        }
    }
}

/// The checkpointer's loop: ends when the batch writer is gone.
fn checkpointer(conn: &Connection, wake: &Receiver<()>, shared: &Shared) {
    let policy = shared.policy;
    loop {
        match wake.recv_timeout(IDLE) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if shared.catch_up.load(Ordering::Acquire) {
            // The writer has not caught up yet: copying more now would only race it.
            continue;
        }
        for pass in 1..=MAX_PASSES {
            let started = Instant::now();
            // A pass reports the WAL as it was when the pass began; what the writer appended
            // meanwhile is read afterwards.
            let state = match checkpoint(conn, PASSIVE).and_then(|_| checkpoint(conn, NOOP)) {
                Ok(state) => state,
                Err(e) => {
                    tracing::warn!(error = %e, "a WAL checkpoint failed");
                    break;
                }
            };
            record("checkpointer", started);
            if state.frames < i64::from(policy.restart_frames) {
                // Short enough to keep appending to (or already started over).
                break;
            }
            // Close enough, or as close as it gets while the writer outpaces the passes: the
            // writer copies the rest (a longer catch-up, but the WAL does not grow on).
            if state.frames - state.copied <= i64::from(policy.catch_up_frames)
                || pass == MAX_PASSES
            {
                shared.catch_up.store(true, Ordering::Release);
                break;
            }
        }
    }
}
