//! The SDK against the real server: sign-up, login with the key bundle, encrypted messages,
//! token refresh (ahead of expiry, and on a `TOKEN_EXPIRED` answer).

mod common;

use jibber_client::{ClientError, Session, login, register};
use jibber_proto::ErrorCode;
use jibber_server::testing::TestServer;

async fn user(s: &TestServer, name: &str) -> Session {
    let ksf = jibber_crypto::test_ksf();
    register(&s.base, name, &format!("pw-{name}"), &ksf)
        .await
        .expect("register");
    login(&s.base, name, &format!("pw-{name}"), &ksf)
        .await
        .expect("login")
}

#[tokio::test]
async fn two_users_exchange_encrypted_messages() {
    let s = TestServer::start(&[]).await;
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let bob_public = alice.user_profile(bob.user().id).await.expect("profile");
    let chat = alice.open_chat(bob.user().id).await.expect("chat");
    let ack = alice
        .send_text(chat.id, &bob_public, "hello bob", "t-1")
        .await
        .expect("send");
    assert_eq!(ack.sequence_number, 1);
    // A retry with the same key is the same message.
    let again = alice
        .send_text(chat.id, &bob_public, "hello bob", "t-1")
        .await
        .expect("resend");
    assert!(again.duplicate);
    assert_eq!(again.message_id, ack.message_id);

    let alice_public = bob.user_profile(alice.user().id).await.expect("profile");
    let msgs = bob.messages_since(chat.id, 0).await.expect("history");
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        bob.decrypt(&msgs[0], &alice_public).expect("decrypt"),
        "hello bob"
    );
    // The server stored no plaintext.
    assert!(!String::from_utf8_lossy(msgs[0].cipher.as_bytes()).contains("hello bob"));
    // Alice reads her own sent message back (as another device of hers would).
    assert_eq!(
        alice.decrypt(&msgs[0], &bob_public).expect("own"),
        "hello bob"
    );
    // A tampered message is refused with the crypto error code.
    let mut forged = msgs[0].clone();
    forged.cipher.0[5] ^= 1;
    let err = bob.decrypt(&forged, &alice_public).expect_err("tampered");
    assert!(
        matches!(err, ClientError::Crypto { source: ref e } if e.code() == "BAD_SIGNATURE"),
        "{err}"
    );
    // A key the directory does not list for the sender is a KEY_MISMATCH.
    let eve = user(&s, "eve").await;
    let eve_public = bob.user_profile(eve.user().id).await.expect("profile");
    let err = bob
        .decrypt(&msgs[0], &eve_public)
        .expect_err("wrong directory");
    assert!(
        matches!(err, ClientError::Crypto { source: ref e } if e.code() == "KEY_MISMATCH"),
        "{err}"
    );

    let read = bob.mark_read(chat.id, 1).await.expect("read");
    assert_eq!(read["unreadCount"], serde_json::json!(0));
    s.stop().await;
}

#[tokio::test]
async fn a_new_device_recovers_the_keys_with_the_password() {
    let s = TestServer::start(&[]).await;
    let ksf = jibber_crypto::test_ksf();
    let first = user(&s, "carol").await;
    let second = login(&s.base, "carol", "pw-carol", &ksf)
        .await
        .expect("second device");
    assert_eq!(
        first.key_ring().current().public_keys(),
        second.key_ring().current().public_keys(),
        "the same keys come out of the bundle"
    );
    let wrong = login(&s.base, "carol", "not the password", &ksf)
        .await
        .expect_err("wrong password");
    assert!(matches!(wrong, ClientError::InvalidCredentials), "{wrong}");
    let unknown = login(&s.base, "nobody_at_all", "x", &ksf)
        .await
        .expect_err("unknown user");
    assert!(
        matches!(unknown, ClientError::InvalidCredentials),
        "{unknown}"
    );
    s.stop().await;
}

#[tokio::test]
async fn tokens_refresh_before_they_expire_and_logout_revokes() {
    // Access tokens live 1 s: a call after three quarters of that refreshes first.
    let s = TestServer::start(&[("access_token_ttl", "1s")]).await;
    let dave = user(&s, "dave").await;
    let mut before = dave.refresh_token();
    for _ in 0..3 {
        tokio::time::sleep(dave.refresh_due_in()).await;
        assert_eq!(dave.me().await.expect("me").username, "dave");
        assert_ne!(dave.refresh_token(), before, "the refresh token rotated");
        before = dave.refresh_token();
    }
    dave.logout().await.expect("logout");
    tokio::time::sleep(dave.refresh_due_in()).await;
    let err = dave.me().await.expect_err("logged out");
    assert_eq!(err.code(), Some(ErrorCode::InvalidToken), "{err}");
    s.stop().await;
}

/// With refresh ahead off, the access token is used until the server calls it expired: the call
/// answered `TOKEN_EXPIRED` makes the SDK refresh once and repeat it, and the caller sees only
/// the answer.
#[tokio::test]
async fn a_call_answered_token_expired_refreshes_and_is_repeated() {
    let s = TestServer::start(&[("access_token_ttl", "1s")]).await;
    let erin = user(&s, "erin").await;
    erin.set_refresh_ahead(false);
    let stale = erin.access_token().await.expect("the current token");
    common::until_expired(&s, &stale).await;

    // The server refuses that token as it is...
    let refused = reqwest::Client::new()
        .get(format!("{}/api/v1/users/me", s.base))
        .bearer_auth(&stale)
        .send()
        .await
        .expect("GET /users/me");
    assert_eq!(refused.status(), 401);
    let body: serde_json::Value = refused.json().await.expect("error envelope");
    assert_eq!(body["error"]["code"], "TOKEN_EXPIRED", "{body}");
    // ...and the SDK, holding it, still answers the call: refreshed, then repeated.
    let before = erin.refresh_token();
    assert_eq!(erin.me().await.expect("me").username, "erin");
    assert_ne!(erin.refresh_token(), before, "the refresh token was spent");
    let fresh = erin.access_token().await.expect("the new token");
    assert_ne!(fresh, stale);
    s.state
        .tokens
        .verify(&fresh)
        .expect("the new token is valid");
    s.stop().await;
}
