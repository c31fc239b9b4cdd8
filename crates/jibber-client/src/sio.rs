//! A Socket.IO v4 client (Engine.IO v4, WebSocket or HTTP long-polling), built on the packet
//! codecs the server uses (`engineioxide-core`, `socketioxide-core` and its common parser).
//!
//! Why not `rust_socketio`: it cannot acknowledge an event the server sends (Jibber marks a
//! message delivered when the receiver acknowledges `receivedMessage`), it draws acknowledgement
//! ids at random from 0..999 (two requests in flight can collide), and it hands events to
//! callbacks. Here every acknowledgement id is unique per connection, any number of requests
//! may be in flight, a server's request can be acknowledged, and events arrive in order on a
//! channel (with backpressure: a reader that falls behind slows the connection, not memory).
//!
//! This layer does one connection. Reconnection, token refresh and catch-up live in
//! [`crate::realtime`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engineioxide_core::OpenPacket;
use futures_util::{SinkExt, StreamExt};
use jibber_proto::ErrorCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::parser::{Parse, ParseConfig, ParserState};
use socketioxide_core::{Str, Value};
use socketioxide_parser_common::CommonParser;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as Frame;

/// Packets queued for sending before `emit` waits.
const OUTGOING_QUEUE: usize = 256;
/// Events queued for the application before reading from the server pauses.
const INCOMING_QUEUE: usize = 256;
/// Engine.IO packets of one long-polling POST at most.
const POLL_BATCH: usize = 64;

/// How the connection travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    WebSocket,
    Polling,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "websocket" => Ok(Transport::WebSocket),
            "polling" => Ok(Transport::Polling),
            other => Err(format!(
                "unknown transport {other:?} (websocket or polling)"
            )),
        }
    }
}

/// What can go wrong on a socket.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SioError {
    /// The server refused the handshake (`connect_error`).
    #[error("refused: {message}")]
    Refused {
        message: String,
        code: Option<ErrorCode>,
    },
    #[error("server unreachable: {0}")]
    Unreachable(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The connection is closed (before the answer came).
    #[error("connection closed")]
    Closed,
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
}

/// Something the server sent.
#[derive(Debug)]
pub enum Inbound {
    /// An event; `ack` is set when the server asked for an acknowledgement.
    Event {
        name: String,
        data: serde_json::Value,
        ack: Option<Acker>,
    },
    /// The connection ended; nothing follows.
    Closed { reason: String },
}

/// Answers one event of the server that asked for an acknowledgement.
#[derive(Debug)]
pub struct Acker {
    id: i64,
    out: mpsc::Sender<String>,
}

impl Acker {
    /// Sends the acknowledgement (dropped silently when the connection is gone: the server
    /// then treats the event as unanswered).
    pub async fn send<T: Serialize + ?Sized>(self, data: &T) {
        if let Ok(value) = CommonParser.encode_value(data, None)
            && let Some(text) = encode(Packet::ack("/", value, self.id))
        {
            let _ = self.out.send(text).await;
        }
    }
}

type Pending = Mutex<HashMap<i64, oneshot::Sender<serde_json::Value>>>;

/// One connected socket. Cheap to clone; the connection closes when [`Socket::close`] is
/// called or every clone is dropped.
#[derive(Debug, Clone)]
pub struct Socket {
    out: mpsc::Sender<String>,
    pending: Arc<Pending>,
    next_id: Arc<AtomicI64>,
    /// Shared by the clones: the last one dropped closes the connection (the background tasks
    /// hold the transport, so without it a dropped socket stayed open until the server's ping
    /// timeout).
    _closer: Arc<CloseOnDrop>,
}

#[derive(Debug)]
struct CloseOnDrop(mpsc::Sender<String>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Err(mpsc::error::TrySendError::Full(close)) = self.0.try_send("1".to_owned())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let out = self.0.clone();
            runtime.spawn(async move {
                let _ = out.send(close).await;
            });
        }
    }
}

fn encode(packet: Packet) -> Option<String> {
    CommonParser
        .encode(packet)
        .as_str()
        .map(|s| s.as_str().to_owned())
}

fn lock(
    p: &Pending,
) -> std::sync::MutexGuard<'_, HashMap<i64, oneshot::Sender<serde_json::Value>>> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Socket {
    /// Connects and completes the Socket.IO handshake with `auth` (e.g. `{"token": ...}`).
    pub async fn connect<A: Serialize>(
        base: &str,
        transport: Transport,
        auth: &A,
        timeout: Duration,
    ) -> Result<(Socket, mpsc::Receiver<Inbound>), SioError> {
        Self::connect_from(base, transport, auth, timeout, None).await
    }

    /// [`Socket::connect`] from a chosen local address (a load generator spreads many
    /// connections over 127.0.0.x to get past one address's port range).
    pub async fn connect_from<A: Serialize>(
        base: &str,
        transport: Transport,
        auth: &A,
        timeout: Duration,
        local_ip: Option<std::net::IpAddr>,
    ) -> Result<(Socket, mpsc::Receiver<Inbound>), SioError> {
        let auth = serde_json::to_string(auth).map_err(|e| SioError::Protocol(e.to_string()))?;
        tokio::time::timeout(
            timeout,
            Self::connect_inner(base, transport, auth, local_ip),
        )
        .await
        .map_err(|_| SioError::Unreachable(format!("no handshake within {timeout:?}")))?
    }

    async fn connect_inner(
        base: &str,
        transport: Transport,
        auth: String,
        local_ip: Option<std::net::IpAddr>,
    ) -> Result<(Socket, mpsc::Receiver<Inbound>), SioError> {
        let (out_tx, out_rx) = mpsc::channel::<String>(OUTGOING_QUEUE);
        let (engine_tx, mut engine_rx) = mpsc::channel::<EngineIn>(INCOMING_QUEUE);
        match transport {
            Transport::WebSocket => websocket::start(base, out_rx, engine_tx, local_ip).await?,
            Transport::Polling => polling::start(base, out_rx, engine_tx, local_ip).await?,
        }
        // Socket.IO CONNECT to the main namespace with the auth object.
        out_tx
            .send(format!("0{auth}"))
            .await
            .map_err(|_| SioError::Closed)?;
        match engine_rx.recv().await {
            Some(EngineIn::Message(text)) if text.starts_with('0') => {}
            Some(EngineIn::Message(text)) if text.starts_with('4') => {
                return Err(refusal(&text[1..]));
            }
            Some(EngineIn::Message(text)) => {
                return Err(SioError::Protocol(format!(
                    "unexpected handshake answer {text:?}"
                )));
            }
            Some(EngineIn::Closed(reason)) => return Err(SioError::Unreachable(reason)),
            None => return Err(SioError::Closed),
        }
        let socket = Socket {
            out: out_tx.clone(),
            pending: Arc::default(),
            next_id: Arc::new(AtomicI64::new(1)),
            _closer: Arc::new(CloseOnDrop(out_tx.clone())),
        };
        let (app_tx, app_rx) = mpsc::channel(INCOMING_QUEUE);
        tokio::spawn(dispatch(engine_rx, app_tx, out_tx, socket.pending.clone()));
        Ok((socket, app_rx))
    }

    /// Sends an event without asking for an acknowledgement.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), SioError> {
        let value = CommonParser
            .encode_value(data, Some(event))
            .map_err(|e| SioError::Protocol(e.to_string()))?;
        let text = encode(Packet::event("/", value)).ok_or(SioError::Closed)?;
        self.out.send(text).await.map_err(|_| SioError::Closed)
    }

    /// Sends an event and waits for its acknowledgement.
    pub async fn request<T: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        event: &str,
        data: &T,
        timeout: Duration,
    ) -> Result<R, SioError> {
        let value = CommonParser
            .encode_value(data, Some(event))
            .map_err(|e| SioError::Protocol(e.to_string()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut packet = Packet::event("/", value);
        packet.inner.set_ack_id(id);
        let text = encode(packet).ok_or(SioError::Closed)?;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let forget = || {
            lock(&self.pending).remove(&id);
        };
        if self.out.send(text).await.is_err() {
            forget();
            return Err(SioError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => {
                serde_json::from_value(answer).map_err(|e| SioError::Protocol(e.to_string()))
            }
            Ok(Err(_)) => Err(SioError::Closed),
            Err(_) => {
                forget();
                Err(SioError::Timeout(timeout))
            }
        }
    }

    /// Closes the connection (Socket.IO DISCONNECT, then the transport).
    pub async fn close(&self) {
        let _ = self.out.send("1".to_owned()).await;
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.out.is_closed()
    }
}

/// `connect_error` data: `{"message", "data": {"code"}}`.
fn refusal(json: &str) -> SioError {
    #[derive(serde::Deserialize)]
    struct Data {
        code: Option<ErrorCode>,
    }
    #[derive(serde::Deserialize)]
    struct Refusal {
        message: String,
        data: Option<Data>,
    }
    match serde_json::from_str::<Refusal>(json) {
        Ok(r) => SioError::Refused {
            message: r.message,
            code: r.data.and_then(|d| d.code),
        },
        Err(_) => SioError::Protocol(format!("unreadable connect_error {json:?}")),
    }
}

/// What a transport hands up: Engine.IO message payloads (Socket.IO packets) or the end.
#[derive(Debug)]
enum EngineIn {
    Message(String),
    Closed(String),
}

/// Turns Socket.IO packets into [`Inbound`] events and resolves acknowledgements.
async fn dispatch(
    mut engine: mpsc::Receiver<EngineIn>,
    app: mpsc::Sender<Inbound>,
    out: mpsc::Sender<String>,
    pending: Arc<Pending>,
) {
    let config = ParseConfig::default();
    let state = ParserState::default();
    let reason = loop {
        let text = match engine.recv().await {
            Some(EngineIn::Message(text)) => text,
            Some(EngineIn::Closed(reason)) => break reason,
            None => break "transport ended".to_owned(),
        };
        let packet = match CommonParser.decode_str(&config, &state, Str::from(text)) {
            Ok(p) => p,
            Err(e) => break format!("undecodable packet: {e}"),
        };
        match packet.inner {
            PacketData::Event(mut value, ack) => {
                let name = match CommonParser.read_event(&value) {
                    Ok(n) => n.to_owned(),
                    Err(e) => break format!("event without a name: {e}"),
                };
                let data = first_arg(&mut value, true);
                let ack = ack.map(|id| Acker {
                    id,
                    out: out.clone(),
                });
                if app.send(Inbound::Event { name, data, ack }).await.is_err() {
                    break "the application stopped listening".to_owned();
                }
            }
            PacketData::EventAck(mut value, id) => {
                let answer = first_arg(&mut value, false);
                if let Some(tx) = lock(&pending).remove(&id) {
                    let _ = tx.send(answer);
                }
            }
            PacketData::Disconnect => break "disconnected by the server".to_owned(),
            _ => {}
        }
    };
    // Requests still waiting fail with `Closed` when their senders drop.
    lock(&pending).clear();
    let _ = app.send(Inbound::Closed { reason }).await;
}

/// The first argument of an event or acknowledgement (null when there is none).
fn first_arg(value: &mut Value, with_event: bool) -> serde_json::Value {
    CommonParser
        .decode_value(value, with_event)
        .unwrap_or(serde_json::Value::Null)
}

/// The Engine.IO endpoint for `base` (`http(s)://host:port`).
fn endpoint(base: &str, transport: &str, sid: Option<&str>) -> String {
    let mut url = format!(
        "{}/socket.io/?EIO=4&transport={transport}",
        base.trim_end_matches('/')
    );
    if let Some(sid) = sid {
        url.push_str("&sid=");
        url.push_str(sid);
    }
    url
}

fn parse_open(text: &str) -> Result<OpenPacket, SioError> {
    let json = text
        .strip_prefix('0')
        .ok_or_else(|| SioError::Protocol(format!("expected an open packet, got {text:?}")))?;
    serde_json::from_str(json).map_err(|e| SioError::Protocol(format!("bad open packet: {e}")))
}

/// The longest silence before the connection counts as dead: the server pings every interval.
fn silence_limit(open: &OpenPacket) -> Duration {
    open.ping_interval + open.ping_timeout
}

mod websocket {
    use super::*;

    pub(super) async fn start(
        base: &str,
        mut out: mpsc::Receiver<String>,
        up: mpsc::Sender<EngineIn>,
        local_ip: Option<std::net::IpAddr>,
    ) -> Result<(), SioError> {
        let url = endpoint(base, "websocket", None)
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1);
        let unreachable = |e: &dyn std::fmt::Display| SioError::Unreachable(e.to_string());
        let parsed = reqwest::Url::parse(&url).map_err(|e| unreachable(&e))?;
        let host = parsed.host_str().unwrap_or("localhost").to_owned();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let remote = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| unreachable(&e))?
            .next()
            .ok_or_else(|| unreachable(&format!("{host} has no address")))?;
        let socket = if remote.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| unreachable(&e))?;
        if let Some(ip) = local_ip {
            socket
                .bind(std::net::SocketAddr::new(ip, 0))
                .map_err(|e| unreachable(&e))?;
        }
        let stream = socket.connect(remote).await.map_err(|e| unreachable(&e))?;
        stream.set_nodelay(true).map_err(|e| unreachable(&e))?;
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sink, mut stream) = ws.split();
        let open = match stream.next().await {
            Some(Ok(Frame::Text(t))) => parse_open(t.as_str())?,
            Some(Ok(other)) => {
                return Err(SioError::Protocol(format!("expected open, got {other:?}")));
            }
            Some(Err(e)) => return Err(SioError::Unreachable(e.to_string())),
            None => return Err(SioError::Closed),
        };
        let limit = silence_limit(&open);
        tokio::spawn(async move {
            let reason = loop {
                tokio::select! {
                    next = out.recv() => match next {
                        // "1" is our own close: Socket.IO DISCONNECT, then the transport.
                        Some(p) if p == "1" => {
                            let _ = sink.send(Frame::text("41")).await;
                            let _ = sink.close().await;
                            break "closed by the client".to_owned();
                        }
                        Some(p) => {
                            if let Err(e) = sink.send(Frame::text(format!("4{p}"))).await {
                                break format!("send failed: {e}");
                            }
                        }
                        None => {
                            let _ = sink.close().await;
                            break "closed by the client".to_owned();
                        }
                    },
                    frame = tokio::time::timeout(limit, stream.next()) => match frame {
                        Err(_) => break format!("no ping from the server within {limit:?}"),
                        Ok(None) => break "connection closed by the server".to_owned(),
                        Ok(Some(Err(e))) => break format!("connection broke: {e}"),
                        Ok(Some(Ok(Frame::Text(t)))) => {
                            let t = t.as_str();
                            match t.as_bytes().first() {
                                Some(b'2') => {
                                    if let Err(e) = sink.send(Frame::text("3")).await {
                                        break format!("pong failed: {e}");
                                    }
                                }
                                Some(b'4')
                                    if up.send(EngineIn::Message(t[1..].to_owned())).await.is_err() => {
                                        let _ = sink.close().await;
                                        break "closed by the client".to_owned();
                                    }
                                Some(b'1') => break "closed by the server".to_owned(),
                                _ => {}
                            }
                        }
                        Ok(Some(Ok(Frame::Close(_)))) => break "closed by the server".to_owned(),
                        Ok(Some(Ok(_))) => {}
                    },
                }
            };
            let _ = up.send(EngineIn::Closed(reason)).await;
        });
        Ok(())
    }
}

mod polling {
    use super::*;

    /// Engine.IO v4 separates the packets of one HTTP body with the record separator.
    const SEPARATOR: char = '\u{1e}';

    pub(super) async fn start(
        base: &str,
        mut out: mpsc::Receiver<String>,
        up: mpsc::Sender<EngineIn>,
        local_ip: Option<std::net::IpAddr>,
    ) -> Result<(), SioError> {
        let http = reqwest::Client::builder()
            .local_address(local_ip)
            .build()
            .map_err(|e| SioError::Unreachable(e.to_string()))?;
        let body = get(&http, &endpoint(base, "polling", None)).await?;
        let mut packets = body.split(SEPARATOR);
        let open = parse_open(packets.next().unwrap_or_default())?;
        let sid = open.sid.to_string();
        let url = endpoint(base, "polling", Some(&sid));
        let limit = silence_limit(&open);
        // Pongs go out through the writer, after any packets already queued.
        let (pong_tx, mut pong_rx) = mpsc::channel::<()>(4);

        let writer_http = http.clone();
        let writer_url = url.clone();
        let writer_up = up.clone();
        let writer = tokio::spawn(async move {
            let reason = loop {
                let mut batch: Vec<String> = Vec::new();
                let mut closing = false;
                tokio::select! {
                    next = out.recv() => match next {
                        Some(p) if p == "1" => closing = true,
                        Some(p) => batch.push(format!("4{p}")),
                        None => closing = true,
                    },
                    Some(()) = pong_rx.recv() => batch.push("3".to_owned()),
                }
                while !closing && batch.len() < POLL_BATCH {
                    match out.try_recv() {
                        Ok(p) if p == "1" => closing = true,
                        Ok(p) => batch.push(format!("4{p}")),
                        Err(_) => break,
                    }
                }
                if closing {
                    batch.push("41".to_owned());
                    batch.push("1".to_owned());
                }
                let joined = batch.join(&SEPARATOR.to_string());
                let sent = writer_http
                    .post(&writer_url)
                    .body(joined)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status);
                if let Err(e) = sent {
                    break format!("send failed: {e}");
                }
                if closing {
                    break "closed by the client".to_owned();
                }
            };
            let _ = writer_up.send(EngineIn::Closed(reason)).await;
        });

        // Packets that came with the open packet, then the long-poll loop.
        let first: Vec<String> = packets.map(str::to_owned).collect();
        tokio::spawn(async move {
            let mut pending = first;
            let reason = 'poll: loop {
                for p in pending.drain(..) {
                    match p.as_bytes().first() {
                        Some(b'2') => {
                            let _ = pong_tx.send(()).await;
                        }
                        Some(b'4')
                            if up.send(EngineIn::Message(p[1..].to_owned())).await.is_err() =>
                        {
                            break 'poll "closed by the client".to_owned();
                        }
                        Some(b'1') => break 'poll "closed by the server".to_owned(),
                        _ => {}
                    }
                }
                if writer.is_finished() {
                    break "closed by the client".to_owned();
                }
                match tokio::time::timeout(limit, get(&http, &url)).await {
                    Err(_) => break format!("no ping from the server within {limit:?}"),
                    Ok(Err(e)) => break e.to_string(),
                    Ok(Ok(body)) => pending = body.split(SEPARATOR).map(str::to_owned).collect(),
                }
            };
            writer.abort();
            let _ = up.send(EngineIn::Closed(reason)).await;
        });
        Ok(())
    }

    async fn get(http: &reqwest::Client, url: &str) -> Result<String, SioError> {
        let res = http
            .get(url)
            .send()
            .await
            .map_err(|e| SioError::Unreachable(e.to_string()))?;
        if !res.status().is_success() {
            return Err(SioError::Unreachable(format!("HTTP {}", res.status())));
        }
        res.text()
            .await
            .map_err(|e| SioError::Unreachable(e.to_string()))
    }
}

/// The Socket.IO parser is patched for speed (vendor/README.md): it writes strings that need no
/// escaping verbatim, and routes an event by its name alone. Both are checked here against
/// serde_json and the upstream behaviour, on the parser the server and this client share.
#[cfg(test)]
mod parser_tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;

    #[derive(Serialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Event {
        text: String,
        maybe: Option<String>,
        list: Vec<String>,
        map: BTreeMap<String, String>,
        id: uuid::Uuid,
        raw: Box<RawValue>,
        #[serde(with = "time::serde::rfc3339")]
        at: time::OffsetDateTime,
    }

    fn encoded<T: Serialize>(data: &T, event: &str) -> String {
        match CommonParser.encode_value(data, Some(event)) {
            Ok(Value::Str(s, None)) => s.as_str().to_owned(),
            other => panic!("unexpected encoding: {other:?}"),
        }
    }

    fn event_of(text: &str) -> Result<String, String> {
        CommonParser
            .read_event(&Value::Str(Str::from(text.to_owned()), None))
            .map(str::to_owned)
            .map_err(|e| e.to_string())
    }

    /// Any string: control characters, quotes, backslashes, non-ASCII, short and long.
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ -~]{0,80}",
            "[A-Za-z0-9+/=_-]{14,300}",
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('\n'),
                    Just('\u{1}'),
                    Just('é'),
                    Just('a')
                ],
                0..64
            )
            .prop_map(|c| c.into_iter().collect()),
        ]
    }

    proptest! {
        #[test]
        fn verbatim_strings_match_serde_json(
            text in any_text(),
            maybe in proptest::option::of(any_text()),
            list in proptest::collection::vec(any_text(), 0..4),
            keys in proptest::collection::vec((any_text(), any_text()), 0..3),
            raw_text in any_text(),
            id in any::<u128>(),
            secs in 0i64..4_000_000_000,
        ) {
            let quoted = serde_json::to_string(&raw_text)?;
            let raw = if raw_text.len() % 2 == 0 {
                quoted
            } else {
                format!("{{\"k\":{quoted}}}")
            };
            let (Ok(raw), Some(at)) = (
                RawValue::from_string(raw),
                time::OffsetDateTime::from_unix_timestamp(secs).ok(),
            ) else {
                return Err(TestCaseError::fail("bad generated input"));
            };
            let data = Event {
                text: text.clone(),
                maybe,
                list,
                map: keys.into_iter().collect(),
                id: uuid::Uuid::from_u128(id),
                raw,
                at,
            };
            let expected = format!("[\"ev\",{}]", serde_json::to_string(&data)?);
            prop_assert_eq!(encoded(&data, "ev"), expected);
            // A bare string, and one inside a tuple of arguments, too.
            let expected = format!("[\"ev\",{}]", serde_json::to_string(&text)?);
            prop_assert_eq!(encoded(&text, "ev"), expected);
            let expected = format!("[\"ev\",{},1]", serde_json::to_string(&text)?);
            prop_assert_eq!(encoded(&(text.as_str(), 1), "ev"), expected);
        }
    }

    #[test]
    fn an_event_is_routed_by_its_name() {
        let long = "x".repeat(10_000);
        assert_eq!(
            event_of(r#"["sendMessage",{"a":1}]"#).as_deref(),
            Ok("sendMessage")
        );
        assert_eq!(event_of(" \n[ \"ping\" ]").as_deref(), Ok("ping"));
        assert_eq!(
            event_of(&format!(r#"["typing","{long}"]"#)).as_deref(),
            Ok("typing")
        );
        // What follows the name is for the handler to refuse (with VALIDATION_FAILED).
        assert_eq!(
            event_of(r#"["sendMessage",{"a":"#).as_deref(),
            Ok("sendMessage")
        );
        // No name, or not a string name: refused here, as upstream refuses them.
        for bad in [
            "[]",
            "[1]",
            "{}",
            "\"ev\"",
            "",
            "[",
            r#"["e\u0076"]"#,
            "[null,1]",
        ] {
            assert!(event_of(bad).is_err(), "{bad:?} was routed");
        }
    }
}
