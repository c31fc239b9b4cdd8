//! The WAL is copied back and started over by the checkpointer and the writer's catch-up
//! (`src/checkpoint.rs`), not by SQLite's own automatic checkpoint, and nothing is lost on the
//! way.

use std::path::{Path, PathBuf};

use jibber_store::Store;
use jibber_store::testsuite::{message, user};
use jibber_store::util::now_ms;
use jibber_store_sqlite::{CheckpointPolicy, SqliteConfig, SqliteStore};
use uuid::Uuid;

const SENDS: i64 = 400;

fn fresh_dir() -> PathBuf {
    // The directory outlives the test on purpose: the pools may still hold the file.
    tempfile::Builder::new()
        .prefix("jibber-checkpoint-test")
        .tempdir()
        .expect("tempdir")
        .keep()
}

fn config(dir: &Path, checkpoint: CheckpointPolicy) -> SqliteConfig {
    let mut config = SqliteConfig::new(format!("sqlite://{}", dir.join("test.db").display()));
    config.checkpoint = checkpoint;
    config
}

/// Sends `SENDS` messages one commit at a time; returns the chat, its receiver and the WAL's
/// length in bytes afterwards.
async fn send_all(store: &SqliteStore, dir: &Path) -> (Uuid, Uuid, u64) {
    let a = user(store, "ckpt_a").await;
    let b = user(store, "ckpt_b").await;
    let chat = store
        .create_or_get_chat(a, b, Uuid::now_v7(), now_ms())
        .await
        .expect("chat")
        .chat
        .id;
    for i in 0..SENDS {
        store
            .send_message(message(chat, a, b, &format!("ckpt{i}")), true)
            .await
            .expect("send");
    }
    let wal = std::fs::metadata(dir.join("test.db-wal"))
        .expect("the WAL exists")
        .len();
    (chat, b, wal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_started_over_off_the_writers_path_and_nothing_is_lost() {
    // SQLite's own checkpoint never fires in either store: only the checkpointer can keep the
    // WAL short.
    let never = CheckpointPolicy {
        restart_frames: u32::MAX,
        catch_up_frames: 0,
        autocheckpoint_frames: 1_000_000,
    };
    let short = CheckpointPolicy {
        restart_frames: 64,
        catch_up_frames: 16,
        autocheckpoint_frames: 1_000_000,
    };

    let control_dir = fresh_dir();
    let control = SqliteStore::open(&config(&control_dir, never))
        .await
        .expect("open");
    let (_, _, grown) = send_all(&control, &control_dir).await;
    control.close().await;

    let dir = fresh_dir();
    let store = SqliteStore::open(&config(&dir, short)).await.expect("open");
    let (chat, receiver, kept) = send_all(&store, &dir).await;
    assert!(
        kept * 4 < grown,
        "the WAL was not started over: {kept} bytes against {grown} without checkpoints"
    );

    let history = store
        .messages_since(receiver, chat, 0, SENDS as u32)
        .await
        .expect("history");
    assert_eq!(
        history
            .iter()
            .map(|m| m.sequence_number)
            .collect::<Vec<_>>(),
        (1..=SENDS).collect::<Vec<_>>()
    );
    store.close().await;

    // Opened again, the database (file and WAL together) holds every message.
    let reopened = SqliteStore::open(&config(&dir, short))
        .await
        .expect("reopen");
    let again = reopened
        .messages_since(receiver, chat, 0, SENDS as u32)
        .await
        .expect("history after reopening");
    assert_eq!(again.len(), SENDS as usize);
    assert_eq!(
        again.iter().map(|m| m.cipher.clone()).collect::<Vec<_>>(),
        history.iter().map(|m| m.cipher.clone()).collect::<Vec<_>>()
    );
    reopened.close().await;
}
