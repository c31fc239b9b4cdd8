//! Several nodes: the tasks that keep this node in the cluster (`crate::cluster`) and the
//! cluster-wide answers the gateway needs (presence, open chats, rate limits). Each answer falls
//! back to what this node knows while Redis is down.

use std::collections::HashSet;

use jibber_proto::events;
use jibber_store::util::now_ms;
use uuid::Uuid;

use super::notify;
use crate::cluster::{Inbound, Queues};
use crate::state::AppState;

/// Starts the publisher, the receiver and the monitor (only with Redis). They end with the
/// process, or with [`super::Realtime::stop_tasks`].
pub fn start(state: &AppState) {
    let Some(Queues {
        outbox,
        mut inbox,
        inbox_lost,
    }) = state.realtime.cluster.take_queues()
    else {
        return;
    };
    let publisher = state.clone();
    let receiver = state.clone();
    let monitor_state = state.clone();
    let tasks = [
        tokio::spawn(async move { publisher.realtime.cluster.publish_loop(outbox).await }),
        tokio::spawn(async move {
            while let Some(inbound) = inbox.recv().await {
                if inbox_lost.swap(false, std::sync::atomic::Ordering::Relaxed) {
                    notify::resync_all(&receiver);
                }
                match inbound {
                    Inbound::Relay(body) => match serde_json::from_slice(&body) {
                        Ok(relay) => notify::apply(&receiver, relay),
                        Err(e) => tracing::warn!(error = %e, "an unreadable relay was ignored"),
                    },
                    Inbound::Resync => notify::resync_all(&receiver),
                }
            }
        }),
        tokio::spawn(monitor(monitor_state)),
    ];
    state
        .realtime
        .tasks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(tasks.iter().map(tokio::task::JoinHandle::abort_handle));
}

/// Renews the heartbeat, notices Redis going and coming back, and reaps dead nodes.
async fn monitor(state: AppState) {
    let cluster = &state.realtime.cluster;
    let mut tick = tokio::time::interval(cluster.beat());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match cluster.heartbeat().await {
            Ok(registered) => {
                let was_up = cluster.set_up(true);
                if (!was_up || !registered) && !republish(&state).await {
                    // Down again half-way: the next beat that finds Redis starts over.
                    cluster.set_up(false);
                    continue;
                }
                if !was_up {
                    // Relays were lost while the link was down: every client walks /sync.
                    notify::resync_all(&state);
                }
                match cluster.reap().await {
                    Ok(gone) => {
                        for user in gone {
                            went_offline(&state, user).await;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "reaping dead nodes failed"),
                }
            }
            Err(e) => {
                if cluster.set_up(false) {
                    tracing::warn!(error = %e, "redis heartbeat failed");
                }
            }
        }
    }
}

/// Makes Redis say again what this node knows (after an outage, or when this node was taken for
/// dead): its users, and their devices' open chats, replacing what changed meanwhile; users who
/// left during the outage are taken out. Then the peers on the other nodes hear this node's
/// presence again (relays were dropped while the link was down), and this node's devices get a
/// fresh `onlineUsers`. Returns false when Redis failed again on the way.
async fn republish(state: &AppState) -> bool {
    let cluster = &state.realtime.cluster;
    let local = state.realtime.registry.snapshot();
    let here: HashSet<Uuid> = local.iter().map(|(u, _)| *u).collect();
    let Ok(listed) = cluster.node_users().await else {
        return false;
    };
    let mut gone = Vec::new();
    for user in listed.into_iter().filter(|u| !here.contains(u)) {
        match cluster.leave(user).await {
            Ok(0) => gone.push(user),
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    for (user, devices) in &local {
        let open: Vec<(String, Uuid)> = devices
            .iter()
            .filter_map(|(sid, chat)| chat.map(|c| (sid.to_string(), c)))
            .collect();
        if cluster.join(*user).await.is_err() || cluster.reset_active(*user, &open).await.is_err() {
            return false;
        }
        // Gone since the snapshot, perhaps before its own LEAVE could undo this JOIN.
        if !state.realtime.registry.is_online(*user) && cluster.leave(*user).await.is_err() {
            return false;
        }
    }
    for user in gone {
        let last_seen = match state.store.user_by_id(user).await {
            Ok(Some(u)) => u.last_seen,
            _ => None,
        };
        notify::presence_elsewhere(state, user, events::USER_OFFLINE, last_seen).await;
    }
    for (user, _) in &local {
        notify::presence_elsewhere(state, *user, events::USER_ONLINE, None).await;
        notify::online_users(state, *user).await;
    }
    true
}

/// A user is offline everywhere: record it and tell the peers.
pub async fn went_offline(state: &AppState, user: Uuid) {
    for (chat, other) in state.realtime.clear_typing(user) {
        notify::typing(state, user, chat, other, false);
    }
    let now = now_ms();
    if let Err(e) = state.store.set_last_seen(user, now).await {
        tracing::warn!(error = %e, "cannot record last seen");
    }
    notify::presence(state, user, events::USER_OFFLINE, Some(now)).await;
}

impl super::Realtime {
    /// A user's first device on this node connected: true when the user was offline
    /// everywhere (this node decides alone while Redis is down).
    pub async fn join(&self, user: Uuid) -> bool {
        !matches!(self.cluster.join(user).await, Ok(others) if others > 0)
    }

    /// A user's last device on this node left: true when the user is offline everywhere.
    pub async fn leave(&self, user: Uuid) -> bool {
        !matches!(self.cluster.leave(user).await, Ok(others) if others > 0)
    }

    /// Which of `users` are online on any node.
    pub async fn online_among(&self, users: Vec<Uuid>) -> Vec<Uuid> {
        let remote = match self.cluster.online(&users).await {
            Ok(flags) => flags,
            Err(_) => vec![false; users.len()],
        };
        users
            .into_iter()
            .zip(remote)
            .filter(|(u, on)| *on || self.registry.is_online(*u))
            .map(|(u, _)| u)
            .collect()
    }

    /// Whether any device of `user`, on any node, has `chat` open.
    pub async fn chat_open(&self, user: Uuid, chat: Uuid) -> bool {
        self.registry.has_active_chat(user, chat)
            || self.cluster.has_active(user, chat).await.unwrap_or(false)
    }
}
