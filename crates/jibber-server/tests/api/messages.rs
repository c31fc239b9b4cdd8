//! Chats, messages, receipts, sync, and who may see what.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{message_body, spawn_app};

#[tokio::test]
async fn send_history_and_receipts() {
    let app = spawn_app().await;
    let a = app.user("ann").await;
    let b = app.user("ben").await;
    let created = app
        .post("/chats", Some(&a.access), json!({"userId": b.id}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.data()["otherUser"]["id"], json!(b.id));
    assert_eq!(created.data()["unreadCount"], json!(0));
    let chat = Uuid::parse_str(created.data()["id"].as_str().expect("id")).expect("uuid");
    // Idempotent from either side.
    let again = app
        .post("/chats", Some(&b.access), json!({"userId": a.id}))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.data()["id"], json!(chat));

    let sent = app.send(&a, &b, chat, "m1").await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.body);
    assert_eq!(sent.data()["sequenceNumber"], json!(1));
    assert_eq!(sent.data()["tempMessageId"], json!("m1"));
    let id = sent.data()["messageId"].as_str().expect("id").to_owned();
    assert_eq!(Uuid::parse_str(&id).expect("uuid").get_version_num(), 7);
    app.send(&a, &b, chat, "m2").await;

    let history = app.get(&format!("/messages/{chat}"), &b.access).await;
    let msgs = history.data().as_array().expect("array");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["sequenceNumber"], json!(1));
    assert_eq!(msgs[0]["sender"], json!(a.id));
    assert_eq!(msgs[0]["receiver"], json!(b.id));
    assert_eq!(msgs[0]["deliveryStatus"], json!("sent"));
    assert_eq!(history.body["pagination"]["hasMore"], json!(false));

    // Only the receiver marks delivered; once.
    app.post(
        &format!("/messages/{id}/delivered"),
        Some(&a.access),
        json!({}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let d = app
        .post(
            &format!("/messages/{id}/delivered"),
            Some(&b.access),
            json!({}),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert_eq!(d.data()["changed"], json!(true));
    let d2 = app
        .post(
            &format!("/messages/{id}/delivered"),
            Some(&b.access),
            json!({}),
        )
        .await;
    assert_eq!(d2.data()["changed"], json!(false));

    let list = app.get("/chats", &b.access).await;
    assert_eq!(list.data()[0]["unreadCount"], json!(2));
    assert_eq!(list.data()[0]["lastMessage"]["tempMessageId"], json!("m2"));
    let read = app
        .post(
            &format!("/messages/{chat}/read"),
            Some(&b.access),
            json!({"upToSequence": 2}),
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.data()["unreadCount"], json!(0));
    assert_eq!(read.data()["marked"], json!(2));
    let list = app.get("/chats", &b.access).await;
    assert_eq!(list.data()[0]["unreadCount"], json!(0));
    let history = app.get(&format!("/messages/{chat}"), &a.access).await;
    assert!(
        history
            .data()
            .as_array()
            .expect("array")
            .iter()
            .all(|m| m["deliveryStatus"] == json!("read"))
    );
    app.stop().await;
}

#[tokio::test]
async fn another_users_chat_and_messages_are_refused() {
    let app = spawn_app().await;
    let a = app.user("amy").await;
    let b = app.user("bill").await;
    let eve = app.user("eve").await;
    let chat = app.chat(&a, &b).await;
    let sent = app.send(&a, &b, chat, "private").await;
    let msg = sent.data()["messageId"].as_str().expect("id").to_owned();
    app.get(&format!("/messages/{chat}"), &eve.access)
        .await
        .assert_error(404, "NOT_FOUND");
    app.get(&format!("/messages/{chat}/sync?since=0"), &eve.access)
        .await
        .assert_error(404, "NOT_FOUND");
    app.send(&eve, &b, chat, "intrude")
        .await
        .assert_error(404, "NOT_FOUND");
    app.post(
        &format!("/messages/{chat}/read"),
        Some(&eve.access),
        json!({"upToSequence": 1}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    app.post(
        &format!("/messages/{msg}/delivered"),
        Some(&eve.access),
        json!({}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let list = app.get("/chats", &eve.access).await;
    assert_eq!(list.data(), &json!([]));
    let sync = app.get("/sync?since=0", &eve.access).await;
    assert_eq!(sync.data()["changes"], json!([]));
    // Nothing of theirs leaked into the history.
    let history = app.get(&format!("/messages/{chat}"), &a.access).await;
    assert_eq!(history.data().as_array().expect("array").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_sender_comes_from_the_token() {
    let app = spawn_app().await;
    let a = app.user("alf").await;
    let b = app.user("bea").await;
    let chat = app.chat(&a, &b).await;
    // A body that names a sender is refused outright.
    let mut body = message_body(chat, b.id, "spoof");
    body["sender"] = json!(b.id);
    let r = app
        .post(&format!("/messages/{chat}"), Some(&a.access), body)
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    assert!(r.message().contains("sender"), "{}", r.body);
    // Naming yourself as receiver (to make it look as if the other sent it) is refused.
    let r = app
        .post(
            &format!("/messages/{chat}"),
            Some(&a.access),
            message_body(chat, a.id, "self"),
        )
        .await;
    r.assert_error(400, "VALIDATION_FAILED");
    // A normal send is stored with the token's user as sender.
    app.send(&a, &b, chat, "real").await;
    let history = app.get(&format!("/messages/{chat}"), &b.access).await;
    let msgs = history.data().as_array().expect("array");
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["sender"], json!(a.id));
    app.stop().await;
}

#[tokio::test]
async fn a_retried_send_stores_nothing_new() {
    let app = spawn_app().await;
    let a = app.user("ari").await;
    let b = app.user("bo").await;
    let chat = app.chat(&a, &b).await;
    let first = app.send(&a, &b, chat, "retry-me").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.send(&a, &b, chat, "retry-me").await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.data()["messageId"], first.data()["messageId"]);
    assert_eq!(second.data()["sequenceNumber"], json!(1));
    assert_eq!(second.data()["duplicate"], json!(true));
    let history = app.get(&format!("/messages/{chat}"), &b.access).await;
    assert_eq!(history.data().as_array().expect("array").len(), 1);
    let list = app.get("/chats", &b.access).await;
    assert_eq!(list.data()[0]["unreadCount"], json!(1));
    app.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_sends_are_gapless() {
    let app = spawn_app().await;
    let a = app.user("con_a").await;
    let b = app.user("con_b").await;
    let chat = app.chat(&a, &b).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (from, to) = if i % 3 == 0 {
            (b.clone(), a.clone())
        } else {
            (a.clone(), b.clone())
        };
        let http = app.http.clone();
        let url = app.url(&format!("/messages/{chat}"));
        tasks.push(tokio::spawn(async move {
            let res = http
                .post(url)
                .bearer_auth(&from.access)
                .json(&message_body(chat, to.id, &format!("c{i}")))
                .send()
                .await
                .expect("send");
            assert_eq!(res.status(), StatusCode::CREATED);
            let body: serde_json::Value = res.json().await.expect("json");
            body["data"]["sequenceNumber"].as_i64().expect("seq")
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task"));
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
    // The history agrees, page by page.
    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let page = app
            .get(
                &format!("/messages/{chat}/sync?since={since}&limit=64"),
                &a.access,
            )
            .await;
        let msgs = page.data().as_array().expect("array").clone();
        all.extend(
            msgs.iter()
                .map(|m| m["sequenceNumber"].as_i64().expect("seq")),
        );
        since = page.body["pagination"]["nextSince"]
            .as_i64()
            .expect("nextSince");
        if page.body["pagination"]["hasMore"] == json!(false) {
            break;
        }
    }
    assert_eq!(all, (1..=200).collect::<Vec<i64>>());
    // Unread counts match: b received 133 (i % 3 != 0), a received 67.
    let unread = |list: &serde_json::Value| list[0]["unreadCount"].as_i64().expect("count");
    assert_eq!(unread(app.get("/chats", &b.access).await.data()), 133);
    assert_eq!(unread(app.get("/chats", &a.access).await.data()), 67);
    app.stop().await;
}

#[tokio::test]
async fn history_pages_backwards() {
    let app = spawn_app().await;
    let a = app.user("pg_a").await;
    let b = app.user("pg_b").await;
    let chat = app.chat(&a, &b).await;
    for i in 0..7 {
        app.send(&a, &b, chat, &format!("p{i}")).await;
    }
    let page1 = app
        .get(&format!("/messages/{chat}?limit=3"), &b.access)
        .await;
    let seqs = |r: &crate::helpers::Reply| {
        r.data()
            .as_array()
            .expect("array")
            .iter()
            .map(|m| m["sequenceNumber"].as_i64().expect("seq"))
            .collect::<Vec<_>>()
    };
    assert_eq!(seqs(&page1), vec![5, 6, 7]);
    assert_eq!(page1.body["pagination"]["hasMore"], json!(true));
    let before = page1.body["pagination"]["nextBefore"]
        .as_i64()
        .expect("nextBefore");
    let page2 = app
        .get(
            &format!("/messages/{chat}?limit=3&before={before}"),
            &b.access,
        )
        .await;
    assert_eq!(seqs(&page2), vec![2, 3, 4]);
    let page3 = app
        .get(&format!("/messages/{chat}?limit=3&before=2"), &b.access)
        .await;
    assert_eq!(seqs(&page3), vec![1]);
    assert_eq!(page3.body["pagination"]["hasMore"], json!(false));
    app.get(&format!("/messages/{chat}?limit=0"), &b.access)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    app.get(&format!("/messages/{chat}?limit=x"), &b.access)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    app.get("/messages/not-a-uuid", &b.access)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    app.stop().await;
}

#[tokio::test]
async fn contacts_empty_search_and_pages() {
    let app = spawn_app().await;
    let me = app.user("solo").await;
    let r = app.get("/contacts", &me.access).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["success"], json!(true));
    assert_eq!(r.data(), &json!([]));
    let mut names = BTreeSet::new();
    for _ in 0..5 {
        names.insert(app.user("friend").await.username.to_lowercase());
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get(
                &format!("/contacts?limit=2&search=FRIEND&cursor={cursor}"),
                &me.access,
            )
            .await;
        seen.extend(
            page.data()
                .as_array()
                .expect("array")
                .iter()
                .map(|u| u["username"].as_str().expect("name").to_owned()),
        );
        match page.body["pagination"]["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), names);
    assert_eq!(seen.len(), 5);
    assert!(!seen.contains(&me.username));
    app.get("/contacts?cursor=%%%", &me.access)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    app.stop().await;
}

#[tokio::test]
async fn sync_walks_every_change_once() {
    let app = spawn_app().await;
    let a = app.user("sy_a").await;
    let b = app.user("sy_b").await;
    let chat = app.chat(&a, &b).await;
    for i in 0..5 {
        app.send(&a, &b, chat, &format!("s{i}")).await;
    }
    app.post(
        &format!("/messages/{chat}/read"),
        Some(&b.access),
        json!({"upToSequence": 5}),
    )
    .await;
    let mut kinds = Vec::new();
    let mut since = 0;
    loop {
        let r = app
            .get(&format!("/sync?since={since}&limit=2"), &b.access)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        for c in r.data()["changes"].as_array().expect("changes") {
            kinds.push(c["type"].as_str().expect("type").to_owned());
        }
        since = r.data()["nextCursor"].as_i64().expect("cursor");
        if r.data()["hasMore"] == json!(false) {
            break;
        }
    }
    assert_eq!(
        kinds,
        vec![
            "chat", "message", "message", "message", "message", "message", "read"
        ]
    );
    // Nothing new: an empty page with the same cursor.
    let r = app.get(&format!("/sync?since={since}"), &b.access).await;
    assert_eq!(r.data()["changes"], json!([]));
    assert_eq!(r.data()["nextCursor"], json!(since));
    app.stop().await;
}
