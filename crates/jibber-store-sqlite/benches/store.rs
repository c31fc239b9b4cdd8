//! Store micro-benchmarks on SQLite (see `jibber_store::benchkit` and BENCHMARKS.md):
//! `cargo bench -p jibber-store-sqlite --features bench`.
//!
//! The large database is generated once with bulk SQL (recursive CTEs) and kept in
//! `$HOME/.cache/jibber/bench-db/sqlite-<messages>-v2.db`; `JIBBER_BENCH_MESSAGES` sets its size.

use std::sync::Arc;
use std::time::Instant;

use jibber_store::Store;
use jibber_store::benchkit::{self, CHATS, FEED_MESSAGES, Kind, criterion::Criterion, id_prefix};
use jibber_store_sqlite::{Durability, SqliteConfig, SqliteStore};
use sqlx::{Connection, SqliteConnection};
use tokio::runtime::Runtime;

/// Entries in the generated database's feed tail: just under `sql::FEED_TAIL_MAX`.
const TAIL: i64 = jibber_store_sqlite::sql::FEED_TAIL_MAX - 1;

/// The statements that fill an empty (migrated) database; `:n` is the number of messages.
fn generate_sql(n: u64) -> Vec<String> {
    let (u, c, m) = (
        id_prefix(Kind::User),
        id_prefix(Kind::Chat),
        id_prefix(Kind::Message),
    );
    let feed = n.min(FEED_MESSAGES);
    let base: i64 = 1_700_000_000_000;
    // Messages of chat i: n / CHATS, one more for the first n % CHATS chats.
    let count = format!("({n} / {CHATS} + (CASE WHEN i < {n} % {CHATS} THEN 1 ELSE 0 END))");
    let last_j = format!("(i + {CHATS} * ({count} - 1))");
    let uid = |e: &str| format!("'{u}' || printf('%011x', {e})");
    vec![
        format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {CHATS}) \
             INSERT INTO users (id, username, username_lower, registration_record, public_id_key, \
                                public_signing_key, key_bundle, created_at) \
             SELECT {}, 'bench' || i, 'bench' || i, zeroblob(192), zeroblob(32), zeroblob(32), \
                    zeroblob(100), {base} FROM k",
            uid("i")
        ),
        // The users' feeds were created with them (trigger `users_feed`); the hub's is full.
        format!(
            "UPDATE feeds SET last_seq = {} WHERE user_id = {}",
            CHATS + feed,
            uid("0")
        ),
        format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {CHATS} - 1) \
             INSERT INTO chats (id, user_low, user_high, next_seq, created_at, updated_at) \
             SELECT '{c}' || printf('%011x', i), {}, {}, {count} + 1, {base}, {base} + {last_j} FROM k",
            uid("0"),
            uid("i + 1")
        ),
        format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {CHATS} - 1) \
             INSERT INTO chat_members (chat_id, user_id, other_id, last_activity) \
             SELECT '{c}' || printf('%011x', i), {0}, {1}, {base} + {last_j} FROM k \
             UNION ALL \
             SELECT '{c}' || printf('%011x', i), {1}, {0}, {base} + {last_j} FROM k",
            uid("0"),
            uid("i + 1")
        ),
        // Message j is number j / CHATS + 1 of chat j % CHATS; the hub sends the odd numbers.
        format!(
            "WITH RECURSIVE g(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM g WHERE j < {n} - 1) \
             INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
                 sender_public_id_key, sender_public_signing_key, receiver_public_id_key, \
                 client_timestamp, temp_message_id, counts_unread, status, created_at, delivered_at, read_at) \
             SELECT '{m}' || printf('%011x', j), '{c}' || printf('%011x', j % {CHATS}), j / {CHATS} + 1, \
                 CASE WHEN (j / {CHATS}) % 2 = 0 THEN {hub} ELSE {peer} END, \
                 CASE WHEN (j / {CHATS}) % 2 = 0 THEN {peer} ELSE {hub} END, \
                 randomblob(120), randomblob(12), randomblob(64), zeroblob(32), zeroblob(32), zeroblob(32), \
                 {base} + j, 'g' || j, 1, 'read', {base} + j, {base} + j, {base} + j FROM g",
            hub = uid("0"),
            peer = uid(&format!("j % {CHATS} + 1")),
        ),
        // The hub's feed: one change per chat, then one per message of the last `feed`; change
        // k is entry k of the hub's feed.
        format!(
            "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {CHATS} - 1) \
             INSERT INTO changes (id, kind, chat_id, actor_id, at) \
             SELECT i + 1, 'chat', '{c}' || printf('%011x', i), {}, {base} FROM k",
            uid("0")
        ),
        format!(
            "WITH RECURSIVE g(j) AS (SELECT {n} - {feed} UNION ALL SELECT j + 1 FROM g WHERE j < {n} - 1) \
             INSERT INTO changes (id, kind, chat_id, message_id, actor_id, up_to_seq, at) \
             SELECT {CHATS} + 1 + j - ({n} - {feed}), 'message', '{c}' || printf('%011x', j % {CHATS}), \
                 '{m}' || printf('%011x', j), \
                 CASE WHEN (j / {CHATS}) % 2 = 0 THEN {hub} ELSE {peer} END, j / {CHATS} + 1, {base} + j FROM g",
            hub = uid("0"),
            peer = uid(&format!("j % {CHATS} + 1")),
        ),
        // The newest entries are in the feed tail, as full as it gets (the worst case for a
        // sync, which scans it); the rest in `user_feed`.
        format!(
            "INSERT INTO user_feed (feed, seq, change_id) \
             SELECT (SELECT num FROM feeds WHERE user_id = {}), id, id FROM changes \
              WHERE id <= (SELECT max(id) FROM changes) - {TAIL} ORDER BY id",
            uid("0")
        ),
        format!(
            "INSERT INTO feed_tail (feed, seq, change_id) \
             SELECT (SELECT num FROM feeds WHERE user_id = {}), id, id FROM changes \
              WHERE id > (SELECT max(id) FROM changes) - {TAIL} ORDER BY id",
            uid("0")
        ),
        "ANALYZE".to_owned(),
    ]
}

async fn open(path: &std::path::Path, durability: Durability) -> SqliteStore {
    let mut config = SqliteConfig::new(format!("sqlite://{}", path.display()));
    config.durability = durability;
    // The store's own cost: one send at a time would otherwise wait out the commit interval.
    config.commit_interval = std::time::Duration::ZERO;
    SqliteStore::open(&config).await.expect("open")
}

/// The cached database of `n` messages, generated if missing.
async fn generated(n: u64) -> Arc<dyn Store> {
    let dir = benchkit::cache_dir();
    std::fs::create_dir_all(&dir).expect("cache dir");
    // "-v2": since session 16 the newest feed entries are in the feed tail.
    let path = dir.join(format!("sqlite-{n}-v2.db"));
    if !path.exists() {
        let tmp = dir.join(format!("sqlite-{n}-v2.db.partial"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
        }
        open(&tmp, Durability::Normal).await.close().await;
        let start = Instant::now();
        let mut conn = SqliteConnection::connect(&format!("sqlite://{}", tmp.display()))
            .await
            .expect("connect");
        for pragma in ["PRAGMA synchronous = OFF", "PRAGMA cache_size = -1000000"] {
            sqlx::query(pragma)
                .execute(&mut conn)
                .await
                .expect("pragma");
        }
        for statement in generate_sql(n) {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("generate");
        }
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .expect("checkpoint");
        conn.close().await.expect("close");
        std::fs::rename(&tmp, &path).expect("rename");
        println!(
            "generated {n} messages in {:?}: {}",
            start.elapsed(),
            path.display()
        );
    }
    Arc::new(open(&path, Durability::Full).await)
}

fn main() {
    let rt = Runtime::new().expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    let n = benchkit::messages_wanted();
    let store = rt.block_on(generated(n));
    benchkit::reads(&mut c, &rt, "sqlite", store.clone(), n);
    rt.block_on(store.close());
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, durability) in [
        ("sqlite-full", Durability::Full),
        ("sqlite-normal", Durability::Normal),
    ] {
        let store = rt.block_on(open(&dir.path().join(format!("{name}.db")), durability));
        benchkit::sends(&mut c, &rt, name, Arc::new(store));
    }
    c.final_summary();
}
