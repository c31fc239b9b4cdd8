//! The server on PostgreSQL: a fresh schema of `JIBBER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), then register, login, chat, send and history
//! over HTTP. An unreachable PostgreSQL fails the test.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

use crate::helpers::spawn_app_with;

/// Creates an empty schema and returns a URL whose connections use it.
pub async fn fresh_postgres_url() -> String {
    let base = std::env::var("JIBBER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {base}: {e}; start it or set JIBBER_TEST_POSTGRES_URL"
            )
        });
    // Named like the store tests' schemas, whose runs drop those left over an hour by a failure.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let schema = format!(
        "jibber_test_{now}_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("create the schema");
    admin.close().await.expect("close");
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options[search_path]={schema}")
}

/// Drops the schema in the URL (after the server closed its pool).
async fn drop_schema(url: &str) {
    let (base, schema) = url
        .rsplit_once("options[search_path]=")
        .expect("a test URL");
    let base = base.trim_end_matches(['?', '&']);
    let mut admin = sqlx::PgConnection::connect(base).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .expect("drop the schema");
    admin.close().await.expect("close");
}

#[tokio::test]
async fn the_server_runs_on_postgres() {
    let url = fresh_postgres_url().await;
    let app = spawn_app_with(&[("database_url", &url)]).await;
    let health = app
        .request(reqwest::Method::GET, "/health", None, None)
        .await;
    assert_eq!(health.data()["database"]["backend"], json!("postgres"));
    assert_eq!(health.data()["database"]["ok"], json!(true));

    // Register and log in (OPAQUE state kept in pending_logins between the steps).
    let a = app.user("pg_ann").await;
    let b = app.user("pg_ben").await;
    let taken = app.register(&a.username.to_uppercase(), "other").await;
    taken.assert_error(409, "CONFLICT");

    let chat = app.chat(&a, &b).await;
    let first = app.send(&a, &b, chat, "pg-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.data()["sequenceNumber"], json!(1));
    let again = app.send(&a, &b, chat, "pg-1").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.data()["duplicate"], json!(true));
    assert_eq!(again.data()["messageId"], first.data()["messageId"]);
    let reply = app.send(&b, &a, chat, "pg-2").await;
    assert_eq!(reply.data()["sequenceNumber"], json!(2));

    let history = app.get(&format!("/messages/{chat}"), &a.access).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.body);
    let msgs = history.data().as_array().expect("array");
    assert_eq!(
        msgs.iter()
            .map(|m| (m["sequenceNumber"].clone(), m["tempMessageId"].clone()))
            .collect::<Vec<_>>(),
        vec![(json!(1), json!("pg-1")), (json!(2), json!("pg-2"))]
    );
    assert_eq!(msgs[0]["sender"], json!(a.id));
    let list = app.get("/chats", &b.access).await;
    assert_eq!(list.data()[0]["id"], json!(chat));
    assert_eq!(list.data()[0]["unreadCount"], json!(1));

    // Refresh rotates in the database too.
    let refreshed = app
        .post("/auth/refresh", None, json!({"refreshToken": a.refresh}))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);

    app.stop().await;
    drop_schema(&url).await;
}

/// The pool settings reach PostgreSQL: with one connection, a short acquire timeout and a
/// statement timeout, a request stuck on a lock holds the node's only connection, the next
/// request is answered 503 once the acquire timeout passes, and the stuck one is cancelled by
/// PostgreSQL after the statement timeout (503 too) while the lock is still held.
#[tokio::test]
async fn the_pool_limits_and_timeouts_are_settings() {
    let url = fresh_postgres_url().await;
    let app = spawn_app_with(&[
        ("database_url", &url),
        ("database_max_connections", "1"),
        ("database_acquire_timeout", "200ms"),
        ("database_statement_timeout", "3s"),
    ])
    .await;
    let a = app.user("pool_ann").await;
    assert_eq!(app.get("/users/me", &a.access).await.status, StatusCode::OK);

    // Another client of the database takes the users table (in the test's schema).
    let mut locker = sqlx::PgConnection::connect(&url).await.expect("connect");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");

    // A request that reads the table waits for the lock on the node's only connection.
    let started = std::time::Instant::now();
    let stuck = tokio::spawn({
        let (http, url, token) = (app.http.clone(), app.url("/users/me"), a.access.clone());
        async move {
            let res = http.get(url).bearer_auth(token).send().await.expect("send");
            (crate::helpers::TestApp::reply(res).await, started.elapsed())
        }
    });
    let mut watcher = sqlx::PgConnection::connect(&url).await.expect("connect");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE relation = 'users'::regclass AND NOT granted",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("pg_locks");
        if waiting > 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never waited for the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // No connection is free: another request gets 503 after the acquire timeout.
    let other = app.get("/chats", &a.access).await;
    other.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(
        !stuck.is_finished(),
        "the first request still holds the connection"
    );

    // PostgreSQL cancels the stuck statement after the statement timeout, lock or not.
    let (reply, took) = stuck.await.expect("the request ends");
    reply.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(
        took >= std::time::Duration::from_secs(3),
        "cancelled after {took:?}, before the statement timeout"
    );
    let still_locked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE relation = 'users'::regclass AND granted AND mode = 'AccessExclusiveLock'",
    )
    .fetch_one(&mut watcher)
    .await
    .expect("pg_locks");
    assert_eq!(
        still_locked, 1,
        "the lock was still held: the timeout ended the request"
    );

    lock.rollback().await.expect("unlock");
    assert_eq!(app.get("/users/me", &a.access).await.status, StatusCode::OK);
    locker.close().await.expect("close");
    watcher.close().await.expect("close");
    app.stop().await;
    drop_schema(&url).await;
}
