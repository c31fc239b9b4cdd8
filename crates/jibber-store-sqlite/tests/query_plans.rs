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

#[tokio::test]
async fn hot_queries_use_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("plans.db").display());
    let store = SqliteStore::open(&SqliteConfig::new(url))
        .await
        .expect("open");
    let mut failures = Vec::new();
    for (name, statement) in sql::hot_queries() {
        let explain = format!("EXPLAIN QUERY PLAN {statement}");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(explain));
        for _ in 0..placeholders(&statement) {
            q = q.bind(None::<String>);
        }
        let rows = q
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
