//! `jibber migrate-data`: a SQLite installation filled through the Store API is copied into a
//! fresh PostgreSQL schema by the real binary, and everything reads back the same through the
//! Store API on PostgreSQL: accounts and key bundles, chats with unread counts, messages with
//! their delivered and read marks, change feeds and refresh tokens.

#[path = "../../jibber-store-postgres/tests/common/mod.rs"]
mod pg;

use std::process::Command;

use jibber_store::testsuite::{message, user};
use jibber_store::util::now_ms;
use jibber_store::{NewRefreshToken, RefreshCheck, Store};
use jibber_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::{Value, json};
use time::Duration;
use uuid::Uuid;

/// Everything a user can see, through the Store API, as JSON.
async fn view(store: &dyn Store, users: &[Uuid]) -> Value {
    let mut out = Vec::new();
    for &u in users {
        let r = store.user_by_id(u).await.expect("user").expect("exists");
        let chats = store.list_chats(u, None, 200).await.expect("chats");
        let mut histories = Vec::new();
        for c in &chats {
            let messages = store
                .messages_since(u, c.id, 0, 200)
                .await
                .expect("history");
            histories.push(serde_json::to_value(messages).expect("json"));
        }
        let changes = store.changes_since(u, 0, 1000).await.expect("feed");
        let mut peers = store.chat_peers(u).await.expect("peers");
        peers.sort();
        out.push(json!({
            "user": [r.id, r.username, r.email, r.display_name, r.registration_record,
                     r.public_id_key, r.public_signing_key, r.key_bundle,
                     r.created_at.to_string(), r.last_seen.map(|t| t.to_string())],
            "chats": serde_json::to_value(&chats).expect("json"),
            "histories": histories,
            "changes": serde_json::to_value(&changes).expect("json"),
            "peers": peers,
        }));
    }
    Value::Array(out)
}

fn token(user: Uuid, family: Uuid, byte: u8) -> NewRefreshToken {
    NewRefreshToken {
        id: Uuid::now_v7(),
        user_id: user,
        family_id: family,
        token_hash: [byte; 32],
        created_at: now_ms(),
        expires_at: now_ms() + Duration::days(30),
    }
}

fn migrate(from: &str, to: &str, force: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jibber"));
    cmd.args(["migrate-data", "--from", from, "--to", to]);
    if force {
        cmd.arg("--force");
    }
    cmd.output().expect("run jibber migrate-data")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_installation_moves_to_postgres_with_all_its_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = format!("sqlite://{}", dir.path().join("jibber.db").display());
    let sqlite = SqliteStore::open(&SqliteConfig::new(from.clone()))
        .await
        .expect("sqlite");
    let s: &dyn Store = &sqlite;
    let (a, b, c) = (
        user(s, "ann").await,
        user(s, "ben").await,
        user(s, "cy").await,
    );
    let ab = s
        .create_or_get_chat(a, b, Uuid::now_v7(), now_ms())
        .await
        .expect("chat")
        .chat
        .id;
    let ac = s
        .create_or_get_chat(c, a, Uuid::now_v7(), now_ms())
        .await
        .expect("chat")
        .chat
        .id;
    let mut to_b = Vec::new();
    for i in 0..5 {
        // The third arrived while Ben had the chat open: it never counted as unread.
        let sent = s
            .send_message(message(ab, a, b, &format!("ab-{i}")), i != 2)
            .await
            .expect("send");
        to_b.push(sent.message);
    }
    for i in 0..3 {
        s.send_message(message(ab, b, a, &format!("ba-{i}")), true)
            .await
            .expect("send");
    }
    for i in 0..2 {
        s.send_message(message(ac, c, a, &format!("ca-{i}")), true)
            .await
            .expect("send");
    }
    s.mark_delivered(b, to_b[0].id, now_ms())
        .await
        .expect("delivered");
    s.mark_delivered(b, to_b[3].id, now_ms())
        .await
        .expect("delivered");
    s.mark_read(b, ab, to_b[1].sequence_number, now_ms())
        .await
        .expect("read");
    s.set_last_seen(c, now_ms()).await.expect("last seen");
    // Ann's refresh token family: one spent, one live.
    let family = Uuid::now_v7();
    s.insert_refresh_token(token(a, family, 1))
        .await
        .expect("token");
    s.rotate_refresh_token([1; 32], token(a, family, 2), now_ms())
        .await
        .expect("rotate");
    let users = [a, b, c];
    let before = view(s, &users).await;
    assert_eq!(
        before[1]["chats"][0]["unreadCount"],
        json!(2),
        "Ben: 5 received, 2 read, 1 never counted"
    );
    sqlite.close().await;

    let to = pg::fresh_url().await;
    let out = migrate(&from, &to, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("messages: 10 rows"), "{stdout}");
    assert!(stdout.contains("users: 3 rows"), "{stdout}");

    let pg = pg::open(&to).await;
    let p: &dyn Store = &pg;
    assert_eq!(view(p, &users).await, before);
    let now = now_ms();
    assert_eq!(
        p.check_refresh_token([2; 32], now).await.expect("check"),
        RefreshCheck::Valid {
            user_id: a,
            family_id: family
        }
    );
    // The spent token is still spent: presenting it revokes the family, as before.
    assert_ne!(
        p.check_refresh_token([1; 32], now).await.expect("check"),
        RefreshCheck::Valid {
            user_id: a,
            family_id: family
        }
    );
    // The copy keeps working: the next message continues the sequence.
    let next = p
        .send_message(message(ab, a, b, "after-migration"), true)
        .await
        .expect("send on PostgreSQL");
    assert_eq!(next.message.sequence_number, 9);
    pg.pool().close().await;

    // A target that holds accounts is refused, and replaced only with --force.
    let again = migrate(&from, &to, false);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let forced = migrate(&from, &to, true);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    let pg = pg::open(&to).await;
    assert_eq!(view(&pg, &users).await, before);
    pg.pool().close().await;

    // Bad arguments are refused with a reason.
    let bad = migrate("sqlite:///nonexistent/jibber.db", &to, false);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no such SQLite database"));
}
