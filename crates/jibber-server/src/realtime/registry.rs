//! Which devices (sockets) of which users are connected to this node, with each device's open
//! chat and each user's away state. Everything a socket adds is removed when it disconnects.
//!
//! A user is away when a device said so (`userAway`, until `userBack`) or when the user's devices
//! send `heartbeat` events and none has come for `away_after` (idle, until the next heartbeat).
//! A user whose devices never send a heartbeat is never idle.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use socketioxide::socket::Sid;
use uuid::Uuid;

#[derive(Debug, Default)]
struct UserEntry {
    /// Each device and the chat it has open.
    sockets: HashMap<Sid, Option<Uuid>>,
    /// Said away by a device.
    away: bool,
    /// Heartbeats stopped for `away_after`.
    idle: bool,
    /// The last heartbeat of any device of the user.
    last_heartbeat: Option<Instant>,
}

impl UserEntry {
    fn is_away(&self) -> bool {
        self.away || self.idle
    }
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

    /// The devices of `user` on this node.
    pub fn sids(&self, user: Uuid) -> Vec<Sid> {
        self.lock()
            .get(&user)
            .map(|e| e.sockets.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Whether any device of `user` has `chat` open.
    pub fn has_active_chat(&self, user: Uuid, chat: Uuid) -> bool {
        self.lock()
            .get(&user)
            .is_some_and(|e| e.sockets.values().any(|c| *c == Some(chat)))
    }

    /// A device said the user is away (`userAway`) or back (`userBack`, which also ends being
    /// idle); true when the user's away state changed.
    pub fn set_away(&self, user: Uuid, away: bool, now: Instant) -> bool {
        let mut users = self.lock();
        let Some(e) = users.get_mut(&user) else {
            return false;
        };
        let before = e.is_away();
        e.away = away;
        if !away {
            e.idle = false;
            if e.last_heartbeat.is_some() {
                e.last_heartbeat = Some(now);
            }
        }
        before != e.is_away()
    }

    /// A device of `user` sent a heartbeat; true when that brought the user back from idle.
    pub fn heartbeat(&self, user: Uuid, now: Instant) -> bool {
        let mut users = self.lock();
        let Some(e) = users.get_mut(&user) else {
            return false;
        };
        e.last_heartbeat = Some(now);
        let came_back = e.idle && !e.away;
        e.idle = false;
        came_back
    }

    /// Marks idle every heartbeating user silent for `after`; returns those who thereby became
    /// away (not those who were away already).
    pub fn sweep_idle(&self, now: Instant, after: Duration) -> Vec<Uuid> {
        let mut gone = Vec::new();
        for (user, e) in self.lock().iter_mut() {
            let silent = e
                .last_heartbeat
                .is_some_and(|t| now.saturating_duration_since(t) >= after);
            if silent && !e.idle {
                e.idle = true;
                if !e.away {
                    gone.push(*user);
                }
            }
        }
        gone
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
        let now = Instant::now();
        assert!(r.set_away(u, true, now));
        assert!(!r.set_away(u, true, now));
        assert_eq!(r.counts(), (2, 1));
        assert!(!r.remove(u, b));
        assert!(!r.has_active_chat(u, chat));
        assert!(r.remove(u, a));
        assert_eq!(r.counts(), (0, 0));
        assert!(!r.is_online(u));
        // Removing twice is harmless.
        assert!(!r.remove(u, a));
    }

    #[test]
    fn heartbeats_make_a_silent_user_idle_and_bring_them_back() {
        let r = Registry::default();
        let (u, quiet) = (Uuid::now_v7(), Uuid::now_v7());
        r.add(u, Sid::new());
        r.add(quiet, Sid::new());
        let t0 = Instant::now();
        let after = Duration::from_secs(90);
        assert!(!r.heartbeat(u, t0), "a first heartbeat changes nothing");
        assert!(r.sweep_idle(t0 + Duration::from_secs(89), after).is_empty());
        // Only the heartbeating user goes idle; one who never sent a heartbeat never does.
        assert_eq!(r.sweep_idle(t0 + after, after), vec![u]);
        assert!(r.sweep_idle(t0 + after * 2, after).is_empty(), "once");
        assert!(
            r.heartbeat(u, t0 + after * 2),
            "the next heartbeat brings the user back"
        );
        assert!(!r.heartbeat(u, t0 + after * 2));

        // Said away, the user stays away through heartbeats and idleness, until userBack.
        let t1 = t0 + after * 3;
        assert!(r.set_away(u, true, t1));
        assert!(!r.heartbeat(u, t1));
        assert!(r.sweep_idle(t1 + after, after).is_empty());
        assert!(
            !r.heartbeat(u, t1 + after),
            "still away: the device said so"
        );
        assert!(r.set_away(u, false, t1 + after));
        // userBack also ends idleness.
        assert_eq!(r.sweep_idle(t1 + after * 2, after), vec![u]);
        assert!(r.set_away(u, false, t1 + after * 2));
    }
}
