//! Every hot statement is answered from an index, never by scanning a table.
//!
//! The database gets a few thousand rows per table and fresh statistics, then each statement of
//! `sql::hot_queries` is prepared and its *generic* plan (the one valid for every parameter
//! value, `plan_cache_mode = force_generic_plan`) explained with `enable_seqscan` and
//! `enable_sort` off. With those off the planner still picks a sequential scan or a sort when no
//! index can serve the statement, so the plan tells whether one can. A plan fails on a `Seq
//! Scan`, on an index scan without an index condition (a walk of the whole index), and on a
//! `Sort` (the SQLite test's "temp B-tree").

mod common;

use jibber_store_postgres::sql;
use serde_json::Value;
use sqlx::{AssertSqlSafe, Row};

/// The highest `$N` in a statement.
fn placeholders(sql: &str) -> usize {
    let mut max = 0;
    for (i, c) in sql.char_indices() {
        if c == '$' {
            let digits: String = sql[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            max = max.max(digits.parse().unwrap_or(0));
        }
    }
    max
}

/// Rows enough for the planner to prefer indexes for real: 1,000 users in 1,000 chats with 20
/// messages each, their feeds, refresh tokens and pending logins.
const SEED: &str = r"
INSERT INTO users (id, username, username_lower, registration_record, public_id_key,
                   public_signing_key, key_bundle, created_at)
SELECT gen_random_uuid(), 'User' || i, 'user' || i, '\x01', '\x02', '\x03', '\x04', now()
FROM generate_series(1, 1000) i;

CREATE TEMP TABLE numbered AS SELECT id, row_number() OVER (ORDER BY id) AS n FROM users;

INSERT INTO chats (id, user_low, user_high, next_seq, created_at, updated_at)
SELECT gen_random_uuid(), least(a.id, b.id), greatest(a.id, b.id), 21, now(), now()
FROM numbered a JOIN numbered b ON b.n = a.n % 1000 + 1;

INSERT INTO chat_members (chat_id, user_id, other_id, last_activity)
SELECT id, user_low, user_high, now() FROM chats
UNION ALL SELECT id, user_high, user_low, now() FROM chats;

INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature,
                      sender_public_id_key, sender_public_signing_key, receiver_public_id_key,
                      client_timestamp, temp_message_id, status, created_at)
SELECT gen_random_uuid(), c.id, s, c.user_low, c.user_high, '\x05', '\x06', '\x07', '\x02',
       '\x03', '\x02', now(), 't' || s || '-' || c.id,
       CASE WHEN s < 15 THEN 'read' ELSE 'sent' END, now()
FROM chats c, generate_series(1, 20) s;

INSERT INTO user_changes (user_id, seq, kind, chat_id, message_id, actor_id, up_to_seq, at)
SELECT m.receiver_id, row_number() OVER (PARTITION BY m.receiver_id ORDER BY m.chat_id, m.seq),
       'message', m.chat_id, m.id, m.sender_id, m.seq, now()
FROM messages m;

INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, expires_at)
SELECT gen_random_uuid(), u.id, gen_random_uuid(),
       sha256(convert_to(u.id::text || k, 'UTF8')), now(), now() + interval '30 days'
FROM users u, generate_series(1, 3) k;

INSERT INTO pending_logins (id, user_id, state, expires_at)
SELECT gen_random_uuid(), id, '\x08', now() + interval '1 minute' FROM users;

DROP TABLE numbered;
ANALYZE users, pending_logins, refresh_tokens, chats, chat_members, messages, user_changes;
";

/// Everything wrong with one plan node and its children.
fn check(name: &str, node: &Value, failures: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or("?");
    let relation = node["Relation Name"].as_str().unwrap_or("");
    match kind {
        "Seq Scan" => failures.push(format!("{name}: Seq Scan on {relation}")),
        "Index Scan" | "Index Only Scan" if node.get("Index Cond").is_none() => {
            failures.push(format!(
                "{name}: {kind} on {relation} without an index condition (whole index)"
            ));
        }
        "Sort" | "Incremental Sort" => {
            failures.push(format!("{name}: {kind} on {}", node["Sort Key"]))
        }
        _ => {}
    }
    if let Some(children) = node["Plans"].as_array() {
        for child in children {
            check(name, child, failures);
        }
    }
}

/// The generic plan of `statement`, as JSON.
async fn generic_plan(conn: &mut sqlx::PgConnection, name: &str, statement: &str) -> Value {
    sqlx::raw_sql(AssertSqlSafe(format!("PREPARE hot AS {statement}")))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let args = match placeholders(statement) {
        0 => String::new(),
        n => format!("({})", vec!["NULL"; n].join(", ")),
    };
    let row = sqlx::raw_sql(AssertSqlSafe(format!(
        "EXPLAIN (FORMAT JSON) EXECUTE hot{args}"
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    sqlx::raw_sql("DEALLOCATE hot")
        .execute(&mut *conn)
        .await
        .expect("deallocate");
    // The column is `json`, which arrives as its text.
    let text: String = row.try_get_unchecked(0).expect("plan text");
    let plan: Value = serde_json::from_str(&text).expect("plan JSON");
    let root = plan[0]["Plan"].clone();
    assert!(root.is_object(), "{name}: no plan in {text}");
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_queries_use_indexes() {
    let store = common::fresh().await;
    sqlx::raw_sql(SEED)
        .execute(store.pool())
        .await
        .expect("seed the database");
    let mut conn = store.pool().acquire().await.expect("connection");
    sqlx::raw_sql(
        "SET enable_seqscan = off; SET enable_sort = off; \
         SET plan_cache_mode = force_generic_plan",
    )
    .execute(&mut *conn)
    .await
    .expect("planner settings");
    // The check itself must catch a scan, a whole-index walk and a sort.
    for (name, statement) in [
        ("canary_scan", "SELECT id FROM messages WHERE cipher = $1"),
        (
            "canary_walk",
            "SELECT id FROM users ORDER BY username_lower",
        ),
        (
            "canary_sort",
            "SELECT id FROM messages WHERE chat_id = $1 ORDER BY created_at",
        ),
    ] {
        let mut found = Vec::new();
        check(
            name,
            &generic_plan(&mut conn, name, statement).await,
            &mut found,
        );
        assert!(!found.is_empty(), "{name} was not caught");
    }
    let mut failures = Vec::new();
    for (name, statement) in sql::hot_queries() {
        let root = generic_plan(&mut conn, name, statement).await;
        let before = failures.len();
        check(name, &root, &mut failures);
        if failures.len() > before {
            failures.push(format!("    plan: {root}"));
        }
    }
    assert!(
        failures.is_empty(),
        "statements without an index:\n{}",
        failures.join("\n")
    );
    drop(conn);
    jibber_store::Store::close(&store).await;
}
