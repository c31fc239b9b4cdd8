//! Helpers of the SDK's integration tests: accounts, client options, waiting on events.

#![allow(dead_code)] // each test file uses a part

pub mod log;
pub mod proxy;

use std::time::Duration;

use jibber_client::realtime::{Connection, Event, MessageState, Options};
use jibber_client::sio::Transport;
use jibber_client::{Session, login, register};
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(20);

pub async fn user(base: &str, name: &str) -> Session {
    let ksf = jibber_crypto::test_ksf();
    register(base, name, &format!("pw-{name}"), &ksf)
        .await
        .expect("register");
    session(base, name).await
}

pub async fn session(base: &str, name: &str) -> Session {
    login(
        base,
        name,
        &format!("pw-{name}"),
        &jibber_crypto::test_ksf(),
    )
    .await
    .expect("login")
}

pub fn options(transport: Transport) -> Options {
    Options {
        transport,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..Options::default()
    }
}

/// Receives events until `pick` returns something (or fails after [`WAIT`]). Events before it
/// are kept in `seen` for later checks.
pub async fn until<T>(
    rx: &mut Receiver<Event>,
    seen: &mut Vec<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("event stream ended waiting for {what}"));
        let found = pick(&event);
        seen.push(event);
        if let Some(t) = found {
            return t;
        }
    }
}

pub fn is_online(e: &Event) -> Option<()> {
    matches!(e, Event::Connection(Connection::Online)).then_some(())
}

/// Any message of this device acknowledged by the server.
pub fn is_sent(e: &Event) -> Option<()> {
    matches!(
        e,
        Event::State {
            state: MessageState::Sent { .. },
            ..
        }
    )
    .then_some(())
}

pub fn text_of(e: &Event) -> Option<(Uuid, i64, String)> {
    match e {
        Event::Message(r) => Some((
            r.message.id,
            r.message.sequence_number,
            r.text.clone().expect("decrypts"),
        )),
        _ => None,
    }
}

/// Waits until the server calls `token` expired. Expiry is a moment on the server's clock (with
/// its leeway), not an event: the server's own check is asked until it says so.
pub async fn until_expired(server: &jibber_server::testing::TestServer, token: &str) {
    use jibber_server::auth::tokens::TokenError;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match server.state.tokens.verify(token) {
            Err(TokenError::Expired) => return,
            Ok(_) => {}
            Err(e) => panic!("the token is refused for another reason: {e}"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token did not expire"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
