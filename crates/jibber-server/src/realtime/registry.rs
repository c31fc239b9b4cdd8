//! Which devices (sockets) of which users are connected to this node, with each device's open
//! chat and each user's away flag. Everything a socket adds is removed when it disconnects.

use std::collections::HashMap;
use std::sync::Mutex;

use socketioxide::socket::Sid;
use uuid::Uuid;

#[derive(Debug, Default)]
struct UserEntry {
    /// Each device and the chat it has open.
    sockets: HashMap<Sid, Option<Uuid>>,
    away: bool,
}

/// A user's devices on this node, each with its open chat.
pub type Devices = Vec<(Sid, Option<Uuid>)>;

/// The local registry of connected users and their devices.
#[derive(Debug, Default)]
pub struct Registry {
    users: Mutex<HashMap<Uuid, UserEntry>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, UserEntry>> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a device; true when it is the user's first (the user comes online).
    pub fn add(&self, user: Uuid, sid: Sid) -> bool {
        let mut users = self.lock();
        let entry = users.entry(user).or_default();
        entry.sockets.insert(sid, None);
        entry.sockets.len() == 1
    }

    /// Removes a device; true when it was the user's last (the user goes offline).
    pub fn remove(&self, user: Uuid, sid: Sid) -> bool {
        let mut users = self.lock();
        let Some(entry) = users.get_mut(&user) else {
            return false;
        };
        entry.sockets.remove(&sid);
        if entry.sockets.is_empty() {
            users.remove(&user);
            true
        } else {
            false
        }
    }

    /// Records the chat a device has open (None: none).
    pub fn set_active_chat(&self, user: Uuid, sid: Sid, chat: Option<Uuid>) {
        if let Some(slot) = self
            .lock()
            .get_mut(&user)
            .and_then(|e| e.sockets.get_mut(&sid))
        {
            *slot = chat;
        }
    }

    /// Whether any device of `user` has `chat` open.
    pub fn has_active_chat(&self, user: Uuid, chat: Uuid) -> bool {
        self.lock()
            .get(&user)
            .is_some_and(|e| e.sockets.values().any(|c| *c == Some(chat)))
    }

    /// Sets the away flag; true when it changed.
    pub fn set_away(&self, user: Uuid, away: bool) -> bool {
        match self.lock().get_mut(&user) {
            Some(e) if e.away != away => {
                e.away = away;
                true
            }
            _ => false,
        }
    }

    pub fn is_online(&self, user: Uuid) -> bool {
        self.lock().contains_key(&user)
    }

    /// Empties the registry (shutdown); returns the users that were connected. Their sockets'
    /// later disconnects find nothing left to remove.
    pub fn take_all(&self) -> Vec<Uuid> {
        self.lock().drain().map(|(u, _)| u).collect()
    }

    /// Every user with their devices and open chats (to write them into Redis again).
    pub fn snapshot(&self) -> Vec<(Uuid, Devices)> {
        self.lock()
            .iter()
            .map(|(u, e)| (*u, e.sockets.iter().map(|(s, c)| (*s, *c)).collect()))
            .collect()
    }

    /// (connected sockets, connected users).
    pub fn counts(&self) -> (u64, u64) {
        let users = self.lock();
        let sockets: usize = users.values().map(|e| e.sockets.len()).sum();
        (sockets as u64, users.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_come_and_go_without_traces() {
        let r = Registry::default();
        let u = Uuid::now_v7();
        let chat = Uuid::now_v7();
        let (a, b) = (Sid::new(), Sid::new());
        assert!(r.add(u, a));
        assert!(!r.add(u, b));
        r.set_active_chat(u, b, Some(chat));
        assert!(r.has_active_chat(u, chat));
        assert!(r.set_away(u, true));
        assert!(!r.set_away(u, true));
        assert_eq!(r.counts(), (2, 1));
        assert!(!r.remove(u, b));
        assert!(!r.has_active_chat(u, chat));
        assert!(r.remove(u, a));
        assert_eq!(r.counts(), (0, 0));
        assert!(!r.is_online(u));
        // Removing twice is harmless.
        assert!(!r.remove(u, a));
    }
}
