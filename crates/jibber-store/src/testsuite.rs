//! The storage suite: the guarantees of [`Store`], checked the same way on every backend.
//!
//! Each backend's tests call every function here with a fresh, empty store (see
//! `jibber-store-sqlite/tests/suite.rs`). Functions panic with a message on failure.

use std::collections::BTreeSet;
use std::sync::Arc;

use jibber_proto::api::{Change, DeliveryStatus};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::batch::SendRequest;
use crate::util::now_ms;
use crate::{NewMessage, NewRefreshToken, NewUser, PendingLogin, RefreshCheck, Store, StoreError};

/// Creates a user with a unique name.
pub async fn user(store: &dyn Store, name: &str) -> Uuid {
    let id = Uuid::now_v7();
    store
        .create_user(NewUser {
            id,
            username: name.to_owned(),
            email: None,
            display_name: Some(format!("{name} display")),
            registration_record: vec![1; 192],
            public_id_key: vec![2; 32],
            public_signing_key: vec![3; 32],
            key_bundle: vec![4; 100],
            created_at: now_ms(),
        })
        .await
        .expect("create user");
    id
}

/// A message from `sender` to `receiver` in `chat` with the given idempotency key.
pub fn message(chat: Uuid, sender: Uuid, receiver: Uuid, temp: &str) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        chat_id: chat,
        sender,
        receiver,
        cipher: temp.as_bytes().to_vec(),
        iv: vec![7; 12],
        signature: vec![8; 64],
        sender_public_id_key: vec![2; 32],
        sender_public_signing_key: vec![3; 32],
        receiver_public_id_key: vec![2; 32],
        client_timestamp: now_ms(),
        temp_message_id: temp.to_owned(),
        created_at: now_ms(),
    }
}

/// The chat of `a` and `b`, created if needed.
pub async fn chat(store: &dyn Store, a: Uuid, b: Uuid) -> Uuid {
    store
        .create_or_get_chat(a, b, Uuid::now_v7(), now_ms())
        .await
        .expect("chat")
        .chat
        .id
}

/// Usernames are unique whatever their case; lookups ignore case.
pub async fn usernames_are_case_insensitive(store: Arc<dyn Store>) {
    let id = user(&*store, "Alice").await;
    let err = store
        .create_user(NewUser {
            id: Uuid::now_v7(),
            username: "alice".into(),
            email: None,
            display_name: None,
            registration_record: vec![1],
            public_id_key: vec![1],
            public_signing_key: vec![1],
            key_bundle: vec![1],
            created_at: now_ms(),
        })
        .await
        .expect_err("duplicate username");
    assert!(matches!(err, StoreError::Conflict("username")), "{err:?}");
    let found = store
        .user_by_username("ALICE")
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.id, id);
    assert_eq!(found.username, "Alice");
}

/// 200 concurrent sends into one chat get sequence numbers 1..=200 exactly.
pub async fn sequences_are_gapless_under_concurrency(store: Arc<dyn Store>) {
    let a = user(&*store, "seq_a").await;
    let b = user(&*store, "seq_b").await;
    let c = chat(&*store, a, b).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        let (from, to) = if i % 2 == 0 { (a, b) } else { (b, a) };
        tasks.push(tokio::spawn(async move {
            store
                .send_message(message(c, from, to, &format!("t{i}")), true)
                .await
                .expect("send")
                .message
                .sequence_number
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
    let all = store.messages_since(a, c, 0, 500).await.expect("since");
    assert_eq!(
        all.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<i64>>()
    );
    let chat = store.chat_for(a, c).await.expect("chat");
    assert_eq!(chat.last_sequence, 200);
    assert_eq!(chat.last_message.expect("last").sequence_number, 200);
    // Each side received 100, none read.
    assert_eq!(chat.unread_count, 100);
    assert_eq!(store.chat_for(b, c).await.expect("chat").unread_count, 100);
}

/// A repeated (sender, tempMessageId) returns the first message and stores nothing new,
/// even when the repeats race.
pub async fn sends_are_idempotent(store: Arc<dyn Store>) {
    let a = user(&*store, "idem_a").await;
    let b = user(&*store, "idem_b").await;
    let c = chat(&*store, a, b).await;
    let first = store
        .send_message(message(c, a, b, "same"), true)
        .await
        .expect("send");
    assert!(!first.duplicate);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .send_message(message(c, a, b, "same"), true)
                .await
                .expect("resend")
        }));
    }
    for t in tasks {
        let again = t.await.expect("task");
        assert!(again.duplicate);
        assert_eq!(again.message.id, first.message.id);
        assert_eq!(again.message.sequence_number, 1);
    }
    assert_eq!(
        store
            .messages_since(a, c, 0, 100)
            .await
            .expect("since")
            .len(),
        1
    );
    assert_eq!(store.chat_for(b, c).await.expect("chat").unread_count, 1);
    // The same key from the other user is a different message.
    let other = store
        .send_message(message(c, b, a, "same"), true)
        .await
        .expect("send");
    assert!(!other.duplicate);
    assert_eq!(other.message.sequence_number, 2);
    // Reusing a key in another chat is refused, not silently mapped.
    let d = user(&*store, "idem_d").await;
    let c2 = chat(&*store, a, d).await;
    let err = store
        .send_message(message(c2, a, d, "same"), true)
        .await
        .expect_err("conflict");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

/// Unread counts follow the messages: increments on receive (unless the chat is active),
/// exact recount on read.
pub async fn unread_counts_match_messages(store: Arc<dyn Store>) {
    let a = user(&*store, "unread_a").await;
    let b = user(&*store, "unread_b").await;
    let c = chat(&*store, a, b).await;
    for i in 0..10 {
        store
            .send_message(message(c, a, b, &format!("u{i}")), true)
            .await
            .expect("send");
    }
    store
        .send_message(message(c, a, b, "active"), false)
        .await
        .expect("send while active");
    assert_eq!(store.chat_for(b, c).await.expect("chat").unread_count, 10);
    assert_eq!(store.chat_for(a, c).await.expect("chat").unread_count, 0);
    let r = store.mark_read(b, c, 4, now_ms()).await.expect("read");
    assert_eq!(r.marked, 4);
    // The recount counts the unread messages that counted: 10 - 4 (the one sent while the
    // chat was open never counts).
    assert_eq!(r.unread_count, 6);
    assert_eq!(store.chat_for(b, c).await.expect("chat").unread_count, 6);
    // The sender cannot mark its own messages read.
    let r = store.mark_read(a, c, 100, now_ms()).await.expect("read");
    assert_eq!(r.marked, 0);
    let r = store.mark_read(b, c, 11, now_ms()).await.expect("read");
    assert_eq!((r.marked, r.unread_count), (7, 0));
    // Concurrent sends and reads: the count always equals the counted unread messages.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .send_message(message(c, a, b, &format!("cc{i}")), i % 4 != 0)
                .await
                .expect("send");
            if i % 10 == 9 {
                store
                    .mark_read(b, c, 11 + i64::from(i) / 2, now_ms())
                    .await
                    .expect("read");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let msgs = store.messages_since(b, c, 11, 100).await.expect("since");
    let unread_counted = store.chat_for(b, c).await.expect("chat").unread_count;
    let r = store.mark_read(b, c, 0, now_ms()).await.expect("recount");
    assert_eq!(
        r.unread_count, unread_counted,
        "the running count equals a fresh recount"
    );
    assert!(
        unread_counted
            <= msgs
                .iter()
                .filter(|m| m.delivery_status != DeliveryStatus::Read)
                .count() as i64
    );
    let msgs = store.messages_since(b, c, 0, 11).await.expect("since");
    assert!(
        msgs.iter()
            .all(|m| m.delivery_status == DeliveryStatus::Read && m.read_at.is_some())
    );
}

/// A read mark beyond the chat's last message marks what exists, never a message that comes
/// later; a later mark reads the later messages.
pub async fn reading_ahead_leaves_later_messages_unread(store: Arc<dyn Store>) {
    let a = user(&*store, "ahead_a").await;
    let b = user(&*store, "ahead_b").await;
    let c = chat(&*store, a, b).await;
    store
        .send_message(message(c, a, b, "first"), true)
        .await
        .expect("send");
    let r = store.mark_read(b, c, 1000, now_ms()).await.expect("read");
    assert_eq!((r.marked, r.unread_count), (1, 0));
    for i in 0..3 {
        store
            .send_message(message(c, a, b, &format!("later{i}")), true)
            .await
            .expect("send");
    }
    assert_eq!(store.chat_for(b, c).await.expect("chat").unread_count, 3);
    // A recount (a mark at or below what was read) finds the three.
    let r = store.mark_read(b, c, 1, now_ms()).await.expect("recount");
    assert_eq!((r.marked, r.unread_count), (0, 3));
    let r = store.mark_read(b, c, 3, now_ms()).await.expect("read");
    assert_eq!((r.marked, r.unread_count), (2, 1));
    let unread: Vec<i64> = store
        .messages_since(b, c, 0, 10)
        .await
        .expect("since")
        .iter()
        .filter(|m| m.delivery_status != DeliveryStatus::Read)
        .map(|m| m.sequence_number)
        .collect();
    assert_eq!(unread, vec![4]);
    let r = store.mark_read(b, c, 4, now_ms()).await.expect("read");
    assert_eq!((r.marked, r.unread_count), (1, 0));
}

/// Delivered is set once, only by the receiver.
pub async fn delivery_is_marked_once_by_the_receiver(store: Arc<dyn Store>) {
    let a = user(&*store, "dlv_a").await;
    let b = user(&*store, "dlv_b").await;
    let c = chat(&*store, a, b).await;
    let m = store
        .send_message(message(c, a, b, "d1"), true)
        .await
        .expect("send")
        .message;
    assert!(matches!(
        store.mark_delivered(a, m.id, now_ms()).await,
        Err(StoreError::NotFound)
    ));
    let first = store
        .mark_delivered(b, m.id, now_ms())
        .await
        .expect("deliver");
    assert!(first.changed);
    let second = store
        .mark_delivered(b, m.id, now_ms())
        .await
        .expect("deliver again");
    assert!(!second.changed);
    assert_eq!(second.delivered_at, first.delivered_at);
    let stored = store.message_for(a, m.id).await.expect("message");
    assert_eq!(stored.delivery_status, DeliveryStatus::Delivered);
}

/// Receipts that arrive together (and are written in one batch) are each marked once: a
/// repeat in the same batch is unchanged, the sender and an unknown id are refused, and the
/// sender's feed holds one `delivered` entry per message.
pub async fn concurrent_deliveries_are_each_marked_once(store: Arc<dyn Store>) {
    let a = user(&*store, "cdl_a").await;
    let b = user(&*store, "cdl_b").await;
    let c = chat(&*store, a, b).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let m = store
            .send_message(message(c, a, b, &format!("cd{i}")), true)
            .await
            .expect("send")
            .message;
        ids.push(m.id);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (k, id) in ids.iter().copied().enumerate() {
        for who in [b, b, a] {
            let store = store.clone();
            tasks.spawn(async move { (k, who, store.mark_delivered(who, id, now_ms()).await) });
        }
    }
    {
        let store = store.clone();
        tasks.spawn(async move {
            (
                usize::MAX,
                b,
                store.mark_delivered(b, Uuid::now_v7(), now_ms()).await,
            )
        });
    }
    let mut changed = vec![0; ids.len()];
    let mut unchanged = vec![0; ids.len()];
    while let Some(done) = tasks.join_next().await {
        let (k, who, answer) = done.expect("task");
        match (k, answer) {
            (usize::MAX, answer) => assert!(matches!(answer, Err(StoreError::NotFound))),
            (_, Err(StoreError::NotFound)) => assert_eq!(who, a, "only the sender is refused"),
            (k, Ok(r)) => {
                assert_eq!(who, b);
                assert_eq!(r.message_id, ids[k]);
                assert_eq!(r.sequence_number, k as i64 + 1);
                if r.changed {
                    changed[k] += 1;
                } else {
                    unchanged[k] += 1;
                }
            }
            (_, Err(e)) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(changed, vec![1; ids.len()], "each message changes once");
    assert_eq!(unchanged, vec![1; ids.len()], "the repeat is unchanged");
    let feed = store.changes_since(a, 0, 1000).await.expect("feed");
    let mut delivered: Vec<Uuid> = feed
        .iter()
        .filter_map(|ch| match ch {
            Change::Delivered { message_id, .. } => Some(*message_id),
            _ => None,
        })
        .collect();
    delivered.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(
        delivered, want,
        "one delivered entry per message in the sender's feed"
    );
    for id in ids {
        let m = store.message_for(a, id).await.expect("message");
        assert_eq!(m.delivery_status, DeliveryStatus::Delivered);
    }
}

/// Nobody reads or writes a chat they are not a member of.
pub async fn non_members_see_nothing(store: Arc<dyn Store>) {
    let a = user(&*store, "mem_a").await;
    let b = user(&*store, "mem_b").await;
    let eve = user(&*store, "mem_eve").await;
    let c = chat(&*store, a, b).await;
    let m = store
        .send_message(message(c, a, b, "secret"), true)
        .await
        .expect("send")
        .message;
    assert!(matches!(
        store.chat_for(eve, c).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.messages_before(eve, c, None, 10).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.messages_since(eve, c, 0, 10).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.message_for(eve, m.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.mark_delivered(eve, m.id, now_ms()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.mark_read(eve, c, 10, now_ms()).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.chat_members(eve, c).await,
        Err(StoreError::NotFound)
    ));
    // Eve cannot post into it, whoever she names as receiver.
    assert!(matches!(
        store.send_message(message(c, eve, b, "x"), true).await,
        Err(StoreError::NotFound)
    ));
    // A member must name the other member as receiver.
    assert!(matches!(
        store.send_message(message(c, a, eve, "y"), true).await,
        Err(StoreError::WrongReceiver)
    ));
    assert!(
        store
            .list_chats(eve, None, 50)
            .await
            .expect("list")
            .is_empty()
    );
}

/// One chat per pair, whoever asks; newest activity first; the cursor pages without overlap.
pub async fn chats_are_unique_and_listed_by_activity(store: Arc<dyn Store>) {
    let me = user(&*store, "list_me").await;
    let mut others = Vec::new();
    for i in 0..5 {
        others.push(user(&*store, &format!("list_o{i}")).await);
    }
    let mut chats = Vec::new();
    let mut last_created = now_ms();
    for o in &others {
        last_created = now_ms();
        let created = store
            .create_or_get_chat(me, *o, Uuid::now_v7(), last_created)
            .await
            .expect("create");
        assert!(created.created);
        let again = store
            .create_or_get_chat(*o, me, Uuid::now_v7(), now_ms())
            .await
            .expect("get");
        assert!(!again.created);
        assert_eq!(again.chat.id, created.chat.id);
        assert_eq!(again.chat.other_user.id, me);
        chats.push(created.chat.id);
    }
    // Activity in chat 1 moves it to the top. Activity is kept in milliseconds: the bump must
    // come at least one after the last chat was created, or the two tie (and the newer chat
    // comes first).
    let mut bump = message(chats[1], others[1], me, "bump");
    bump.created_at = bump
        .created_at
        .max(last_created + time::Duration::milliseconds(1));
    store.send_message(bump, true).await.expect("send");
    let first = store.list_chats(me, None, 2).await.expect("page 1");
    assert_eq!(first[0].id, chats[1]);
    assert_eq!(
        first[0]
            .last_message
            .as_ref()
            .expect("last")
            .temp_message_id,
        "bump"
    );
    assert_eq!(first[0].unread_count, 1);
    let mut seen: Vec<Uuid> = first.iter().map(|c| c.id).collect();
    let mut cursor = first.last().map(|c| crate::ChatCursor {
        activity_ms: crate::util::to_ms(c.updated_at),
        chat_id: c.id,
    });
    while let Some(cur) = cursor {
        let page = store.list_chats(me, Some(cur), 2).await.expect("page");
        seen.extend(page.iter().map(|c| c.id));
        cursor = page.last().map(|c| crate::ChatCursor {
            activity_ms: crate::util::to_ms(c.updated_at),
            chat_id: c.id,
        });
    }
    assert_eq!(seen.len(), 5, "every chat exactly once");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 5);
    assert!(matches!(
        store
            .create_or_get_chat(me, Uuid::now_v7(), Uuid::now_v7(), now_ms())
            .await,
        Err(StoreError::NotFound)
    ));
}

/// A user's chat peers are the other member of each of their chats, once each, and nobody
/// they have no chat with; a user without chats has none.
pub async fn chat_peers_are_the_other_members(store: Arc<dyn Store>) {
    let me = user(&*store, "peers_me").await;
    let a = user(&*store, "peers_a").await;
    let b = user(&*store, "peers_b").await;
    let stranger = user(&*store, "peers_stranger").await;
    assert!(store.chat_peers(me).await.expect("peers").is_empty());
    chat(&*store, me, a).await;
    chat(&*store, b, me).await;
    chat(&*store, a, b).await;
    let mut peers = store.chat_peers(me).await.expect("peers");
    peers.sort();
    let mut want = vec![a, b];
    want.sort();
    assert_eq!(peers, want);
    let mut of_a = store.chat_peers(a).await.expect("peers");
    of_a.sort();
    let mut want_a = vec![me, b];
    want_a.sort();
    assert_eq!(of_a, want_a);
    assert!(store.chat_peers(stranger).await.expect("peers").is_empty());
}

/// History pages backwards in chronological pages; sync pages forwards.
pub async fn history_and_sync_page(store: Arc<dyn Store>) {
    let a = user(&*store, "hist_a").await;
    let b = user(&*store, "hist_b").await;
    let c = chat(&*store, a, b).await;
    for i in 0..25 {
        store
            .send_message(message(c, a, b, &format!("h{i}")), true)
            .await
            .expect("send");
    }
    let newest = store
        .messages_before(b, c, None, 10)
        .await
        .expect("history");
    assert_eq!(
        newest.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
        (16..=25).collect::<Vec<i64>>()
    );
    let older = store
        .messages_before(b, c, Some(16), 10)
        .await
        .expect("history");
    assert_eq!(older.first().expect("first").sequence_number, 6);
    let since = store.messages_since(b, c, 20, 3).await.expect("since");
    assert_eq!(
        since.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
        vec![21, 22, 23]
    );
}

/// Refresh tokens rotate; a spent one presented again revokes the family.
pub async fn refresh_tokens_rotate_and_reuse_revokes(store: Arc<dyn Store>) {
    let u = user(&*store, "refresh_u").await;
    let now = now_ms();
    let later = now + time::Duration::days(1);
    let family = Uuid::now_v7();
    let t = |hash: u8| NewRefreshToken {
        id: Uuid::now_v7(),
        user_id: u,
        family_id: family,
        token_hash: [hash; 32],
        created_at: now,
        expires_at: later,
    };
    store.insert_refresh_token(t(1)).await.expect("insert");
    assert_eq!(
        store
            .rotate_refresh_token([1; 32], t(2), now)
            .await
            .expect("rotate"),
        RefreshCheck::Valid {
            user_id: u,
            family_id: family
        }
    );
    assert!(matches!(
        store
            .check_refresh_token([2; 32], now)
            .await
            .expect("check"),
        RefreshCheck::Valid { .. }
    ));
    // Reuse of token 1: reported, and token 2 dies with its family.
    assert_eq!(
        store
            .rotate_refresh_token([1; 32], t(3), now)
            .await
            .expect("reuse"),
        RefreshCheck::Reused { user_id: u }
    );
    assert!(matches!(
        store
            .check_refresh_token([2; 32], now)
            .await
            .expect("check"),
        RefreshCheck::Reused { .. }
    ));
    assert!(matches!(
        store
            .rotate_refresh_token([2; 32], t(4), now)
            .await
            .expect("rotate"),
        RefreshCheck::Reused { .. }
    ));
    assert_eq!(
        store
            .rotate_refresh_token([9; 32], t(5), now)
            .await
            .expect("unknown"),
        RefreshCheck::Unknown
    );
    // Expiry.
    let mut old = t(6);
    old.family_id = Uuid::now_v7();
    old.expires_at = now - time::Duration::seconds(1);
    store.insert_refresh_token(old).await.expect("insert");
    assert_eq!(
        store
            .rotate_refresh_token([6; 32], t(7), now)
            .await
            .expect("expired"),
        RefreshCheck::Expired
    );
    // Logout revokes.
    let mut fresh = t(8);
    fresh.family_id = Uuid::now_v7();
    store.insert_refresh_token(fresh).await.expect("insert");
    assert!(
        store
            .revoke_refresh_family([8; 32], now)
            .await
            .expect("revoke")
    );
    assert!(matches!(
        store
            .check_refresh_token([8; 32], now)
            .await
            .expect("check"),
        RefreshCheck::Reused { .. }
    ));
}

/// Pending logins are single-use and expire.
pub async fn pending_logins_expire_and_are_single_use(store: Arc<dyn Store>) {
    let now = OffsetDateTime::now_utc();
    let live = PendingLogin {
        id: Uuid::new_v4(),
        user_id: None,
        state: vec![1; 128],
        expires_at: now + time::Duration::seconds(60),
    };
    let dead = PendingLogin {
        id: Uuid::new_v4(),
        user_id: None,
        state: vec![2; 128],
        expires_at: now - time::Duration::seconds(1),
    };
    store.put_pending_login(live.clone()).await.expect("put");
    store.put_pending_login(dead.clone()).await.expect("put");
    assert_eq!(
        store
            .take_pending_login(live.id, now)
            .await
            .expect("take")
            .expect("live")
            .state,
        live.state
    );
    assert!(
        store
            .take_pending_login(live.id, now)
            .await
            .expect("take")
            .is_none(),
        "single use"
    );
    assert!(
        store
            .take_pending_login(dead.id, now)
            .await
            .expect("take")
            .is_none(),
        "expired"
    );
    store
        .put_pending_login(PendingLogin {
            id: Uuid::new_v4(),
            ..dead
        })
        .await
        .expect("put");
    assert!(store.purge_expired(now).await.expect("purge") >= 1);
}

/// The change feed tells each user, in order, about chats, messages and receipts.
pub async fn change_feed_is_complete_and_ordered(store: Arc<dyn Store>) {
    let a = user(&*store, "feed_a").await;
    let b = user(&*store, "feed_b").await;
    let c = chat(&*store, a, b).await;
    let m1 = store
        .send_message(message(c, a, b, "f1"), true)
        .await
        .expect("send")
        .message;
    let m2 = store
        .send_message(message(c, a, b, "f2"), true)
        .await
        .expect("send")
        .message;
    store
        .mark_delivered(b, m1.id, now_ms())
        .await
        .expect("deliver");
    store.mark_read(b, c, 2, now_ms()).await.expect("read");
    let feed_a = store.changes_since(a, 0, 100).await.expect("feed");
    let kinds: Vec<&str> = feed_a
        .iter()
        .map(|ch| match ch {
            Change::Chat { .. } => "chat",
            Change::Message { .. } => "message",
            Change::Delivered { .. } => "delivered",
            Change::Read { .. } => "read",
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["chat", "message", "message", "delivered", "read"]
    );
    let cursors: Vec<i64> = feed_a.iter().map(Change::cursor).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    match &feed_a[2] {
        Change::Message { message, .. } => assert_eq!(message.id, m2.id),
        other => panic!("expected a message, got {other:?}"),
    }
    // Walking from a middle cursor returns exactly the rest.
    let rest = store.changes_since(a, cursors[1], 100).await.expect("feed");
    assert_eq!(rest.len(), 3);
    // b learns of the chat, both messages, and its own read (for its other devices).
    let feed_b = store.changes_since(b, 0, 100).await.expect("feed");
    assert_eq!(feed_b.len(), 4);
    assert!(matches!(&feed_b[3], Change::Read { reader, up_to_sequence: 2, .. } if *reader == b));
}

/// Contacts: never the caller, searchable, paged, empty is empty.
pub async fn contacts_search_and_page(store: Arc<dyn Store>) {
    let me = user(&*store, "zz_me").await;
    assert!(
        store
            .contacts(me, None, None, 10)
            .await
            .expect("contacts")
            .is_empty()
    );
    for n in ["zz_ann", "zz_bob", "zz_bea", "zz_carl"] {
        user(&*store, n).await;
    }
    let all = store
        .contacts(me, Some("zz_"), None, 10)
        .await
        .expect("contacts");
    assert_eq!(
        all.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        vec!["zz_ann", "zz_bea", "zz_bob", "zz_carl"]
    );
    let b = store
        .contacts(me, Some("ZZ_B"), None, 10)
        .await
        .expect("contacts");
    assert_eq!(b.len(), 2);
    let page2 = store
        .contacts(me, Some("zz_"), Some("zz_bea"), 10)
        .await
        .expect("contacts");
    assert_eq!(
        page2
            .iter()
            .map(|u| u.username.as_str())
            .collect::<Vec<_>>(),
        vec!["zz_bob", "zz_carl"]
    );
    // LIKE wildcards in the search are literal.
    assert!(
        store
            .contacts(me, Some("%"), None, 10)
            .await
            .expect("contacts")
            .is_empty()
    );
}

fn req(msg: NewMessage) -> SendRequest {
    SendRequest {
        msg,
        count_unread: true,
    }
}

/// Sends written in one batch answer each on their own: a send into a chat the sender is not
/// in, one naming the wrong receiver and one reusing a key of another chat fail alone; the
/// others are stored with consecutive numbers, counted and in the feeds.
pub async fn batch_item_failure_spares_the_others(store: Arc<dyn Store>) {
    let a = user(&*store, "bat_a").await;
    let b = user(&*store, "bat_b").await;
    let c = user(&*store, "bat_c").await;
    let ab = chat(&*store, a, b).await;
    let bc = chat(&*store, b, c).await;
    store
        .send_message(message(bc, b, c, "used"), true)
        .await
        .expect("send");
    let answers = store
        .send_messages(vec![
            req(message(ab, a, b, "ok1")),
            req(message(bc, a, c, "not_member")),
            req(message(ab, a, c, "wrong_receiver")),
            req(message(ab, b, a, "ok2")),
            req(message(ab, b, a, "used")),
            req(message(ab, a, b, "ok3")),
        ])
        .await;
    assert_eq!(answers.len(), 6);
    let seq = |i: usize| match &answers[i] {
        Ok(s) if !s.duplicate => s.message.sequence_number,
        other => panic!("send {i} should be stored: {other:?}"),
    };
    assert_eq!((seq(0), seq(3), seq(5)), (1, 2, 3));
    assert!(
        matches!(answers[1], Err(StoreError::NotFound)),
        "{:?}",
        answers[1]
    );
    assert!(
        matches!(answers[2], Err(StoreError::WrongReceiver)),
        "{:?}",
        answers[2]
    );
    assert!(
        matches!(answers[4], Err(StoreError::Conflict("tempMessageId"))),
        "{:?}",
        answers[4]
    );
    let stored = store.messages_since(a, ab, 0, 100).await.expect("since");
    assert_eq!(
        stored
            .iter()
            .map(|m| (m.sequence_number, m.temp_message_id.as_str()))
            .collect::<Vec<_>>(),
        vec![(1, "ok1"), (2, "ok2"), (3, "ok3")]
    );
    assert_eq!(store.chat_for(b, ab).await.expect("chat").unread_count, 2);
    assert_eq!(store.chat_for(a, ab).await.expect("chat").unread_count, 1);
    // Nothing leaked into the other chat.
    assert_eq!(store.chat_for(c, bc).await.expect("chat").last_sequence, 1);
    // a's feed: the chat, then the three messages, cursors gapless.
    let feed = store.changes_since(a, 0, 100).await.expect("feed");
    assert_eq!(
        feed.iter().map(|c| c.cursor()).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
}

/// A key repeated within one batch is stored once; the repeat answers the first message.
pub async fn duplicate_within_a_batch_is_stored_once(store: Arc<dyn Store>) {
    let a = user(&*store, "dupb_a").await;
    let b = user(&*store, "dupb_b").await;
    let ab = chat(&*store, a, b).await;
    let answers = store
        .send_messages(vec![
            req(message(ab, a, b, "k1")),
            req(message(ab, a, b, "k1")),
            req(message(ab, a, b, "k2")),
            req(message(ab, a, b, "k1")),
        ])
        .await;
    let sent: Vec<_> = answers.into_iter().map(|r| r.expect("send")).collect();
    assert_eq!(
        sent.iter().map(|s| s.duplicate).collect::<Vec<_>>(),
        vec![false, true, false, true]
    );
    assert_eq!(sent[1].message.id, sent[0].message.id);
    assert_eq!(sent[3].message.id, sent[0].message.id);
    assert_eq!(
        (
            sent[0].message.sequence_number,
            sent[2].message.sequence_number
        ),
        (1, 2)
    );
    let stored = store.messages_since(a, ab, 0, 100).await.expect("since");
    assert_eq!(stored.len(), 2);
    assert_eq!(store.chat_for(b, ab).await.expect("chat").unread_count, 2);
    let feed = store.changes_since(b, 0, 100).await.expect("feed");
    assert_eq!(feed.len(), 3, "the chat and two messages");
}

/// Many tasks send into several chats at once, each task one message after the other: every
/// chat's numbers are 1..=N without a gap, each task's messages are numbered in the order it
/// sent them, every answer is already readable (committed) when it arrives, and every user's
/// feed is gapless.
pub async fn concurrent_sends_into_many_chats_keep_order(store: Arc<dyn Store>) {
    const CHATS: usize = 6;
    const TASKS_PER_CHAT: usize = 4;
    const EACH: usize = 15;
    let hub = user(&*store, "hub").await;
    let mut chats = Vec::new();
    for i in 0..CHATS {
        let peer = user(&*store, &format!("peer{i}")).await;
        chats.push((chat(&*store, hub, peer).await, peer));
    }
    let mut tasks = Vec::new();
    for (ci, &(c, peer)) in chats.iter().enumerate() {
        for t in 0..TASKS_PER_CHAT {
            let store = store.clone();
            let (from, to) = if t % 2 == 0 { (hub, peer) } else { (peer, hub) };
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for k in 0..EACH {
                    let sent = store
                        .send_message(message(c, from, to, &format!("c{ci}t{t}k{k}")), true)
                        .await
                        .expect("send");
                    assert!(!sent.duplicate);
                    // Answered only after the commit: another connection reads it.
                    let read = store
                        .message_for(to, sent.message.id)
                        .await
                        .expect("committed before the answer");
                    assert_eq!(read.sequence_number, sent.message.sequence_number);
                    seqs.push(sent.message.sequence_number);
                }
                seqs
            }));
        }
    }
    for t in tasks {
        let seqs = t.await.expect("task");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "in send order: {seqs:?}"
        );
    }
    let n = (TASKS_PER_CHAT * EACH) as i64;
    for &(c, peer) in &chats {
        let all = store.messages_since(peer, c, 0, 1000).await.expect("since");
        assert_eq!(
            all.iter().map(|m| m.sequence_number).collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>()
        );
        let feed = store.changes_since(peer, 0, 1000).await.expect("feed");
        assert_eq!(
            feed.iter().map(|c| c.cursor()).collect::<Vec<_>>(),
            (1..=n + 1).collect::<Vec<_>>()
        );
    }
    let feed = store.changes_since(hub, 0, 1000).await.expect("feed");
    let total = CHATS as i64 * (n + 1);
    assert_eq!(
        feed.iter().map(|c| c.cursor()).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
}

/// Runs the whole suite, each case on a store from `fresh`.
#[macro_export]
macro_rules! store_suite {
    ($fresh:expr) => {
        $crate::store_suite!(@cases $fresh;
            usernames_are_case_insensitive,
            sequences_are_gapless_under_concurrency,
            sends_are_idempotent,
            unread_counts_match_messages,
            reading_ahead_leaves_later_messages_unread,
            delivery_is_marked_once_by_the_receiver,
            concurrent_deliveries_are_each_marked_once,
            non_members_see_nothing,
            chats_are_unique_and_listed_by_activity,
            chat_peers_are_the_other_members,
            history_and_sync_page,
            refresh_tokens_rotate_and_reuse_revokes,
            pending_logins_expire_and_are_single_use,
            change_feed_is_complete_and_ordered,
            contacts_search_and_page,
            batch_item_failure_spares_the_others,
            duplicate_within_a_batch_is_stored_once,
            concurrent_sends_into_many_chats_keep_order,
        );
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $fresh.await;
                $crate::testsuite::$case(store).await;
            }
        )*
    };
}

/// A new directory holding only the first of a backend's migrations (the schema as it shipped),
/// for tests that build a database of that schema and then let the store migrate it.
pub fn first_migration_only(migrations: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut names: Vec<_> = std::fs::read_dir(migrations)
        .expect("migrations")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    std::fs::copy(migrations.join(&names[0]), dir.path().join(&names[0])).expect("copy");
    dir
}
