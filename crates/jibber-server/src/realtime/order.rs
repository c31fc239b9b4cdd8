//! Per-chat ordering of sends on this node, pipelined: devices receive a chat's messages in
//! sequence order, while the sends of one chat still commit together.
//!
//! A send takes a [`Turn`] in its chat. Turns are handed out one at a time, in the order they
//! were asked for, and the holder queues its send in the store before it lets the next turn
//! go ([`Turn::queued`]); the store writes queued sends in queue order, so sequence numbers
//! follow the turns. The send then waits for its commit, like every other send queued with it
//! (one batch, one commit), and before it fans out it waits for the previous turn's fan-out
//! ([`Turn::wait_previous`]). So fan-outs leave this node in sequence order without a lock held
//! across the commit: a chat with eight sends in flight puts all eight into one batch instead
//! of one per batch. (Across nodes, clients order by `sequenceNumber` and fill gaps from
//! `/sync`.)
//!
//! A turn that ends early (its send failed, or its task was cancelled) lets the next one go
//! when it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedMutexGuard, oneshot};
use uuid::Uuid;

/// One chat's queue of turns.
#[derive(Default)]
struct Chat {
    /// Held from taking a turn until its send is queued in the store.
    queue: Arc<tokio::sync::Mutex<()>>,
    /// Dropped by the last turn when its fan-out is done.
    tail: Mutex<Option<oneshot::Receiver<()>>>,
}

/// The per-chat queues; an entry lives only while a turn of it is alive.
#[derive(Default)]
pub struct ChatLocks {
    chats: Mutex<HashMap<Uuid, Arc<Chat>>>,
}

impl std::fmt::Debug for ChatLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatLocks")
            .field("chats", &self.len())
            .finish()
    }
}

/// A send's place in its chat's order.
pub struct Turn<'a> {
    locks: &'a ChatLocks,
    chat_id: Uuid,
    chat: Option<Arc<Chat>>,
    queueing: Option<OwnedMutexGuard<()>>,
    previous: Option<oneshot::Receiver<()>>,
    /// Dropped when this turn ends: the next turn may fan out.
    _done: oneshot::Sender<()>,
}

impl ChatLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Chat>>> {
        self.chats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for this chat's next turn (first come, first served). The turn holds the chat's
    /// queue until [`Turn::queued`] or until it is dropped.
    pub async fn lock(&self, chat_id: Uuid) -> Turn<'_> {
        let chat = self.map().entry(chat_id).or_default().clone();
        let queueing = chat.queue.clone().lock_owned().await;
        let (done, tail) = oneshot::channel();
        let previous = chat
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(tail);
        Turn {
            locks: self,
            chat_id,
            chat: Some(chat),
            queueing: Some(queueing),
            previous,
            _done: done,
        }
    }

    /// Chats with a live entry (for tests: it must drop back to zero).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Turn<'_> {
    /// The send is queued in the store: the next turn may queue its own.
    pub fn queued(&mut self) {
        self.queueing.take();
    }

    /// Waits until the previous turn of this chat has fanned out (or ended).
    pub async fn wait_previous(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Err: the previous turn ended without fanning out; either way it is over.
            let _ = previous.await;
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.queueing.take();
        let Some(chat) = self.chat.take() else { return };
        let mut map = self.locks.map();
        drop(chat);
        // Only the map holds it: no turn is alive, so the entry can go.
        if map
            .get(&self.chat_id)
            .is_some_and(|chat| Arc::strong_count(chat) == 1)
        {
            map.remove(&self.chat_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_vanish_when_released() {
        let locks = ChatLocks::default();
        let chat = Uuid::now_v7();
        {
            let _a = locks.lock(chat).await;
            assert_eq!(locks.len(), 1);
        }
        assert!(locks.is_empty());
        let locks = Arc::new(locks);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let locks = locks.clone();
            tasks.push(tokio::spawn(async move {
                let mut turn = locks.lock(chat).await;
                tokio::task::yield_now().await;
                turn.queued();
                turn.wait_previous().await;
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert!(locks.is_empty());
    }

    /// Lets the other tasks of this (single-threaded) test runtime run as far as they can.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    /// Turns queue one at a time in order, but the second queues before the first has fanned
    /// out; fan-outs still come in turn order, and an abandoned turn frees the next.
    #[tokio::test]
    async fn turns_queue_in_order_and_fan_out_in_order() {
        let locks = Arc::new(ChatLocks::default());
        let chat = Uuid::now_v7();
        let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let mut first = locks.lock(chat).await;
        let second = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let mut turn = locks.lock(chat).await;
                turn.queued();
                events.send("second queued").expect("send");
                turn.wait_previous().await;
                events.send("second fans out").expect("send");
            })
        };
        settle().await;
        assert!(seen.try_recv().is_err(), "the first turn is still queueing");
        first.queued();
        settle().await;
        assert_eq!(seen.try_recv().ok(), Some("second queued"));
        assert!(
            seen.try_recv().is_err(),
            "the first turn has not fanned out"
        );
        first.wait_previous().await;
        drop(first);
        settle().await;
        assert_eq!(seen.try_recv().ok(), Some("second fans out"));
        second.await.expect("task");

        // A turn dropped without fanning out frees the next one.
        let abandoned = locks.lock(chat).await;
        let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let next = {
            let locks = locks.clone();
            tokio::spawn(async move {
                let mut turn = locks.lock(chat).await;
                turn.queued();
                turn.wait_previous().await;
                events.send("next fans out").expect("send");
            })
        };
        settle().await;
        assert!(seen.try_recv().is_err());
        drop(abandoned);
        settle().await;
        assert_eq!(seen.try_recv().ok(), Some("next fans out"));
        next.await.expect("task");
        assert!(locks.is_empty());
    }
}
