//! Store micro-benchmarks on PostgreSQL (see `jibber_store::benchkit` and BENCHMARKS.md):
//! `cargo bench -p jibber-store-postgres --features bench`.
//!
//! The large database is generated once with bulk SQL (`generate_series`) into the schema
//! `jibber_bench_<messages>` of the server named by `JIBBER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and kept there; `JIBBER_BENCH_MESSAGES` sets its
//! size. The send benchmarks use a fresh schema `jibber_bench_sends_<pid>`, dropped at the end.

use std::sync::Arc;
use std::time::Instant;

use jibber_store::Store;
use jibber_store::benchkit::{self, CHATS, FEED_MESSAGES, Kind, criterion::Criterion, id_prefix};
use jibber_store_postgres::{PgConfig, PgStore};
use sqlx::{Connection, PgConnection};
use tokio::runtime::Runtime;

fn base_url() -> String {
    std::env::var("JIBBER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn schema_url(schema: &str) -> String {
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

/// The statements that fill an empty (migrated) schema with `n` messages.
fn generate_sql(n: u64) -> Vec<String> {
    let (u, c, m) = (
        id_prefix(Kind::User),
        id_prefix(Kind::Chat),
        id_prefix(Kind::Message),
    );
    let feed = n.min(FEED_MESSAGES);
    let base: i64 = 1_700_000_000_000;
    let at = |e: &str| format!("to_timestamp(({base} + {e}) / 1000.0)");
    let id = |p: &str, e: &str| format!("('{p}' || lpad(to_hex({e}), 11, '0'))::uuid");
    let count = format!("({n} / {CHATS} + (CASE WHEN i < {n} % {CHATS} THEN 1 ELSE 0 END))");
    let last_j = format!("(i + {CHATS} * ({count} - 1))");
    let hub = id(&u, "0");
    let peer_i = id(&u, "i + 1");
    let peer_j = id(&u, &format!("j % {CHATS} + 1"));
    let bytes = |k: usize| format!("decode(repeat('ab', {k}), 'hex')");
    vec![
        format!(
            "INSERT INTO users (id, username, username_lower, registration_record, public_id_key, \
                                public_signing_key, key_bundle, created_at, change_seq) \
             SELECT {}, 'bench' || i, 'bench' || i, {}, {}, {}, {}, {}, \
                    CASE WHEN i = 0 THEN {} ELSE 0 END FROM generate_series(0, {CHATS}) i",
            id(&u, "i"),
            bytes(192),
            bytes(32),
            bytes(32),
            bytes(100),
            at("0"),
            CHATS + feed
        ),
        format!(
            "INSERT INTO chats (id, user_low, user_high, next_seq, created_at, updated_at) \
             SELECT {}, {hub}, {peer_i}, {count} + 1, {}, {} FROM generate_series(0, {CHATS} - 1) i",
            id(&c, "i"),
            at("0"),
            at(&last_j)
        ),
        format!(
            "INSERT INTO chat_members (chat_id, user_id, other_id, last_activity) \
             SELECT {0}, {hub}, {peer_i}, {1} FROM generate_series(0, {CHATS} - 1) i \
             UNION ALL SELECT {0}, {peer_i}, {hub}, {1} FROM generate_series(0, {CHATS} - 1) i",
            id(&c, "i"),
            at(&last_j)
        ),
        format!(
            "INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
                 sender_public_id_key, sender_public_signing_key, receiver_public_id_key, \
                 client_timestamp, temp_message_id, counts_unread, status, created_at, delivered_at, read_at) \
             SELECT {}, {}, j / {CHATS} + 1, \
                 CASE WHEN (j / {CHATS}) % 2 = 0 THEN {hub} ELSE {peer_j} END, \
                 CASE WHEN (j / {CHATS}) % 2 = 0 THEN {peer_j} ELSE {hub} END, \
                 {}, {}, {}, {5}, {5}, {5}, {6}, 'g' || j, true, 'read', {6}, {6}, {6} \
             FROM generate_series(0, {n} - 1) j",
            id(&m, "j"),
            id(&c, &format!("j % {CHATS}")),
            bytes(120),
            bytes(12),
            bytes(64),
            bytes(32),
            at("j"),
        ),
        format!(
            "INSERT INTO user_changes (user_id, seq, kind, chat_id, actor_id, at) \
             SELECT {hub}, i + 1, 'chat', {}, {hub}, {} FROM generate_series(0, {CHATS} - 1) i",
            id(&c, "i"),
            at("0")
        ),
        format!(
            "INSERT INTO user_changes (user_id, seq, kind, chat_id, message_id, actor_id, up_to_seq, at) \
             SELECT {hub}, {CHATS} + 1 + j - ({n} - {feed}), 'message', {}, {}, \
                 CASE WHEN (j / {CHATS}) % 2 = 0 THEN {hub} ELSE {peer_j} END, j / {CHATS} + 1, {} \
             FROM generate_series({n} - {feed}, {n} - 1) j",
            id(&c, &format!("j % {CHATS}")),
            id(&m, "j"),
            at("j")
        ),
        "ANALYZE".to_owned(),
        "CREATE TABLE bench_done (at timestamptz NOT NULL DEFAULT now())".to_owned(),
        "INSERT INTO bench_done DEFAULT VALUES".to_owned(),
    ]
}

async fn open(url: &str) -> PgStore {
    PgStore::open(&PgConfig::new(url)).await.expect("open")
}

async fn admin(sql: &str) {
    let mut conn = PgConnection::connect(&base_url()).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .expect("admin statement");
    conn.close().await.expect("close");
}

/// The cached schema of `n` messages, generated if missing or unfinished.
async fn generated(n: u64) -> Arc<dyn Store> {
    let schema = format!("jibber_bench_{n}");
    let url = schema_url(&schema);
    let mut conn = PgConnection::connect(&base_url()).await.expect("connect");
    let done: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{schema}.bench_done"))
        .fetch_one(&mut conn)
        .await
        .expect("check");
    conn.close().await.expect("close");
    if !done {
        admin(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        admin(&format!("CREATE SCHEMA {schema}")).await;
        open(&url).await.close().await;
        let start = Instant::now();
        let mut conn = PgConnection::connect(&url).await.expect("connect");
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await
            .expect("set");
        for statement in generate_sql(n) {
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("generate");
        }
        conn.close().await.expect("close");
        println!(
            "generated {n} messages in {:?}: schema {schema}",
            start.elapsed()
        );
    }
    Arc::new(open(&url).await)
}

fn main() {
    let rt = Runtime::new().expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    let n = benchkit::messages_wanted();
    let store = rt.block_on(generated(n));
    benchkit::reads(&mut c, &rt, "postgres", store.clone(), n);
    rt.block_on(store.close());
    let sends = format!("jibber_bench_sends_{}", std::process::id());
    rt.block_on(admin(&format!("CREATE SCHEMA {sends}")));
    let store = rt.block_on(open(&schema_url(&sends)));
    benchkit::sends(&mut c, &rt, "postgres", Arc::new(store.clone()));
    rt.block_on(store.close());
    rt.block_on(admin(&format!("DROP SCHEMA {sends} CASCADE")));
    c.final_summary();
}
