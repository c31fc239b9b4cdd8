//! A Socket.IO test device built on the Rust Socket.IO client `rust_socketio`, which hands
//! events over one by one in arrival order: every server event lands in a channel the test
//! awaits, with a timeout; `call` emits with an acknowledgement and awaits it. (This client
//! cannot acknowledge server events, so devices confirm delivery with
//! `markMessageAsDelivered`; the acknowledgement path is covered by the `socket.io-client`
//! tests in tests/node.)

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
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl Device {
    /// Connects with an access token and waits until the server has registered the socket
    /// (its `onlineUsers` greeting).
    pub async fn connect(app: &TestApp, token: &str, transport: TransportType) -> Device {
        let (tx, rx) = mpsc::unbounded_channel();
        let errors = tx.clone();
        let client = ClientBuilder::new(app.base.clone())
            .transport_type(transport)
            .auth(json!({ "token": token }))
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
        let mut device = Device { client, events: rx };
        device.expect("onlineUsers").await;
        device
    }

    /// A handle that only emits (for sender tasks); its events stay with the original device.
    pub fn from_client(client: Client) -> Device {
        let (_tx, events) = mpsc::unbounded_channel();
        Device { client, events }
    }

    /// The next event named `name` (others before it are skipped), or a panic after [`WAIT`].
    pub async fn expect(&mut self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
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

    /// The next event, whatever it is.
    pub async fn expect_any(&mut self) -> (String, Value) {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => event,
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
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, data, WAIT, move |payload: Payload, _c: Client| {
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
            .expect("emit");
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("ack in time")
            .expect("ack")
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}
