//! The page cache layer (`jibber_store_sqlite::page_cache`): commits skip the truncations that
//! would drop nothing, the page swaps of b-tree splits still work, and a rollback that grew
//! the database still drops the pages past its end. One test, because the layer must be
//! installed before the process's first SQLite connection.

use std::collections::BTreeMap;

use jibber_store_sqlite::page_cache;
use rusqlite::{Connection, params};

/// A deterministic stream of keys (xorshift64*).
struct Keys(u64);

impl Keys {
    fn next(&mut self) -> [u8; 16] {
        let mut out = [0; 16];
        for half in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            half.copy_from_slice(&self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out
    }
}

fn value(key: &[u8; 16]) -> Vec<u8> {
    key.iter().cycle().take(180).copied().collect()
}

/// 250 rows with new random keys, in the table and in the model.
fn insert(conn: &Connection, keys: &mut Keys, model: &mut BTreeMap<[u8; 16], Vec<u8>>) {
    for _ in 0..250 {
        let k = keys.next();
        conn.execute(
            "INSERT INTO t (k, v) VALUES (?1, ?2)",
            params![k, value(&k)],
        )
        .expect("insert");
        model.insert(k, value(&k));
    }
}

/// The table's rows, in key order, and SQLite's own check of the file.
fn check(conn: &Connection, model: &BTreeMap<[u8; 16], Vec<u8>>) {
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let mut stmt = conn
        .prepare("SELECT k, v FROM t ORDER BY k")
        .expect("prepare");
    let rows: Vec<(Vec<u8>, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), model.len(), "row count");
    for ((k, v), (mk, mv)) in rows.iter().zip(model) {
        assert_eq!(k.as_slice(), mk.as_slice());
        assert_eq!(v, mv);
    }
}

#[test]
fn commits_skip_empty_truncations_and_a_grown_rollback_still_drops_its_pages() {
    assert!(
        page_cache::install(),
        "installed before the first connection"
    );
    assert!(page_cache::install(), "a second call keeps it");
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = Connection::open(dir.path().join("cache.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA cache_size = -32768; \
         CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID; \
         CREATE TABLE filler (x BLOB);",
    )
    .expect("schema");

    // Free pages scattered through the file: new b-tree pages then come from the freelist out
    // of page-number order, which is when a split swaps pages through the locking page.
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO filler SELECT randomblob(900) FROM n; \
         DELETE FROM filler WHERE rowid % 3 <> 0;",
    )
    .expect("filler");

    let mut keys = Keys(0x9E37_79B9_7F4A_7C15);
    let mut model = BTreeMap::new();
    let before = page_cache::truncations();
    for _ in 0..40 {
        let tx = conn.unchecked_transaction().expect("begin");
        insert(&tx, &mut keys, &mut model);
        tx.commit().expect("commit");
    }
    let after = page_cache::truncations();
    assert!(
        after.lock_page_moves > before.lock_page_moves,
        "the workload swapped pages through the locking page: {after:?}"
    );
    assert!(
        after.skipped >= before.skipped + 40,
        "every commit's truncation had nothing to drop: {before:?} → {after:?}"
    );
    check(&conn, &model);

    // A transaction that grows the file and rolls back leaves pages past the end in the cache:
    // those are dropped (the truncation goes to SQLite's cache).
    let pages = |c: &Connection| -> i64 {
        c.query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("page_count")
    };
    let size = pages(&conn);
    let before = page_cache::truncations();
    {
        let tx = conn.unchecked_transaction().expect("begin");
        tx.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) \
             INSERT INTO filler SELECT randomblob(3000) FROM n;",
        )
        .expect("grow");
        assert!(pages(&tx) > size + 1000, "the transaction grew the file");
        tx.rollback().expect("rollback");
    }
    let after = page_cache::truncations();
    assert!(
        after.forwarded > before.forwarded,
        "the rollback's truncation reached SQLite's cache: {before:?} → {after:?}"
    );
    assert_eq!(pages(&conn), size);
    check(&conn, &model);

    // The same page numbers, written again by the next transactions, read back as written.
    for _ in 0..8 {
        let tx = conn.unchecked_transaction().expect("begin");
        insert(&tx, &mut keys, &mut model);
        tx.execute_batch("INSERT INTO filler SELECT randomblob(3000) FROM t LIMIT 300")
            .expect("filler");
        tx.commit().expect("commit");
    }
    check(&conn, &model);
    drop(conn);
    // A second connection reads the file from disk, not from the first one's cache.
    let fresh = Connection::open(dir.path().join("cache.db")).expect("reopen");
    check(&fresh, &model);
}
