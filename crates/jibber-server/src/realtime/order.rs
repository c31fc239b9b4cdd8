//! Per-chat ordering of sends on this node: a send holds its chat's lock from before the
//! commit until its fan-out is queued, so devices receive a chat's messages in sequence order.
//! (SQLite has one writer anyway, so this costs no throughput; across nodes, clients still
//! order by `sequenceNumber` and fill gaps from `/sync`.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// The per-chat locks; an entry lives only while someone holds or waits for it.
#[derive(Debug, Default)]
pub struct ChatLocks {
    locks: Mutex<HashMap<Uuid, Slot>>,
}

/// Held while a send commits and fans out.
pub struct ChatGuard<'a> {
    locks: &'a ChatLocks,
    chat: Uuid,
    guard: Option<OwnedMutexGuard<()>>,
}

impl ChatLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Slot>> {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub async fn lock(&self, chat: Uuid) -> ChatGuard<'_> {
        let slot = self.map().entry(chat).or_default().clone();
        let guard = slot.lock_owned().await;
        ChatGuard {
            locks: self,
            chat,
            guard: Some(guard),
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

impl Drop for ChatGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        // Only the map holds it: nobody waits, so the entry can go.
        if map
            .get(&self.chat)
            .is_some_and(|slot| Arc::strong_count(slot) == 1)
        {
            map.remove(&self.chat);
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
                let _g = locks.lock(chat).await;
                tokio::task::yield_now().await;
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert!(locks.is_empty());
    }
}
