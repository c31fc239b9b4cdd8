//! The test client itself (`sio::Device`, on `rust_socketio`): what the other tests rely on it
//! for, against a scripted Engine.IO server, so that a failure here points at the client rather
//! than at Jibber.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use rust_socketio::TransportType;
use serde_json::{Value, json};

use crate::sio::Device;

/// What the scripted server was asked, in order: "handshake", "post <body>", "poll <n>".
type Requests = Arc<Mutex<Vec<String>>>;

/// The answer to the second poll: a Socket.IO greeting and two events, one Engine.IO payload.
fn payload() -> String {
    [
        r#"42["onlineUsers",[]]"#,
        r#"42["receivedMessage",{"sequenceNumber":1,"cipher":"first message's cipher"}]"#,
        r#"42["receivedMessage",{"sequenceNumber":2,"cipher":"second message's cipher"}]"#,
    ]
    .join("\u{1e}")
}

/// A long-polling Engine.IO v4 session in four steps: the handshake, a connect acknowledgement,
/// then [`payload`] sent as HTTP chunks of 10 bytes (every packet is cut somewhere, as a long
/// answer read by a busy client is), then polls that stay open.
async fn scripted(
    State(requests): State<Requests>,
    method: Method,
    RawQuery(query): RawQuery,
    body: String,
) -> Body {
    let query = query.unwrap_or_default();
    if method == Method::POST {
        requests.lock().expect("lock").push(format!("post {body}"));
        return Body::from("ok");
    }
    if !query.contains("sid=") {
        requests.lock().expect("lock").push("handshake".to_owned());
        return Body::from(
            r#"0{"sid":"scripted","upgrades":[],"pingInterval":300000,"pingTimeout":300000,"maxPayload":1000000}"#,
        );
    }
    let poll = {
        let mut requests = requests.lock().expect("lock");
        let n = requests.iter().filter(|r| r.starts_with("poll")).count() + 1;
        requests.push(format!("poll {n}"));
        n
    };
    match poll {
        1 => Body::from(r#"40{"sid":"scripted-socket"}"#),
        2 => {
            let chunks: Vec<Result<String, Infallible>> = payload()
                .into_bytes()
                .chunks(10)
                .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
                .collect();
            Body::from_stream(futures_util::stream::iter(chunks))
        }
        _ => std::future::pending().await,
    }
}

#[tokio::test]
async fn a_polling_answer_read_in_several_chunks_reaches_the_device_whole() {
    assert!(
        payload().is_ascii(),
        "chunks of 10 bytes must not cut a character"
    );
    let requests = Requests::default();
    let app = axum::Router::new()
        .fallback(scripted)
        .with_state(requests.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut device =
        Device::connect_to(&base, json!({ "token": "t" }), TransportType::Polling).await;
    assert_eq!(device.greeting, json!([]));
    let got: Vec<Value> = device.collect("receivedMessage", 2).await;
    assert_eq!(got[0]["sequenceNumber"], json!(1));
    assert_eq!(got[0]["cipher"], json!("first message's cipher"));
    assert_eq!(got[1]["sequenceNumber"], json!(2));
    assert_eq!(got[1]["cipher"], json!("second message's cipher"));
    assert!(
        !device.seen.iter().any(|(name, _)| name == "error"),
        "the client reported an error: {:?}",
        device.seen
    );
    {
        let requests = requests.lock().expect("lock");
        assert_eq!(requests[0], "handshake");
        assert!(
            requests
                .iter()
                .any(|r| r.starts_with(r#"post 40{"token":"t"}"#)),
            "the client sent its connect packet with the auth object: {requests:?}"
        );
    }
    server.abort();
}
