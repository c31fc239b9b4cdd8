//! Both writers at once: sends and receipts on the batch writer, and chats, read marks and
//! accounts on sqlx's writer connection, all queued on the process's write lock
//! (`src/write_lock.rs`). Every write succeeds, none waits on the other forever, and the result
//! is what the writes, one after another, would have left.

use std::sync::Arc;
use std::time::Duration;

use jibber_store::Store;
use jibber_store::testsuite::{chat, message, user};
use jibber_store::util::now_ms;
use jibber_store_sqlite::{SqliteConfig, SqliteStore};
use tokio::task::JoinSet;
use uuid::Uuid;

const SENDS: i64 = 300;
const CHATS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_read_marks_and_new_chats_interleave() {
    let dir = tempfile::Builder::new()
        .prefix("jibber-write-lock-test")
        .tempdir()
        .expect("tempdir")
        .keep();
    let store = Arc::new(
        SqliteStore::open(&SqliteConfig::new(format!(
            "sqlite://{}",
            dir.join("test.db").display()
        )))
        .await
        .expect("open"),
    );
    let (a, b) = (user(&*store, "alice").await, user(&*store, "bob").await);
    let chat = chat(&*store, a, b).await;

    let work = async {
        let mut tasks = JoinSet::new();
        // Sends, one task each, so that they meet in group commits.
        for i in 0..SENDS {
            let store = store.clone();
            tasks.spawn(async move {
                let sent = store
                    .send_message(message(chat, a, b, &format!("t{i}")), true)
                    .await
                    .expect("send");
                assert!(!sent.duplicate);
                sent.message.sequence_number
            });
        }
        // Read marks by the receiver, meanwhile, on the sqlx writer.
        let marks = {
            let store = store.clone();
            tokio::spawn(async move {
                for k in 1..=SENDS / 7 {
                    // Up to a sequence number that may not be there yet: marks what is.
                    let r = store.mark_read(b, chat, k * 7, now_ms()).await;
                    assert!(r.expect("mark_read").unread_count >= 0);
                }
            })
        };
        // New accounts and chats, meanwhile, on the sqlx writer too.
        let chats = {
            let store = store.clone();
            tokio::spawn(async move {
                for k in 0..CHATS {
                    let other = user(&*store, &format!("carol{k}")).await;
                    store
                        .create_or_get_chat(a, other, Uuid::now_v7(), now_ms())
                        .await
                        .expect("new chat");
                }
            })
        };
        let mut seqs = Vec::new();
        while let Some(seq) = tasks.join_next().await {
            seqs.push(seq.expect("send task"));
        }
        marks.await.expect("read marks");
        chats.await.expect("new chats");
        seqs
    };
    let mut seqs = tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("the writers finished (no write waited on the other forever)");

    let last = store
        .mark_read(b, chat, SENDS, now_ms())
        .await
        .expect("the last read mark");
    assert_eq!(last.unread_count, 0);
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=SENDS).collect::<Vec<_>>(),
        "gapless sequence numbers"
    );
    let history = store
        .messages_since(b, chat, 0, 1000)
        .await
        .expect("history");
    assert_eq!(history.len() as i64, SENDS);
    assert!(
        history.iter().all(|m| m.read_at.is_some()),
        "every message was marked read"
    );
    let listed = store.list_chats(a, None, 100).await.expect("chat list");
    assert_eq!(listed.len(), CHATS + 1);
    let bob = store.chat_for(b, chat).await.expect("bob's chat");
    assert_eq!(bob.unread_count, 0);
}
