//! Every hot statement is answered from an index, never by scanning a table.

use jibber_store_sqlite::{SqliteConfig, SqliteStore, sql};
use sqlx::Row;

/// The highest `?N` in a statement.
fn placeholders(sql: &str) -> usize {
    let mut max = 0;
    let bytes = sql.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'?' {
            let digits: String = sql[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            max = max.max(digits.parse().unwrap_or(0));
        }
    }
    max
}

/// A store on a new database file in `dir` (migrated), and the file's path.
async fn store_in(dir: &tempfile::TempDir) -> (SqliteStore, std::path::PathBuf) {
    let path = dir.path().join("plans.db");
    let store = SqliteStore::open(&SqliteConfig::new(format!("sqlite://{}", path.display())))
        .await
        .expect("open");
    (store, path)
}

/// Binds NULL to every placeholder of `statement`.
fn with_nulls<'q>(
    explain: String,
    statement: &str,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
    for _ in 0..placeholders(statement) {
        q = q.bind(None::<String>);
    }
    q
}

#[tokio::test]
async fn hot_queries_use_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_in(&dir).await;
    let mut failures = Vec::new();
    for (name, statement) in sql::hot_queries() {
        let rows = with_nulls(format!("EXPLAIN QUERY PLAN {statement}"), &statement)
            .fetch_all(store.read_pool())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan: Vec<String> = rows.iter().map(|r| r.get::<String, _>("detail")).collect();
        assert!(!plan.is_empty(), "{name}: empty plan");
        for line in &plan {
            // `SCAN t` without an index is a full table scan. `SCAN t USING (COVERING) INDEX`
            // walks an index in order (the contacts list), which is what we want there.
            let full_scan = line.starts_with("SCAN")
                && !line.contains("USING")
                && !line.contains("CONSTANT ROW");
            if full_scan || line.contains("USE TEMP B-TREE") {
                failures.push(format!("{name}: {line}\n    plan: {plan:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "statements without an index:\n{}",
        failures.join("\n")
    );
    store.close().await;
}

/// SQLite builds a temporary table (`OpenEphemeral`) for `RETURNING` and for a CHECK against a
/// list of more than two values; opening and closing one for every send and receipt cost 8 % of
/// the server's CPU in the relay. None of the batch writer's statements may build one.
#[tokio::test]
async fn hot_writes_build_no_temporary_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = store_in(&dir).await;
    let mut failures = Vec::new();
    for (name, statement) in sql::hot_writes() {
        let rows = with_nulls(format!("EXPLAIN {statement}"), statement)
            .fetch_all(store.read_pool())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let opcodes: Vec<String> = rows.iter().map(|r| r.get::<String, _>("opcode")).collect();
        assert!(opcodes.len() > 3, "{name}: no program: {opcodes:?}");
        if opcodes.iter().any(|o| o == "OpenEphemeral") {
            failures.push(name);
        }
    }
    assert!(
        failures.is_empty(),
        "temporary tables built by {failures:?}"
    );
    store.close().await;
}

/// The CHECK constraints rewritten without value lists still refuse what they refused.
#[tokio::test]
async fn rewritten_checks_still_refuse_bad_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, path) = store_in(&dir).await;
    // The store's read pool is read-only; a connection of its own writes, without foreign keys
    // so that only the CHECK constraints can refuse.
    let writer = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .foreign_keys(false),
    )
    .await
    .expect("writer");
    let bad_status = sqlx::query(
        "INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
         sender_public_id_key, sender_public_signing_key, receiver_public_id_key, client_timestamp, \
         temp_message_id, status, created_at) \
         VALUES ('m', 'c', 1, 's', 'r', x'', x'', x'', x'', x'', x'', 1, 't', 'lost', 1)",
    )
    .execute(&writer)
    .await
    .expect_err("a status outside sent/delivered/read");
    assert!(
        bad_status.to_string().contains("CHECK constraint failed"),
        "{bad_status}"
    );
    let bad_kind = sqlx::query("INSERT INTO changes (kind, chat_id, at) VALUES ('gone', 'c', 1)")
        .execute(&writer)
        .await
        .expect_err("a feed kind outside the four");
    assert!(
        bad_kind.to_string().contains("CHECK constraint failed"),
        "{bad_kind}"
    );
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&writer)
        .await
        .expect("integrity");
    assert_eq!(integrity, "ok");
    writer.close().await;
    store.close().await;
}
