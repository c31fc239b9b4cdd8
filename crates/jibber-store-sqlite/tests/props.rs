//! Properties of the message state machine on the real SQLite store, against a model: random
//! interleavings of sends from both members (with the chat open or not), repeated sends,
//! delivery marks by anyone and read marks up to any sequence. After every step the store agrees
//! with the model: sequence numbers are gapless, a repeat is the first message, a status only
//! moves forward (sent → delivered → read, read also straight from sent), only the receiver
//! moves it, and each member's unread count is the number of its received, counted, unread
//! messages.

use jibber_proto::api::DeliveryStatus;
use jibber_store::Store;
use jibber_store::testsuite::{message, user};
use jibber_store::util::now_ms;
use jibber_store_sqlite::{SqliteConfig, SqliteStore};
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Op {
    /// A message from member 0 or 1; `open` when the receiver has the chat open.
    Send { from: usize, open: bool },
    /// The same `(sender, tempMessageId)` as an earlier send.
    Repeat { index: usize },
    /// `by` marks the message at `index` delivered.
    Deliver { by: usize, index: usize },
    /// `by` marks read up to a sequence number.
    Read { by: usize, up_to: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, any::<bool>()).prop_map(|(from, open)| Op::Send { from, open }),
        1 => (0..64usize).prop_map(|index| Op::Repeat { index }),
        2 => (0..2usize, 0..64usize).prop_map(|(by, index)| Op::Deliver { by, index }),
        2 => (0..2usize, -1..40i64).prop_map(|(by, up_to)| Op::Read { by, up_to }),
    ]
}

/// What the store should hold for one message.
struct Model {
    from: usize,
    temp: String,
    id: Uuid,
    counted: bool,
    status: DeliveryStatus,
}

async fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = SqliteStore::open(&SqliteConfig::new(url))
        .await
        .expect("open");
    let members = [user(&store, "prop_a").await, user(&store, "prop_b").await];
    let chat = store
        .create_or_get_chat(members[0], members[1], Uuid::now_v7(), now_ms())
        .await
        .expect("chat")
        .chat
        .id;
    let mut model: Vec<Model> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Send { from, open } => {
                let temp = format!("m{step}");
                let sent = store
                    .send_message(
                        message(chat, members[from], members[1 - from], &temp),
                        !open,
                    )
                    .await
                    .expect("send");
                assert!(!sent.duplicate);
                assert_eq!(
                    sent.message.sequence_number,
                    model.len() as i64 + 1,
                    "gapless"
                );
                model.push(Model {
                    from,
                    temp,
                    id: sent.message.id,
                    counted: !open,
                    status: DeliveryStatus::Sent,
                });
            }
            Op::Repeat { index } => {
                let Some(m) = model.get(index % model.len().max(1)) else {
                    continue;
                };
                let sent = store
                    .send_message(
                        message(chat, members[m.from], members[1 - m.from], &m.temp),
                        true,
                    )
                    .await
                    .expect("repeat");
                assert!(sent.duplicate);
                assert_eq!(sent.message.id, m.id);
            }
            Op::Deliver { by, index } => {
                let n = model.len().max(1);
                let Some(m) = model.get_mut(index % n) else {
                    continue;
                };
                let r = store.mark_delivered(members[by], m.id, now_ms()).await;
                if by == m.from {
                    assert!(r.is_err(), "the sender marked its own message delivered");
                } else {
                    let r = r.expect("deliver");
                    assert_eq!(r.changed, m.status == DeliveryStatus::Sent);
                    if m.status == DeliveryStatus::Sent {
                        m.status = DeliveryStatus::Delivered;
                    }
                }
            }
            Op::Read { by, up_to } => {
                let r = store.mark_read(members[by], chat, up_to, now_ms()).await;
                if up_to < 0 {
                    // The service refuses it before the store; the store must not corrupt
                    // anything either way.
                    let _ = r;
                } else {
                    let r = r.expect("read");
                    let mut marked = 0;
                    for (i, m) in model.iter_mut().enumerate() {
                        if m.from != by && (i as i64) < up_to && m.status != DeliveryStatus::Read {
                            m.status = DeliveryStatus::Read;
                            marked += 1;
                        }
                    }
                    assert_eq!(r.marked, marked, "marked");
                }
            }
        }
        // The store agrees with the model after every step.
        let stored = store
            .messages_since(members[0], chat, 0, 1000)
            .await
            .expect("messages");
        assert_eq!(stored.len(), model.len());
        for (i, (s, m)) in stored.iter().zip(&model).enumerate() {
            assert_eq!(s.sequence_number, i as i64 + 1);
            assert_eq!(s.id, m.id);
            assert_eq!(s.delivery_status, m.status, "status of #{}", i + 1);
        }
        for (who, &member) in members.iter().enumerate() {
            let unread = model
                .iter()
                .filter(|m| m.from != who && m.counted && m.status != DeliveryStatus::Read)
                .count() as i64;
            let c = store.chat_for(member, chat).await.expect("chat");
            assert_eq!(c.unread_count, unread, "unread of member {who}");
            assert_eq!(c.last_sequence, model.len() as i64);
        }
    }
    store.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_message_state_machine_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run(ops));
    }
}
