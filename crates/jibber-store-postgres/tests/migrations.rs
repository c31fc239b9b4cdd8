//! Migrations carry existing data forward: a database made by the first schema opens, and what
//! it held still answers correctly.

mod common;

use jibber_store::Store;
use jibber_store::testsuite::message;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

/// Applies only the first migration (the schema as it shipped) to a fresh schema.
async fn database_at_first_schema(url: &str) -> sqlx::PgPool {
    let first = jibber_store::testsuite::first_migration_only(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"),
    );
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    sqlx::migrate::Migrator::new(first.path())
        .await
        .expect("migrator")
        .run(&pool)
        .await
        .expect("first migration");
    pool
}

/// The columns of the unique constraint on `messages` that covers `temp_message_id`, in order.
async fn repeat_check_columns(pool: &sqlx::PgPool) -> Vec<Vec<String>> {
    sqlx::query_scalar(
        "SELECT array_agg(a.attname::text ORDER BY k.n) \
         FROM pg_constraint c \
         CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) \
         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
         WHERE c.conrelid = 'messages'::regclass AND c.contype = 'u' \
         GROUP BY c.oid \
         HAVING bool_or(a.attname = 'temp_message_id')",
    )
    .fetch_all(pool)
    .await
    .expect("constraints")
}

/// The repeat check's key is `(temp_message_id, sender_id)` after the migration, and a repeat of
/// a message stored before it still returns the first message.
#[tokio::test]
async fn a_database_of_the_first_schema_keeps_its_repeat_check() {
    let url = common::fresh_url().await;
    let pool = database_at_first_schema(&url).await;
    assert_eq!(
        repeat_check_columns(&pool).await,
        vec![vec!["sender_id".to_owned(), "temp_message_id".to_owned()]],
        "the first schema's key"
    );
    let (a, b, chat, first) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    for (id, name) in [(a, "old_a"), (b, "old_b")] {
        sqlx::query(
            "INSERT INTO users (id, username, username_lower, registration_record, public_id_key, \
             public_signing_key, key_bundle, created_at) VALUES ($1, $2, $2, '\\x00', '\\x01', '\\x02', '\\x03', now())",
        )
        .bind(id)
        .bind(name)
        .execute(&pool)
        .await
        .expect("user");
    }
    sqlx::query(
        "INSERT INTO chats (id, user_low, user_high, next_seq, created_at, updated_at) \
         VALUES ($1, $2, $3, 2, now(), now())",
    )
    .bind(chat)
    .bind(low)
    .bind(high)
    .execute(&pool)
    .await
    .expect("chat");
    for (me, other) in [(a, b), (b, a)] {
        sqlx::query(
            "INSERT INTO chat_members (chat_id, user_id, other_id, last_activity) \
             VALUES ($1, $2, $3, now())",
        )
        .bind(chat)
        .bind(me)
        .bind(other)
        .execute(&pool)
        .await
        .expect("member");
    }
    sqlx::query(
        "INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
         sender_public_id_key, sender_public_signing_key, receiver_public_id_key, client_timestamp, \
         temp_message_id, created_at) \
         VALUES ($1, $2, 1, $3, $4, '\\x01', '\\x02', '\\x03', '\\x04', '\\x05', '\\x06', now(), 'before', now())",
    )
    .bind(first)
    .bind(chat)
    .bind(a)
    .bind(b)
    .execute(&pool)
    .await
    .expect("message");
    pool.close().await;

    let store = common::open(&url).await;
    let check = sqlx::PgPool::connect(&url).await.expect("connect");
    assert_eq!(
        repeat_check_columns(&check).await,
        vec![vec!["temp_message_id".to_owned(), "sender_id".to_owned()]],
        "one key, time-ordered column first"
    );

    let again = store
        .send_message(message(chat, a, b, "before"), true)
        .await
        .expect("repeat");
    assert!(
        again.duplicate,
        "a repeat of a message stored before the migration"
    );
    assert_eq!(again.message.id, first);
    assert_eq!(again.message.sequence_number, 1);

    // The same tempMessageId from the other member is a message of its own.
    let other = store
        .send_message(message(chat, b, a, "before"), true)
        .await
        .expect("other sender");
    assert!(!other.duplicate);
    assert_eq!(other.message.sequence_number, 2);
    check.close().await;
}
