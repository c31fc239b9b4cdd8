//! A fixed write load for the SQLite batch writer, to count its instructions under callgrind
//! (`scripts/writer-instructions`): instruction counts repeat from run to run where the relay's
//! timings on these machines swing by a fifth.
//!
//! `PAIRS` pairs of users each have a chat. Every round is ONE batch, shaped like the relay's:
//! each user sends one message to the other member, and the receipts of the previous round's
//! messages come with it. `ROUNDS` rounds (argument 1, default 50) store `2 * PAIRS * ROUNDS`
//! messages.

use jibber_store::batch::{DeliveryRequest, SendRequest, Write, Written};
use jibber_store::benchkit;
use jibber_store::testsuite::message;
use jibber_store::util::now_ms;
use jibber_store_sqlite::{SqliteConfig, SqliteStore};
use uuid::Uuid;

const PAIRS: usize = 50;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS: a number"))
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut config =
            SqliteConfig::new(format!("sqlite://{}", dir.path().join("w.db").display()));
        // Rounds follow each other at once: the writer's cost, not its pacing.
        config.commit_interval = std::time::Duration::ZERO;
        let store = SqliteStore::open(&config).await.expect("open");
        let members = benchkit::pairs(&store, PAIRS, "w").await;
        let mut received: Vec<(Uuid, Uuid)> = Vec::new();
        let mut stored = 0;
        for round in 0..rounds {
            let mut batch: Vec<Write> = received
                .drain(..)
                .map(|(me, message)| {
                    Write::Delivered(DeliveryRequest {
                        me,
                        message,
                        at: now_ms(),
                    })
                })
                .collect();
            for &(chat, a, b) in &members {
                for (from, to) in [(a, b), (b, a)] {
                    batch.push(Write::Send(SendRequest {
                        msg: message(chat, from, to, &format!("r{round}")),
                        count_unread: true,
                    }));
                }
            }
            for answer in store.submit_writes(batch).await {
                match answer.expect("write") {
                    Written::Sent(sent) => {
                        assert!(!sent.duplicate);
                        received.push((sent.message.receiver, sent.message.id));
                        stored += 1;
                    }
                    Written::Delivered(receipt) => assert!(receipt.is_some()),
                }
            }
        }
        assert_eq!(stored, 2 * PAIRS * rounds);
        println!(
            "stored {stored} messages and {} receipts in {rounds} batches",
            stored - 2 * PAIRS
        );
        store.close().await;
    });
}
