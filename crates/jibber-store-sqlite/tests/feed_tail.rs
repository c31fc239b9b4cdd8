//! New feed entries go to the feed tail and move into `user_feed` in bulk (the migration
//! `feed_tail`): whichever writer fills the tail moves it, and a feed reads the same, gapless and
//! in order, across every move and in pages that straddle the two tables.

use jibber_proto::api::Change;
use jibber_store::Store;
use jibber_store::batch::SendRequest;
use jibber_store::testsuite::{chat, message, user};
use jibber_store_sqlite::{SqliteConfig, SqliteStore, sql};
use uuid::Uuid;

/// Sends per batch, and batches: 2 × 2,200 × 2 entries, a little over two full tails.
const BATCH: usize = 200;
const BATCHES: usize = 11;

async fn open() -> SqliteStore {
    // The directory outlives the test on purpose: the pools may still hold the file.
    let dir = tempfile::Builder::new()
        .prefix("jibber-feed-tail-test")
        .tempdir()
        .expect("tempdir")
        .keep();
    SqliteStore::open(&SqliteConfig::new(format!(
        "sqlite://{}",
        dir.join("test.db").display()
    )))
    .await
    .expect("open")
}

async fn count(store: &SqliteStore, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(store.read_pool())
        .await
        .expect("count")
}

/// `me`'s whole feed, read `page` changes at a time.
async fn feed(store: &SqliteStore, me: Uuid, page: u32) -> Vec<Change> {
    let mut all: Vec<Change> = Vec::new();
    loop {
        let since = all.last().map_or(0, Change::cursor);
        let next = store.changes_since(me, since, page).await.expect("feed");
        assert!(next.len() <= page as usize, "a page longer than its limit");
        let done = next.len() < page as usize;
        all.extend(next);
        if done {
            return all;
        }
    }
}

/// Sends `n` messages, `BATCH` per group commit, alternately from `a` to `b` and to `c`; returns
/// their texts in order per chat.
async fn send(
    store: &SqliteStore,
    chats: [(Uuid, Uuid); 2],
    a: Uuid,
    n: usize,
    texts: &mut [Vec<String>; 2],
) {
    let mut sends = Vec::with_capacity(BATCH);
    for i in 0..n {
        let k = i % 2;
        let (chat, to) = chats[k];
        let text = format!("m{k}-{}", texts[k].len());
        sends.push(SendRequest {
            msg: message(chat, a, to, &text),
            count_unread: true,
        });
        texts[k].push(text);
        if sends.len() == BATCH || i + 1 == n {
            for answer in store.send_messages(std::mem::take(&mut sends)).await {
                answer.expect("send");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_read_the_same_across_moves_of_the_tail() {
    let store = open().await;
    let a = user(&store, "tail_a").await;
    let b = user(&store, "tail_b").await;
    let c = user(&store, "tail_c").await;
    let (chat_ab, chat_ac) = (chat(&store, a, b).await, chat(&store, a, c).await);
    let chats = [(chat_ab, b), (chat_ac, c)];
    let mut texts = [Vec::new(), Vec::new()];

    // The batch writer fills the tail and moves it (each send is an entry in two feeds).
    send(&store, chats, a, BATCH * BATCHES, &mut texts).await;
    let moved = count(&store, "user_feed").await;
    let tail = count(&store, "feed_tail").await;
    let entries = 2 + 2 + 2 * (BATCH * BATCHES) as i64;
    assert_eq!(moved + tail, entries, "an entry was lost or doubled");
    assert!(moved >= sql::FEED_TAIL_MAX, "the tail never moved: {moved}");
    assert!(
        tail < sql::FEED_TAIL_MAX,
        "the tail outgrew its bound: {tail}"
    );

    // The sqlx path (a read mark, one entry in each member's feed) moves it too: fill the tail
    // to two entries short, and the read's second entry reaches the bound.
    let short = usize::try_from(sql::FEED_TAIL_MAX - 2 - tail).expect("room") / 2;
    send(&store, chats, a, short, &mut texts).await;
    assert_eq!(count(&store, "feed_tail").await, sql::FEED_TAIL_MAX - 2);
    let last_ab = i64::try_from(texts[0].len()).expect("seq");
    let read = store
        .mark_read(b, chat_ab, last_ab, jibber_store::util::now_ms())
        .await
        .expect("read");
    assert_eq!(read.marked, last_ab);
    assert_eq!(
        count(&store, "feed_tail").await,
        0,
        "the read mark did not move the tail"
    );

    // One more send leaves entries in both tables for every feed.
    send(&store, chats, a, 2, &mut texts).await;
    assert_eq!(count(&store, "feed_tail").await, 4);

    // Every feed is gapless and in order, whatever the page (pages of 1,000 straddle the two
    // tables; a page of one reads each entry on its own).
    for page in [1_000, 97, 1] {
        let of_a = feed(&store, a, page).await;
        let cursors: Vec<i64> = of_a.iter().map(Change::cursor).collect();
        assert_eq!(cursors, (1..=of_a.len() as i64).collect::<Vec<_>>());
        // `a`'s feed: its two chats, then every message it sent, then `b`'s read.
        let mut sent = [Vec::new(), Vec::new()];
        let mut reads = 0;
        for change in &of_a[2..] {
            match change {
                Change::Message { message, .. } => {
                    let k = usize::from(message.chat_id == chat_ac);
                    assert_eq!(message.sequence_number, sent[k].len() as i64 + 1);
                    sent[k].push(String::from_utf8(message.cipher.0.clone()).expect("utf-8"));
                }
                Change::Read {
                    reader,
                    up_to_sequence,
                    ..
                } => {
                    assert_eq!((*reader, *up_to_sequence), (b, last_ab));
                    reads += 1;
                }
                other => panic!("unexpected change {other:?}"),
            }
        }
        let lengths = |t: &[Vec<String>; 2]| [t[0].len(), t[1].len()];
        assert_eq!(
            lengths(&sent),
            lengths(&texts),
            "page {page}: messages missing"
        );
        assert!(sent == texts, "page {page}: messages out of order");
        assert_eq!(reads, 1);
        assert!(matches!(of_a[0], Change::Chat { .. }));

        let of_b = feed(&store, b, page).await;
        let cursors: Vec<i64> = of_b.iter().map(Change::cursor).collect();
        assert_eq!(cursors, (1..=of_b.len() as i64).collect::<Vec<_>>());
        // The chat, `a`'s messages to `b` and `b`'s own read, in the order they happened.
        assert_eq!(of_b.len(), 1 + texts[0].len() + 1);
        let read_at = of_b
            .iter()
            .position(|c| matches!(c, Change::Read { .. }))
            .expect("b's read is in its feed");
        assert_eq!(read_at, 1 + last_ab as usize);
    }
    store.close().await;
}
