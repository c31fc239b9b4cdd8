//! Several server nodes on one database: each node is a `PgStore` with its own pool, and they
//! send into the same chat at once, repeating some `tempMessageId`s from another node.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jibber_store::testsuite::{message, user};
use jibber_store::util::now_ms;
use jibber_store::{Sent, Store};
use jibber_store_postgres::{PgStore, sql};
use sqlx::Connection;
use uuid::Uuid;

const NODES: usize = 4;
const MESSAGES: usize = 500;

async fn nodes(url: &str) -> Vec<Arc<PgStore>> {
    let mut out = Vec::new();
    for _ in 0..NODES {
        out.push(Arc::new(common::open(url).await));
    }
    out
}

/// 500 messages from four nodes into one chat, a fifth of them sent twice at the same moment
/// from two nodes and a twenty-fifth three times: sequence numbers are exactly 1..=500, each
/// temp id is stored once, every repeat answers the first message, and no counter moved for a
/// repeat (unread counts, feed cursors).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_send_into_one_chat_without_gaps_or_doubles() {
    let url = common::fresh_url().await;
    let nodes = nodes(&url).await;
    let a = user(&*nodes[0], "node_a").await;
    let b = user(&*nodes[1], "node_b").await;
    let chat = nodes[2]
        .create_or_get_chat(a, b, Uuid::now_v7(), now_ms())
        .await
        .expect("chat")
        .chat
        .id;

    let barrier = Arc::new(tokio::sync::Barrier::new(MESSAGES));
    let mut tasks = Vec::new();
    for i in 0..MESSAGES {
        let copies = if i % 25 == 0 {
            3
        } else if i % 5 == 0 {
            2
        } else {
            1
        };
        let senders: Vec<Arc<PgStore>> = (0..copies)
            .map(|k| nodes[(i + k) % NODES].clone())
            .collect();
        let barrier = barrier.clone();
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        tasks.push(tokio::spawn(async move {
            let temp = format!("t{i}");
            barrier.wait().await;
            // The copies of one temp id leave at the same moment, from different nodes.
            let sends = senders.iter().map(|node| {
                let msg = message(chat, from, to, &temp);
                async move { node.send_message(msg, true).await.expect("send") }
            });
            (temp.clone(), futures_util::future::join_all(sends).await)
        }));
    }
    let mut by_temp: BTreeMap<String, Vec<Sent>> = BTreeMap::new();
    for t in tasks {
        let (temp, sent) = t.await.expect("task");
        by_temp.insert(temp, sent);
    }

    let mut seqs = Vec::new();
    let mut repeats = 0;
    for (temp, sent) in &by_temp {
        let firsts: Vec<&Sent> = sent.iter().filter(|s| !s.duplicate).collect();
        assert_eq!(firsts.len(), 1, "{temp}: one send stores it: {sent:?}");
        let first = &firsts[0].message;
        for s in sent {
            assert_eq!(
                s.message.id, first.id,
                "{temp}: every copy answers the first"
            );
            assert_eq!(s.message.sequence_number, first.sequence_number);
            assert_eq!(s.message.temp_message_id, *temp);
        }
        repeats += sent.len() - 1;
        seqs.push(first.sequence_number);
    }
    assert_eq!(repeats, 100 + 20);
    seqs.sort_unstable();
    let expected: Vec<i64> = (1..=MESSAGES as i64).collect();
    assert_eq!(seqs, expected, "sequence numbers are exactly 1..=N");

    // What the database holds, read from yet another node.
    let stored = nodes[3]
        .messages_since(a, chat, 0, 1000)
        .await
        .expect("since");
    assert_eq!(
        stored.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
        expected
    );
    let mut temps: Vec<&str> = stored.iter().map(|m| m.temp_message_id.as_str()).collect();
    temps.sort_unstable();
    temps.dedup();
    assert_eq!(temps.len(), MESSAGES, "each temp id stored once");
    let (count, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT (sender_id, temp_message_id)) FROM messages",
    )
    .fetch_one(nodes[0].pool())
    .await
    .expect("count");
    assert_eq!((count, distinct), (MESSAGES as i64, MESSAGES as i64));

    let seen_by_a = nodes[1].chat_for(a, chat).await.expect("chat");
    assert_eq!(seen_by_a.last_sequence, MESSAGES as i64);
    assert_eq!(seen_by_a.unread_count, MESSAGES as i64 / 2);
    assert_eq!(
        nodes[2].chat_for(b, chat).await.expect("chat").unread_count,
        MESSAGES as i64 / 2
    );
    // Each feed: the chat, then one entry per message, cursors without a gap.
    for u in [a, b] {
        let feed = nodes[0].changes_since(u, 0, 1000).await.expect("feed");
        let cursors: Vec<i64> = feed.iter().map(|c| c.cursor()).collect();
        assert_eq!(cursors, (1..=MESSAGES as i64 + 1).collect::<Vec<_>>());
    }
    for node in &nodes {
        node.close().await;
    }
}

/// The race the first lookup cannot see: two nodes send the same temp id, both find nothing
/// stored and queue on the chat's row lock. The second to get it takes a sequence number,
/// breaks the unique constraint, and must give the number (and everything else) back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_duplicate_gives_its_sequence_number_back() {
    let url = common::fresh_url().await;
    let nodes = nodes(&url).await;
    let a = user(&*nodes[0], "race_a").await;
    let b = user(&*nodes[0], "race_b").await;
    let chat = nodes[0]
        .create_or_get_chat(a, b, Uuid::now_v7(), now_ms())
        .await
        .expect("chat")
        .chat
        .id;

    // Hold the chat's row so that both sends stop at the sequence number.
    let mut blocker = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM chats WHERE id = $1 FOR UPDATE")
        .bind(chat)
        .execute(&mut blocker)
        .await
        .expect("lock the chat");
    let sends: Vec<_> = nodes[..2]
        .iter()
        .map(|node| {
            let node = node.clone();
            tokio::spawn(async move {
                node.send_message(message(chat, a, b, "raced"), true)
                    .await
                    .expect("send")
            })
        })
        .collect();
    // Wait until both wait for the lock, past their duplicate lookups.
    let waiting = async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock' AND query = $1",
            )
            .bind(sql::TAKE_SEQS)
            .fetch_one(nodes[2].pool())
            .await
            .expect("activity");
            if n >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("both sends wait for the chat's lock");
    sqlx::query("COMMIT")
        .execute(&mut blocker)
        .await
        .expect("release");

    let mut results = Vec::new();
    for s in sends {
        results.push(s.await.expect("task"));
    }
    results.sort_by_key(|s| s.duplicate);
    let (first, second) = (&results[0], &results[1]);
    assert!(!first.duplicate && second.duplicate, "{results:?}");
    assert_eq!(second.message.id, first.message.id);
    assert_eq!(first.message.sequence_number, 1);
    // The loser's increments were rolled back: the next message is 2, one unread, one feed
    // entry per message.
    let next = nodes[1]
        .send_message(message(chat, a, b, "next"), true)
        .await
        .expect("send");
    assert_eq!(next.message.sequence_number, 2);
    assert_eq!(
        nodes[0].chat_for(b, chat).await.expect("chat").unread_count,
        2
    );
    let feed = nodes[0].changes_since(b, 0, 100).await.expect("feed");
    assert_eq!(
        feed.iter().map(|c| c.cursor()).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    blocker.close().await.expect("close");
    for node in &nodes {
        node.close().await;
    }
}

/// The pool is built from `PgConfig`: its statement timeout is on every pooled connection, its
/// size is a hard limit, and a caller that cannot get a connection within the acquire timeout
/// gets `Unavailable` (which the server answers with 503).
#[tokio::test]
async fn the_pool_keeps_its_limits_and_timeouts() {
    let url = common::fresh_url().await;
    let mut config = jibber_store_postgres::PgConfig::new(url);
    config.max_connections = 1;
    config.acquire_timeout = Duration::from_millis(200);
    config.statement_timeout = Duration::from_millis(1500);
    let store = PgStore::open(&config).await.expect("open");
    let shown: String = sqlx::query_scalar("SHOW statement_timeout")
        .fetch_one(store.pool())
        .await
        .expect("show");
    assert_eq!(shown, "1500ms");

    let held = store.pool().acquire().await.expect("the only connection");
    let started = std::time::Instant::now();
    match store.ping().await {
        Err(jibber_store::StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable while the only connection is held: {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    drop(held);
    store.ping().await.expect("the connection is back");

    // A statement running longer than the timeout is cancelled by PostgreSQL (57014, which the
    // store answers as Unavailable).
    let slow = sqlx::query("SELECT pg_sleep(5)")
        .execute(store.pool())
        .await;
    let err = slow.expect_err("cancelled");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("57014"),
        "{err}"
    );
    store.close().await;
}
