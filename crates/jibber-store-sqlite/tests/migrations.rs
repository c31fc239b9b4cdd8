//! Migrations carry existing data forward: a database made by an earlier schema opens, and what
//! it held still answers correctly.

use jibber_proto::api::Change;
use jibber_store::Store;
use jibber_store::testsuite::message;
use jibber_store::util::now_ms;
use jibber_store_sqlite::{SqliteConfig, SqliteStore};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use uuid::Uuid;

/// Applies only the first migration (the schema as it shipped) to a new database file.
async fn database_at_first_schema(path: &std::path::Path) -> sqlx::SqlitePool {
    let first = jibber_store::testsuite::first_migration_only(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations"),
    );
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true),
        )
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

/// A database of the first schema, migrated:
/// - before 2026-12-03 a read mark beyond the chat's last message raised `last_read_seq` past
///   messages that had not come yet. The read floor now bounds the mark-read and the recount,
///   so the migration lowers such a floor below the member's first unread message;
/// - the feeds moved from one table of full rows to a shared change log with per-user entries:
///   every feed reads as before and goes on from its last cursor.
#[tokio::test]
async fn a_database_of_the_first_schema_keeps_its_read_marks_and_feeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let pool = database_at_first_schema(&path).await;
    let (a, b, chat) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let (low, high) = if a < b { (a, b) } else { (b, a) };
    for (id, name) in [(a, "old_a"), (b, "old_b")] {
        sqlx::query(
            "INSERT INTO users (id, username, username_lower, registration_record, public_id_key, \
             public_signing_key, key_bundle, created_at) VALUES (?1, ?2, ?2, x'00', x'01', x'02', x'03', 1)",
        )
        .bind(id.to_string())
        .bind(name)
        .execute(&pool)
        .await
        .expect("user");
    }
    sqlx::query("INSERT INTO chats (id, user_low, user_high, next_seq, created_at, updated_at) VALUES (?1, ?2, ?3, 4, 1, 1)")
        .bind(chat.to_string())
        .bind(low.to_string())
        .bind(high.to_string())
        .execute(&pool)
        .await
        .expect("chat");
    // b read "up to 100" when only message 1 existed; messages 2 and 3 came later, unread.
    for (user, other, floor, unread) in [(a, b, 0, 0), (b, a, 100, 2)] {
        sqlx::query("INSERT INTO chat_members (chat_id, user_id, other_id, unread_count, last_read_seq, last_activity) VALUES (?1, ?2, ?3, ?4, ?5, 1)")
            .bind(chat.to_string())
            .bind(user.to_string())
            .bind(other.to_string())
            .bind(unread)
            .bind(floor)
            .execute(&pool)
            .await
            .expect("member");
    }
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for ((seq, status), id) in [(1, "read"), (2, "sent"), (3, "delivered")]
        .into_iter()
        .zip(&ids)
    {
        sqlx::query(
            "INSERT INTO messages (id, chat_id, seq, sender_id, receiver_id, cipher, iv, signature, \
             sender_public_id_key, sender_public_signing_key, receiver_public_id_key, client_timestamp, \
             temp_message_id, status, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, x'aa', x'bb', x'cc', x'01', x'02', x'01', 1, ?6, ?7, 1)",
        )
        .bind(id.to_string())
        .bind(chat.to_string())
        .bind(seq)
        .bind(a.to_string())
        .bind(b.to_string())
        .bind(format!("t{seq}"))
        .bind(status)
        .execute(&pool)
        .await
        .expect("message");
    }
    // The feeds: both got the chat; b got message 3 (and, earlier, the first two).
    let feed = [
        (a, 1, "chat", None),
        (b, 1, "chat", None),
        (b, 2, "message", Some((ids[2], 3))),
    ];
    for (user, seq, kind, message) in feed {
        sqlx::query(
            "INSERT INTO user_changes (user_id, seq, kind, chat_id, message_id, actor_id, up_to_seq, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
        )
        .bind(user.to_string())
        .bind(seq)
        .bind(kind)
        .bind(chat.to_string())
        .bind(message.map(|(id, _)| id.to_string()))
        .bind(a.to_string())
        .bind(message.map(|(_, seq)| seq))
        .execute(&pool)
        .await
        .expect("feed");
        sqlx::query("UPDATE users SET change_seq = ?2 WHERE id = ?1")
            .bind(user.to_string())
            .bind(seq)
            .execute(&pool)
            .await
            .expect("cursor");
    }
    pool.close().await;

    let store = SqliteStore::open(&SqliteConfig::new(format!("sqlite://{}", path.display())))
        .await
        .expect("open migrates");
    // The feeds read as before, and go on from their last cursor.
    let cursors = |changes: &[Change]| changes.iter().map(Change::cursor).collect::<Vec<_>>();
    let b_feed = store.changes_since(b, 0, 10).await.expect("b's feed");
    assert_eq!(cursors(&b_feed), [1, 2]);
    match &b_feed[1] {
        Change::Message { message, .. } => {
            assert_eq!((message.id, message.sequence_number), (ids[2], 3));
        }
        other => panic!("expected message 3, got {other:?}"),
    }
    assert_eq!(
        cursors(&store.changes_since(a, 0, 10).await.expect("a's feed")),
        [1]
    );
    let floor: i64 = sqlx::query_scalar(
        "SELECT last_read_seq FROM chat_members WHERE chat_id = ?1 AND user_id = ?2",
    )
    .bind(chat.to_string())
    .bind(b.to_string())
    .fetch_one(store.read_pool())
    .await
    .expect("floor");
    assert_eq!(
        floor, 1,
        "the floor is lowered below the first unread message"
    );
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'messages'",
    )
    .fetch_all(store.read_pool())
    .await
    .expect("indexes");
    assert!(
        !indexes
            .iter()
            .any(|n| n == "messages_unread" || n == "messages_receiver"),
        "{indexes:?}"
    );
    // A recount still finds both unread messages, and a mark reads them.
    let r = store
        .mark_read(b, chat, 1, now_ms())
        .await
        .expect("recount");
    assert_eq!((r.marked, r.unread_count), (0, 2));
    let r = store.mark_read(b, chat, 3, now_ms()).await.expect("read");
    assert_eq!((r.marked, r.unread_count), (2, 0));

    // The repeat check's index leads with the idempotency key, and still knows the messages
    // stored before the migration.
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
            .bind(dedup_index(&store).await)
            .fetch_all(store.read_pool())
            .await
            .expect("index columns");
    assert_eq!(columns, ["temp_message_id", "sender_id"]);
    let mut again = message(chat, a, b, "a repeat");
    again.temp_message_id = "t2".to_owned();
    let repeat = store.send_message(again, true).await.expect("repeat");
    assert_eq!(
        repeat.message.id, ids[1],
        "the repeat returns the first message"
    );

    // The read mark was entry 3 of b's feed and 2 of a's; a new message is the next of each.
    store
        .send_message(message(chat, a, b, "after the migration"), true)
        .await
        .expect("send");
    assert_eq!(
        cursors(&store.changes_since(b, 1, 10).await.expect("b's feed")),
        [2, 3, 4]
    );
    assert_eq!(
        cursors(&store.changes_since(a, 0, 10).await.expect("a's feed")),
        [1, 2, 3]
    );
    store.close().await;
}

/// The name of the unique index on `messages` that covers (sender_id, temp_message_id).
async fn dedup_index(store: &SqliteStore) -> String {
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_index_list('messages') WHERE \"unique\" = 1")
            .fetch_all(store.read_pool())
            .await
            .expect("indexes");
    for name in indexes {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_index_info(?1)")
            .bind(&name)
            .fetch_all(store.read_pool())
            .await
            .expect("columns");
        if columns.iter().any(|c| c == "temp_message_id") {
            return name;
        }
    }
    panic!("no unique index covers temp_message_id")
}
