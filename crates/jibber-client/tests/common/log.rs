//! Every event of an SDK client, collected as it comes (so the client never waits for the test),
//! and waits on what has come so far. Shared by the SDK's fault tests and the several-node test
//! (`crates/jibber-cli/tests/cluster.rs`).

#![allow(dead_code)] // each test file uses a part

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jibber_client::realtime::{Event, MessageState};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

#[derive(Clone)]
pub struct Log {
    events: Arc<Mutex<Vec<Event>>>,
    changed: watch::Sender<usize>,
    /// How long a wait may take.
    patience: Duration,
}

impl Log {
    /// Starts collecting `rx`; each wait gives up after `patience`.
    pub fn collect(mut rx: mpsc::Receiver<Event>, patience: Duration) -> Log {
        let log = Log {
            events: Arc::default(),
            changed: watch::channel(0).0,
            patience,
        };
        let writer = log.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let n = {
                    let mut events = writer.events.lock().unwrap_or_else(|e| e.into_inner());
                    events.push(e);
                    events.len()
                };
                writer.changed.send_replace(n);
            }
        });
        log
    }

    pub fn snapshot(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `pick` finds something in the events so far, and returns it; panics with
    /// every event seen after the patience runs out.
    pub async fn wait_for<T>(&self, what: &str, pick: impl Fn(&[Event]) -> Option<T>) -> T {
        let mut rx = self.changed.subscribe();
        let found = tokio::time::timeout(self.patience, async {
            loop {
                if let Some(t) = pick(&self.snapshot()) {
                    return Some(t);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match found {
            Ok(Some(t)) => t,
            _ => panic!("timed out waiting for {what}; saw {:#?}", self.snapshot()),
        }
    }

    /// Waits until `done` holds for the events so far.
    pub async fn wait(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        self.wait_for(what, |events| done(events).then_some(()))
            .await;
    }
}

/// (tempMessageId, (message id, sequence)) of every `Sent` state among `events`.
pub fn sent_states(events: &[Event]) -> impl Iterator<Item = (String, (Uuid, i64))> + '_ {
    events.iter().filter_map(|e| match e {
        Event::State {
            temp_id,
            state:
                MessageState::Sent {
                    message_id,
                    sequence,
                },
            ..
        } => Some((temp_id.clone(), (*message_id, *sequence))),
        _ => None,
    })
}
