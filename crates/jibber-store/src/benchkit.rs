//! The store micro-benchmarks, the same on every backend (feature `bench`; run by each
//! backend's `benches/store.rs` with `cargo bench`, never in CI).
//!
//! A backend generates a large database with bulk SQL in the shape [`Fixture`] describes (ids
//! from [`id`], so the SQL can compute them), then hands the store to [`reads`]. [`sends`]
//! measures `send_message` one at a time against many at once (group commit) on an empty store.
//!
//! Criterion reports means and medians; the targets are p99 latencies, so [`reads`] first
//! times each query `PERCENTILE_RUNS` times on its own and prints p50/p99/max (a first pass,
//! which may read pages from disk, then a warm pass).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use criterion;
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use uuid::Uuid;

use crate::Store;
use crate::testsuite::message;

/// The generated database: one user ("hub") with `CHATS` chats, one with each peer, holding
/// `messages` messages spread evenly over them (message `j` is number `j / CHATS + 1` of chat
/// `j % CHATS`), and the hub's change feed (its chats, then its last `FEED_MESSAGES` messages).
pub const CHATS: u64 = 1_000;
/// Message entries in the hub's feed (the rest of the generated messages have none).
pub const FEED_MESSAGES: u64 = 100_000;
const PERCENTILE_RUNS: usize = 2_000;

/// Id kinds: their ids are `00000000-0000-7000-8000-{kind:01x}{i:011x}`, computable in SQL.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    User = 1,
    Chat = 2,
    Message = 3,
}

/// The id of the `i`th user, chat or message of the generated database. The hub is user 0 and
/// chat `k` joins it with user `k + 1`.
pub fn id(kind: Kind, i: u64) -> Uuid {
    Uuid::from_u128(0x7000_8000_0000_0000_0000 | (u128::from(kind as u8) << 44) | u128::from(i))
}

/// The text of [`id`] as SQL computes it: `prefix || printf('%011x', i)`.
pub fn id_prefix(kind: Kind) -> String {
    format!("00000000-0000-7000-8000-{:x}", kind as u8)
}

/// How many messages to generate: `JIBBER_BENCH_MESSAGES` (default one million).
pub fn messages_wanted() -> u64 {
    std::env::var("JIBBER_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

/// Where generated databases are kept between runs: `$JIBBER_BENCH_CACHE`, else
/// `$HOME/.cache/jibber/bench-db`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("JIBBER_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/jibber/bench-db")
        })
}

/// Times `f` `PERCENTILE_RUNS` times and prints p50, p99 and max, twice: the first pass
/// meets pages that are not in memory yet (a cold start: the OS page cache may not hold the
/// database), the second the steady state of a server that has served these chats before.
fn percentiles<F, Fut>(rt: &Runtime, name: &str, mut f: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    for pass in ["first pass", "warm"] {
        let mut times: Vec<Duration> = Vec::with_capacity(PERCENTILE_RUNS);
        rt.block_on(async {
            for i in 0..PERCENTILE_RUNS {
                let start = Instant::now();
                f(i).await;
                times.push(start.elapsed());
            }
        });
        times.sort_unstable();
        let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "{name} ({pass}): p50 {:?}  p99 {:?}  max {:?}  ({PERCENTILE_RUNS} runs)",
            at(0.50),
            at(0.99),
            at(1.0)
        );
    }
}

/// History page, chat list and sync on a generated database of `messages` messages.
pub fn reads(c: &mut Criterion, rt: &Runtime, backend: &str, store: Arc<dyn Store>, messages: u64) {
    let hub = id(Kind::User, 0);
    let per_chat = (messages / CHATS) as i64;
    let chat = |i: usize| id(Kind::Chat, (i as u64 * 7919) % CHATS);
    let feed_len = CHATS + messages.min(FEED_MESSAGES);
    let tag = format!("{backend}/{messages}msgs");

    // Sanity: the fixture is what the numbers claim.
    let first = rt
        .block_on(store.messages_before(hub, chat(0), None, 50))
        .expect("history");
    assert_eq!(first.len(), 50.min(per_chat as usize), "generated history");
    let list = rt
        .block_on(store.list_chats(hub, None, 1000))
        .expect("chat list");
    assert_eq!(list.len() as u64, CHATS, "generated chats");

    let history = |i: usize| {
        let store = store.clone();
        async move {
            let page = store
                .messages_before(hub, chat(i), None, 50)
                .await
                .expect("history");
            std::hint::black_box(page);
        }
    };
    let deep = |i: usize| {
        let store = store.clone();
        async move {
            let page = store
                .messages_before(hub, chat(i), Some(per_chat / 2), 50)
                .await
                .expect("history");
            std::hint::black_box(page);
        }
    };
    let chat_list = |limit: u32| {
        let store = store.clone();
        move |_| {
            let store = store.clone();
            async move {
                std::hint::black_box(store.list_chats(hub, None, limit).await.expect("list"));
            }
        }
    };
    let sync = |_| {
        let store = store.clone();
        async move {
            let feed = store
                .changes_since(hub, feed_len as i64 - 100, 100)
                .await
                .expect("sync");
            std::hint::black_box(feed);
        }
    };
    let chat_sync = |i: usize| {
        let store = store.clone();
        async move {
            let page = store
                .messages_since(hub, chat(i), per_chat - 50, 50)
                .await
                .expect("chat sync");
            std::hint::black_box(page);
        }
    };

    percentiles(rt, &format!("{tag} history_page_50_newest"), history);
    percentiles(rt, &format!("{tag} history_page_50_middle"), deep);
    percentiles(
        rt,
        &format!("{tag} chat_list_first_50_of_1000"),
        chat_list(50),
    );
    percentiles(rt, &format!("{tag} chat_list_all_1000"), chat_list(1000));
    percentiles(rt, &format!("{tag} sync_feed_100"), sync);
    percentiles(rt, &format!("{tag} chat_sync_50"), chat_sync);

    let mut g = c.benchmark_group(format!("{tag}/reads"));
    let mut i = 0;
    g.bench_function("history_page_50_newest", |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            history(i)
        })
    });
    g.bench_function("history_page_50_middle", |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            deep(i)
        })
    });
    let (list50, list1000) = (chat_list(50), chat_list(1000));
    g.bench_function("chat_list_first_50_of_1000", |b| {
        b.to_async(rt).iter(|| list50(0))
    });
    g.bench_function("chat_list_all_1000", |b| {
        b.to_async(rt).iter(|| list1000(0))
    });
    g.bench_function("sync_feed_100", |b| b.to_async(rt).iter(|| sync(0)));
    g.bench_function("chat_sync_50", |b| {
        b.to_async(rt).iter(|| {
            i += 1;
            chat_sync(i)
        })
    });
    g.finish();
}

/// `n` new pairs of users (named `{prefix}_a{i}` and `{prefix}_b{i}`), each with its chat:
/// `(chat, a, b)`.
pub async fn pairs(store: &dyn Store, n: usize, prefix: &str) -> Vec<(Uuid, Uuid, Uuid)> {
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let a = crate::testsuite::user(store, &format!("{prefix}_a{i}")).await;
        let b = crate::testsuite::user(store, &format!("{prefix}_b{i}")).await;
        let chat = store
            .create_or_get_chat(a, b, Uuid::now_v7(), crate::util::now_ms())
            .await
            .expect("chat")
            .chat
            .id;
        pairs.push((chat, a, b));
    }
    pairs
}

/// `send_message` throughput on an empty store: one send at a time (each its own transaction
/// and fsync) against `n` sends at once into `n` chats (gathered into few transactions).
pub fn sends(c: &mut Criterion, rt: &Runtime, backend: &str, store: Arc<dyn Store>) {
    const WIDTH: usize = 64;
    let pairs = Arc::new(rt.block_on(pairs(&*store, WIDTH, "bench")));
    let mut g = c.benchmark_group(format!("{backend}/send_message"));
    g.sample_size(20);
    for n in [1usize, 8, WIDTH] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("concurrent", n), &n, |b, &n| {
            b.to_async(rt).iter(|| {
                let store = store.clone();
                let pairs = pairs.clone();
                async move {
                    let sends = (0..n).map(|k| {
                        let (chat, a, b) = pairs[k];
                        let store = store.clone();
                        tokio::spawn(async move {
                            let temp = Uuid::now_v7().to_string();
                            store
                                .send_message(message(chat, a, b, &temp), true)
                                .await
                                .expect("send")
                        })
                    });
                    for s in sends.collect::<Vec<_>>() {
                        s.await.expect("task");
                    }
                }
            })
        });
    }
    g.finish();
}
