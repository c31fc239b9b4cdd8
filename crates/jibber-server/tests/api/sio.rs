//! A Socket.IO test device built on the Rust Socket.IO client `rust_socketio`, which hands
//! events over one by one in arrival order: every server event lands in a channel the test
//! awaits, with a timeout; `call` emits with an acknowledgement and awaits it. (This client
//! cannot acknowledge server events, so devices confirm delivery with
//! `markMessageAsDelivered`; the acknowledgement path is covered by the `socket.io-client`
//! tests in tests/node.)

// Shared by the server's tests and the CLI's several-node test; each uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::helpers::TestApp;

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Device {
    pub client: Client,
    /// The `onlineUsers` greeting received on connect (Null for [`Device::from_client`]).
    pub greeting: Value,
    /// Every event taken from the socket so far (returned or skipped), in arrival order.
    pub seen: Vec<(String, Value)>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl Device {
    /// Connects with an access token and waits until the server has registered the socket
    /// (its `onlineUsers` greeting).
    pub async fn connect(app: &TestApp, token: &str, transport: TransportType) -> Device {
        Device::connect_to(&app.base, json!({ "token": token }), transport).await
    }

    /// Like [`Device::connect`], to any Socket.IO server at `base`, with this `auth` object.
    pub async fn connect_to(base: &str, auth: Value, transport: TransportType) -> Device {
        let (tx, rx) = mpsc::unbounded_channel();
        let errors = tx.clone();
        let client = ClientBuilder::new(base.to_owned())
            .transport_type(transport)
            .auth(auth)
            .reconnect(false)
            .on_any(move |event: Event, payload: Payload, _client: Client| {
                let tx = tx.clone();
                async move {
                    if let Payload::Text(values) = payload {
                        let _ = tx.send((
                            String::from(event),
                            values.into_iter().next().unwrap_or(Value::Null),
                        ));
                    }
                }
                .boxed()
            })
            // The client routes the event named "error" apart from the others.
            .on(Event::Error, move |payload: Payload, _client: Client| {
                let tx = errors.clone();
                async move {
                    if let Payload::Text(values) = payload {
                        let _ = tx.send((
                            "error".to_owned(),
                            values.into_iter().next().unwrap_or(Value::Null),
                        ));
                    }
                }
                .boxed()
            })
            .connect()
            .await
            .expect("socket connects");
        let mut device = Device {
            client,
            greeting: Value::Null,
            seen: Vec::new(),
            events: rx,
        };
        device.greeting = device.expect("onlineUsers").await;
        device
    }

    /// A handle that only emits (for sender tasks); its events stay with the original device.
    pub fn from_client(client: Client) -> Device {
        let (_tx, events) = mpsc::unbounded_channel();
        Device {
            client,
            greeting: Value::Null,
            seen: Vec::new(),
            events,
        }
    }

    /// The next event named `name` (others before it are skipped), or a panic after [`WAIT`].
    pub async fn expect(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.recv()).await;
            if let Ok(Some(event)) = &next {
                self.seen.push(event.clone());
            }
            match next {
                Ok(Some((event, value))) if event == name => return value,
                Ok(Some((other, v))) => {
                    if std::env::var_os("JIBBER_TEST_TRACE").is_some() {
                        eprintln!("skipped {other}: {v}");
                    }
                    continue;
                }
                Ok(None) => panic!("socket closed while waiting for {name}"),
                Err(_) => panic!("no {name} within {WAIT:?}"),
            }
        }
    }

    /// The next event named `name` whose `field` equals `value` (others are skipped).
    pub async fn expect_with(&mut self, name: &str, field: &str, value: &Value) -> Value {
        loop {
            let event = self.expect(name).await;
            if event[field] == *value {
                return event;
            }
        }
    }

    /// The next event, whatever it is.
    pub async fn expect_any(&mut self) -> (String, Value) {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => {
                self.seen.push(event.clone());
                event
            }
            Ok(None) => panic!("socket closed while waiting for an event"),
            Err(_) => panic!("no event within {WAIT:?}"),
        }
    }

    /// Collects `n` events named `name`.
    pub async fn collect(&mut self, name: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.expect(name).await);
        }
        out
    }

    /// Emits with an acknowledgement and returns the acknowledgement's payload.
    pub async fn call(&self, event: &str, data: Value) -> Value {
        self.try_call(event, data, WAIT)
            .await
            .unwrap_or_else(|| panic!("no acknowledgement of {event} within {WAIT:?}"))
    }

    /// Like [`Device::call`], but None when the emit fails or no acknowledgement comes within
    /// `wait` (a connection that is closing).
    pub async fn try_call(&self, event: &str, data: Value, wait: Duration) -> Option<Value> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, data, wait, move |payload: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    if let Payload::Text(values) = payload
                        && let Some(tx) = tx.lock().expect("lock").take()
                    {
                        // The client hands an acknowledgement's arguments over as one array.
                        let first = match values.into_iter().next() {
                            Some(Value::Array(mut args)) if args.len() == 1 => args.remove(0),
                            other => other.unwrap_or(Value::Null),
                        };
                        let _ = tx.send(first);
                    }
                }
                .boxed()
            })
            .await
            .ok()?;
        tokio::time::timeout(wait, rx).await.ok()?.ok()
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

/// A minimal Engine.IO long-polling session over plain HTTP: a client that stops polling is a
/// consumer that does not read.
pub struct RawPolling {
    http: reqwest::Client,
    url: String,
}

impl RawPolling {
    pub async fn open(app: &TestApp, token: &str) -> RawPolling {
        Self::open_with(app, json!({ "token": token })).await
    }

    /// Opens a session and sends the Socket.IO connect packet with this `auth` object; the
    /// server's answer (`40…` or `44…`) is the first packet of [`RawPolling::connect_reply`].
    pub async fn open_with(app: &TestApp, auth: Value) -> RawPolling {
        let http = reqwest::Client::new();
        let base = format!("{}/socket.io/?EIO=4&transport=polling", app.base);
        let open = http
            .get(&base)
            .send()
            .await
            .expect("handshake")
            .text()
            .await
            .expect("text");
        let json: Value =
            serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("json");
        let url = format!("{base}&sid={}", json["sid"].as_str().expect("sid"));
        let connect = format!("40{auth}");
        let res = http.post(&url).body(connect).send().await.expect("connect");
        assert!(res.status().is_success());
        RawPolling { http, url }
    }

    /// One poll: the packets the server had queued (it answers at once when there are some).
    pub async fn poll(&self) -> Vec<String> {
        let body = tokio::time::timeout(WAIT, async {
            self.http
                .get(&self.url)
                .send()
                .await
                .expect("poll")
                .text()
                .await
                .expect("text")
        })
        .await
        .expect("poll answered");
        body.split('\u{1e}').map(str::to_owned).collect()
    }

    /// Polls until a packet of event `name` arrives; returns every packet seen.
    pub async fn poll_until(&self, name: &str) -> Vec<String> {
        let needle = format!("[\"{name}\"");
        let mut seen = Vec::new();
        while !seen.iter().any(|p: &String| p.contains(&needle)) {
            seen.extend(self.poll().await);
        }
        seen
    }

    /// The answer to the connect packet: `Ok(sid)` or `Err(the connect_error object)`.
    pub async fn connect_reply(&self) -> Result<String, Value> {
        // Engine.IO pings ("2") may come first; the Socket.IO packets start with "4".
        let mut packets = Vec::new();
        while !packets.iter().any(|p: &String| p.starts_with('4')) {
            packets.extend(self.poll().await);
        }
        let first = packets
            .iter()
            .find(|p| p.starts_with('4'))
            .expect("a packet");
        if let Some(ok) = first.strip_prefix("40") {
            let v: Value = serde_json::from_str(ok).expect("json");
            return Ok(v["sid"].as_str().expect("sid").to_owned());
        }
        let err = first
            .strip_prefix("44")
            .unwrap_or_else(|| panic!("not a connect answer: {packets:?}"));
        Err(serde_json::from_str(err).expect("json"))
    }

    /// POSTs raw bytes as a packet payload; returns the HTTP status.
    pub async fn send(&self, body: Vec<u8>) -> u16 {
        self.http
            .post(&self.url)
            .body(body)
            .send()
            .await
            .expect("post")
            .status()
            .as_u16()
    }

    /// Polls until a packet starting with `prefix` arrives, and returns it.
    pub async fn poll_until_prefix(&self, prefix: &str) -> String {
        loop {
            if let Some(p) = self
                .poll()
                .await
                .into_iter()
                .find(|p| p.starts_with(prefix))
            {
                return p;
            }
        }
    }
}
