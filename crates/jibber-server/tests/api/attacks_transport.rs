//! Attacks on the transport and the parsers: slowloris and idle connections, a WebSocket that
//! never reads, deeply nested, invalid UTF-8 and oversized payloads on REST and on the socket,
//! login brute force from one address, and CORS for foreign origins in production.

use std::time::Duration;

use jibber_proto::B64;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::sio::RawPolling;

/// Waits (at most `limit`) until the server closes `stream`; returns how long it took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout_at(start + limit, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
        }
    }
}

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Connected sockets as `/health` reports them.
async fn sockets(app: &TestApp) -> u64 {
    let h = app
        .request(reqwest::Method::GET, "/health", None, None)
        .await;
    h.data()["sockets"]["connected"].as_u64().expect("count")
}

/// Waits until `/health` reports `n` sockets, at most `limit`.
async fn wait_sockets(app: &TestApp, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while sockets(app).await != n {
        assert!(
            Instant::now() < deadline,
            "sockets never became {n} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slowloris_and_idle_connections_are_cut() {
    let app = spawn_app_with(&[("request_timeout", "1s")]).await;
    // A connection that never sends a byte.
    let mut idle = TcpStream::connect(addr(&app)).await.expect("connect");
    // One that drips a request head a byte at a time and never ends it.
    let mut drip = TcpStream::connect(addr(&app)).await.expect("connect");
    let dripper = tokio::spawn(async move {
        for b in b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if drip.write_all(&[*b]).await.is_err() {
                return drip;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        unreachable!()
    });
    // One that sends a request, gets its answer, and then sits idle on keep-alive.
    let mut kept = TcpStream::connect(addr(&app)).await.expect("connect");
    kept.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.expect("answer");
    assert_eq!(&head, b"HTTP/1.1 200");

    assert!(closed_within(&mut idle, Duration::from_secs(10)).await >= Duration::from_millis(900));
    closed_within(&mut kept, Duration::from_secs(10)).await;
    let mut drip = tokio::time::timeout(Duration::from_secs(10), dripper)
        .await
        .expect("the dripping connection was cut")
        .expect("task");
    closed_within(&mut drip, Duration::from_secs(1)).await;
    // The server still answers.
    assert_eq!(
        app.request(reqwest::Method::GET, "/health", None, None)
            .await
            .status,
        200
    );
    app.stop().await;
}

/// A WebSocket handshake and the Socket.IO connect packet, written by hand; then the client
/// never reads again.
async fn websocket_that_never_reads(app: &TestApp, token: &str) -> TcpStream {
    // A small receive window, so the server's writes back up soon.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut s = socket
        .connect(addr(app).parse().expect("addr"))
        .await
        .expect("connect");
    let request = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    s.write_all(request.as_bytes()).await.expect("upgrade");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.expect("answer");
    assert_eq!(&head, b"HTTP/1.1 101");
    let packet = format!("40{}", json!({ "token": token }));
    // One masked text frame (client frames must be masked; a zero mask keeps the text).
    let mut frame = vec![0x81u8];
    match packet.len() {
        n if n < 126 => frame.push(0x80 | u8::try_from(n).expect("small")),
        n => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&u16::try_from(n).expect("fits").to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(packet.as_bytes());
    s.write_all(&frame).await.expect("connect packet");
    s
}

#[tokio::test]
async fn a_websocket_that_never_reads_is_bounded_then_cut() {
    let app = spawn_app_with(&[
        ("socket_events_per_second", "100000"),
        ("socket_send_queue", "4"),
        ("socket_ping_interval", "3s"),
        ("socket_ping_timeout", "2s"),
    ])
    .await;
    let a = app.user("flood_a").await;
    let b = app.user("deaf_b").await;
    let chat = app.chat(&a, &b).await;
    let mut deaf = websocket_that_never_reads(&app, &b.access).await;
    wait_sockets(&app, 1, Duration::from_secs(10)).await;
    // 100 messages of 48 KiB each (about 6.5 MB as JSON) to a socket that reads nothing: the sender is
    // never held up and the server drops what its bounded queue cannot hold.
    for i in 0..100 {
        let mut body = crate::helpers::message_body(chat, b.id, &format!("big-{i}"));
        body["cipher"] = json!(B64::encode(&vec![7u8; 48 * 1024]));
        let r = app
            .post(&format!("/messages/{chat}"), Some(&a.access), body)
            .await;
        assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    }
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("jibber_socket_emit_dropped_total") && !l.ends_with(" 0")),
        "nothing was dropped:\n{metrics}"
    );
    // It answers no ping, so it is cut: ping interval + timeout, with room.
    wait_sockets(&app, 0, Duration::from_secs(15)).await;
    closed_within(&mut deaf, Duration::from_secs(10)).await;
    app.stop().await;
}

#[tokio::test]
async fn nested_invalid_utf8_and_oversized_payloads_get_codes() {
    let app = spawn_app_with(&[
        ("socket_events_per_second", "100000"),
        ("socket_max_payload", "65536"),
    ])
    .await;
    let u = app.user("parser").await;
    // 100 000 levels of nesting inside the body limit.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = app.post_raw("/chats", &u.access, deep.clone()).await;
    r.assert_error(400, "VALIDATION_FAILED");
    let deep_object = format!("{}1{}", "{\"userId\":".repeat(20_000), "}".repeat(20_000));
    app.post_raw("/chats", &u.access, deep_object)
        .await
        .assert_error(400, "VALIDATION_FAILED");
    // Invalid UTF-8 inside a JSON string.
    let mut bytes = br#"{"userId":""#.to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe, 0xc0, 0x80]);
    bytes.extend_from_slice(br#""}"#);
    let res = app
        .http
        .post(app.url("/chats"))
        .bearer_auth(&u.access)
        .header("content-type", "application/json")
        .body(bytes.clone())
        .send()
        .await
        .expect("send");
    TestApp::reply(res)
        .await
        .assert_error(400, "VALIDATION_FAILED");

    // On the socket: a deeply nested event payload, invalid UTF-8, then an oversized packet.
    let sock = RawPolling::open(&app, &u.access).await;
    sock.connect_reply().await.expect("connected");
    let packet = format!("42[\"sendMessage\",{}]", &deep[..]);
    let status = sock.send(packet.into_bytes()).await;
    assert!(status < 500, "{status}");
    let mut bad = b"42[\"typing\",{\"chatId\":\"".to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(b"\"}]");
    let status = sock.send(bad).await;
    assert!(status < 500, "{status}");
    // A well-formed event on a fresh socket still gets its answer: the server is alive.
    let fresh = RawPolling::open(&app, &u.access).await;
    fresh.connect_reply().await.expect("connected");
    fresh.send(br#"421["heartbeat",{}]"#.to_vec()).await;
    let ack = fresh.poll_until_prefix("431").await;
    assert!(ack.contains("\"ok\":true"), "{ack}");
    // A packet over socket_max_payload is refused and the session closed.
    let huge = format!("42[\"heartbeat\",\"{}\"]", "x".repeat(100_000));
    let status = fresh.send(huge.into_bytes()).await;
    assert!((400..500).contains(&status), "{status}");
    wait_sockets(&app, 0, Duration::from_secs(10)).await;
    app.stop().await;
}

#[tokio::test]
async fn login_brute_force_from_one_address_hits_the_limit() {
    let app = spawn_app_with(&[
        ("auth_rate_per_ip", "5"),
        ("auth_rate_per_username", "100000"),
    ])
    .await;
    // Registering the real user spends 2 of the address's 5 attempts (start and finish).
    let r = app.register("realuser", "right password").await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    // Spraying guesses over many usernames from one address: 3 more, then refused.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let (r, _) = app.login_start(&format!("guess{i}"), "x").await;
        if r.status.as_u16() == 429 {
            r.assert_error(429, "RATE_LIMITED");
            assert!(r.headers.contains_key("retry-after"));
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    // Even the right password is refused from this address until the window passes, and
    // registration is limited the same way.
    match app.login("realuser", "right password").await {
        Err(Some(r)) => r.assert_error(429, "RATE_LIMITED"),
        other => panic!("not limited: {:?}", other.map(|r| r.body)),
    }
    app.register("newname", "pw")
        .await
        .assert_error(429, "RATE_LIMITED");
    app.stop().await;
}

#[tokio::test]
async fn production_cors_refuses_foreign_origins_on_every_path() {
    let setup = jibber_server::auth::opaque::new_server_setup();
    let secret = jibber_server::auth::tokens::new_jwt_secret();
    let app = spawn_app_with(&[
        ("mode", "production"),
        ("jwt_secret", &secret),
        ("opaque_server_setup", &setup),
        ("cors_origins", "https://chat.example.com"),
    ])
    .await;
    let u = app.user("cors").await;
    let call = |method: reqwest::Method, path: String, origin: &'static str| {
        app.http
            .request(method, format!("{}{path}", app.base))
            .header("origin", origin)
            .bearer_auth(&u.access)
            .send()
    };
    for path in [
        "/api/v1/users/me".to_owned(),
        "/api/v1/chats".to_owned(),
        "/socket.io/?EIO=4&transport=polling".to_owned(),
    ] {
        let foreign = call(reqwest::Method::GET, path.clone(), "https://evil.example")
            .await
            .expect("send");
        assert!(
            foreign
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}: {:?}",
            foreign.headers()
        );
        let null = call(reqwest::Method::GET, path.clone(), "null")
            .await
            .expect("send");
        assert!(
            null.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
        let ok = call(
            reqwest::Method::GET,
            path.clone(),
            "https://chat.example.com",
        )
        .await
        .expect("send");
        assert_eq!(
            ok.headers()["access-control-allow-origin"],
            "https://chat.example.com",
            "{path}"
        );
        // A preflight from a foreign origin grants nothing.
        let pre = app
            .http
            .request(reqwest::Method::OPTIONS, format!("{}{path}", app.base))
            .header("origin", "https://chat.example.com.evil.example")
            .header("access-control-request-method", "POST")
            .send()
            .await
            .expect("send");
        assert!(
            pre.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn development_without_cors_origins_grants_no_origin() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/health"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("send");
    assert!(res.headers().get("access-control-allow-origin").is_none());
    app.stop().await;
}
