//! Server → client fan-out. REST handlers and socket events both call these, so a message sent
//! over REST reaches sockets exactly like one sent over a socket.
//!
//! Every fan-out emits to this node's sockets and queues a [`Relay`] for the other nodes
//! (`crate::cluster`), which apply it to their own sockets through the same functions: the
//! guarantees below hold for every socket on every node.
//!
//! A failed emit never loses anything: the data is in the database already. A socket whose send
//! queue is full is marked lagging, the drop is counted (`jibber_socket_emit_dropped_total`), and
//! the next emit that fits is preceded by `syncRequired`, which makes the client walk `/sync`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jibber_proto::api::{DeliveredReceipt, Message, ReadReceipt};
use jibber_proto::events::{
    self, MessageDelivered, MessageRead, Notice, OnlineUsers, UserPresence, UserTyping,
};
use jibber_store::Sent;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};
use uuid::Uuid;

use super::auth::{Session, session};
use crate::state::AppState;

/// How long a receiver device has to acknowledge `receivedMessage`.
const DELIVERY_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// What one node asks the others to emit to their own sockets.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Relay {
    /// `event` with `data` to every device of `users`.
    Emit {
        users: Vec<Uuid>,
        event: String,
        data: Value,
    },
    /// `receivedMessage` to the receiver's devices, each with a delivery acknowledgement.
    Deliver { message: Box<Message> },
}

/// Queues a relay for the other nodes (nothing without Redis).
fn relay(state: &AppState, relay: &Relay) {
    if !state.realtime.cluster.is_enabled() {
        return;
    }
    match serde_json::to_vec(relay) {
        Ok(body) => state.realtime.cluster.relay(body),
        Err(e) => tracing::error!(error = %e, "a relay does not serialize"),
    }
}

/// Applies a relay from another node to this node's sockets.
pub fn apply(state: &AppState, relay: Relay) {
    match relay {
        Relay::Emit { users, event, data } => emit_local(state, &users, &event, &data, None),
        Relay::Deliver { message } => deliver_local(state, &message),
    }
}

/// The local sockets of a user, from the registry: a lookup by socket id each, where asking
/// socketioxide for the user's room built a room query per emit (~8 % of the runtime thread's
/// instructions in the relay, BENCHMARKS.md session 9). A socket that is leaving is skipped; from
/// the shutdown's `take_all` on, nobody is found (clients were told to reconnect and sync).
fn sockets_of(state: &AppState, user: Uuid) -> Vec<SocketRef> {
    let sids = state.realtime.registry.sids(user);
    if sids.is_empty() {
        return Vec::new();
    }
    // Once shutdown closed the namespace, there is no "/" and nobody to reach.
    let Some(ns) = state.realtime.io.of("/") else {
        return Vec::new();
    };
    sids.into_iter()
        .filter_map(|sid| ns.get_socket(sid))
        .collect()
}

fn count_failure(event: &str, e: &SendError) {
    let reason = match e {
        SendError::Socket(SocketError::InternalChannelFull) => "queue_full",
        SendError::Socket(SocketError::Closed) => "closed",
        _ => "other",
    };
    metrics::counter!("jibber_socket_emit_dropped_total", "event" => event.to_owned(), "reason" => reason).increment(1);
}

/// Before an emit to a lagging socket, tells it to resync; true when the socket can take more.
fn settle(socket: &SocketRef, session: Option<&Arc<Session>>) -> bool {
    let Some(session) = session else { return true };
    if !session.lagging.load(Ordering::Relaxed) {
        return true;
    }
    let notice = Notice {
        reason: "events were dropped; fetch /api/v1/sync".to_owned(),
    };
    match socket.emit(events::SYNC_REQUIRED, &notice) {
        Ok(()) => {
            session.lagging.store(false, Ordering::Relaxed);
            true
        }
        Err(e) => {
            count_failure(events::SYNC_REQUIRED, &e);
            false
        }
    }
}

/// Emits to one socket, marking it lagging when its queue is full.
pub fn emit_to_socket<T: Serialize + ?Sized>(socket: &SocketRef, event: &str, data: &T) {
    let session = session(socket);
    if !settle(socket, session.as_ref()) {
        return;
    }
    if let Err(e) = socket.emit(event, data) {
        if let (SendError::Socket(SocketError::InternalChannelFull), Some(s)) = (&e, &session) {
            s.lagging.store(true, Ordering::Relaxed);
        }
        count_failure(event, &e);
    }
}

/// Emits to this node's devices of each user, except one socket.
fn emit_local<T: Serialize + ?Sized>(
    state: &AppState,
    users: &[Uuid],
    event: &str,
    data: &T,
    except: Option<Sid>,
) {
    for user in users {
        for socket in sockets_of(state, *user) {
            if Some(socket.id) != except {
                emit_to_socket(&socket, event, data);
            }
        }
    }
}

/// Emits to every device of each user on every node, except one socket (of this node).
pub fn to_users<T: Serialize + ?Sized>(
    state: &AppState,
    users: &[Uuid],
    event: &str,
    data: &T,
    except: Option<Sid>,
) {
    emit_local(state, users, event, data, except);
    relay_emit(state, users, event, data);
}

/// The other nodes' part of [`to_users`]: they emit to their devices of `users`.
fn relay_emit<T: Serialize + ?Sized>(state: &AppState, users: &[Uuid], event: &str, data: &T) {
    if state.realtime.cluster.is_enabled() {
        match serde_json::to_value(data) {
            Ok(data) => relay(
                state,
                &Relay::Emit {
                    users: users.to_vec(),
                    event: event.to_owned(),
                    data,
                },
            ),
            Err(e) => tracing::error!(error = %e, event, "an event does not serialize"),
        }
    }
}

/// Emits to every device of `user` on every node, except one socket.
pub fn to_user<T: Serialize + ?Sized>(
    state: &AppState,
    user: Uuid,
    event: &str,
    data: &T,
    except: Option<Sid>,
) {
    to_users(state, &[user], event, data, except);
}

/// A message was stored (or found again): `messageSent` to the sender's devices, and for a new
/// message `receivedMessage` to the receiver's devices (with an acknowledgement that marks it
/// delivered) and to the sender's other devices. `ack` is the send's acknowledgement (its JSON
/// text, serialized once by the caller for this and the socket's acknowledgement).
pub fn message_stored<A: Serialize + ?Sized>(
    state: &AppState,
    sent: &Sent,
    ack: &A,
    origin: Option<Sid>,
) {
    let m = &sent.message;
    // The sender's devices are looked up once for both events.
    let senders = sockets_of(state, m.sender);
    for socket in &senders {
        emit_to_socket(socket, events::MESSAGE_SENT, ack);
    }
    relay_emit(state, &[m.sender], events::MESSAGE_SENT, ack);
    if sent.duplicate {
        return;
    }
    for socket in senders.iter().filter(|s| Some(s.id) != origin) {
        emit_to_socket(socket, events::RECEIVED_MESSAGE, m);
    }
    relay_emit(state, &[m.sender], events::RECEIVED_MESSAGE, m);
    deliver_local(state, m);
    // Only a cluster needs the copy (a single node skips cloning the message's seven buffers).
    if state.realtime.cluster.is_enabled() {
        relay(
            state,
            &Relay::Deliver {
                message: Box::new(m.clone()),
            },
        );
    }
}

/// `receivedMessage` with a delivery acknowledgement to the receiver's devices on this node.
fn deliver_local(state: &AppState, m: &Message) {
    for socket in sockets_of(state, m.receiver) {
        deliver_with_ack(state, &socket, m);
    }
}

/// `receivedMessage` to one receiver device; its acknowledgement marks the message delivered.
fn deliver_with_ack(state: &AppState, socket: &SocketRef, m: &Message) {
    let session = session(socket);
    if !settle(socket, session.as_ref()) {
        return;
    }
    match socket
        .timeout(DELIVERY_ACK_TIMEOUT)
        .emit_with_ack::<_, serde::de::IgnoredAny>(events::RECEIVED_MESSAGE, m)
    {
        Ok(ack) => {
            let state = state.clone();
            let (receiver, message, sender) = (m.receiver, m.id, m.sender);
            tokio::spawn(async move {
                // Any answer counts, whatever it carries (`cb()` sends none, which does not
                // decode as a value): only a timeout or a dead socket means "not delivered".
                let answered = matches!(ack.await, Ok(_) | Err(socketioxide::AckError::Decode(_)));
                // Boxed, so that the task spawned for every delivery stays small to move.
                if answered
                    && let Err(e) = Box::pin(crate::service::mark_delivered_from(
                        &state,
                        receiver,
                        message,
                        Some(sender),
                    ))
                    .await
                {
                    tracing::warn!(code = %e.code, "marking a message delivered failed");
                }
            });
        }
        Err(e) => {
            if let (SendError::Socket(SocketError::InternalChannelFull), Some(s)) = (&e, &session) {
                s.lagging.store(true, Ordering::Relaxed);
            }
            count_failure(events::RECEIVED_MESSAGE, &e);
        }
    }
}

/// `messageDelivered` to the sender's devices.
pub fn delivered(state: &AppState, r: &DeliveredReceipt, sender: Uuid) {
    let data = MessageDelivered {
        message_id: r.message_id,
        chat_id: r.chat_id,
        sequence_number: r.sequence_number,
        delivered_at: r.delivered_at,
    };
    to_user(state, sender, events::MESSAGE_DELIVERED, &data, None);
}

/// `messageRead` to the other member (the sender of the messages) and to the reader's devices.
pub fn read(state: &AppState, r: &ReadReceipt, reader: Uuid, other: Uuid) {
    let data = MessageRead {
        chat_id: r.chat_id,
        up_to_sequence: r.up_to_sequence,
        reader,
        read_at: r.read_at,
    };
    to_users(state, &[other, reader], events::MESSAGE_READ, &data, None);
}

/// `newConversation` to the other member of a new chat, as that member sees it; then, since the
/// two now share a chat, `userOnline` to each about the other if that one is online (presence
/// goes only to users who share a chat, so neither had heard of the other's).
pub async fn new_conversation(state: &AppState, chat: Uuid, creator: Uuid, other: Uuid) {
    match state.store.chat_for(other, chat).await {
        Ok(c) => to_user(state, other, events::NEW_CONVERSATION, &c, None),
        Err(e) => tracing::warn!(error = %e, "new chat vanished before it was announced"),
    }
    for online in state.realtime.online_among(vec![creator, other]).await {
        let to = if online == creator { other } else { creator };
        let presence = UserPresence {
            user_id: online,
            last_seen: None,
        };
        to_user(state, to, events::USER_ONLINE, &presence, None);
    }
}

/// `userTyping` to the other member.
pub fn typing(state: &AppState, user: Uuid, chat: Uuid, other: Uuid, is_typing: bool) {
    to_user(
        state,
        other,
        events::USER_TYPING,
        &UserTyping {
            chat_id: chat,
            user_id: user,
            is_typing,
        },
        None,
    );
}

/// A presence event about `user` to everyone who shares a chat with them, and nobody else.
pub async fn presence(
    state: &AppState,
    user: Uuid,
    event: &'static str,
    last_seen: Option<time::OffsetDateTime>,
) {
    match state.store.chat_peers(user).await {
        Ok(peers) => to_users(
            state,
            &peers,
            event,
            &UserPresence {
                user_id: user,
                last_seen,
            },
            None,
        ),
        Err(e) => tracing::warn!(error = %e, "presence: cannot load chat peers"),
    }
}

/// A presence event about `user` to their peers on the OTHER nodes only: after a Redis outage,
/// what this node's own sockets were told at the time never reached the others.
pub async fn presence_elsewhere(
    state: &AppState,
    user: Uuid,
    event: &'static str,
    last_seen: Option<time::OffsetDateTime>,
) {
    let peers = match state.store.chat_peers(user).await {
        Ok(peers) => peers,
        Err(e) => {
            tracing::warn!(error = %e, "presence: cannot load chat peers");
            return;
        }
    };
    let data = UserPresence {
        user_id: user,
        last_seen,
    };
    match serde_json::to_value(&data) {
        Ok(data) => relay(
            state,
            &Relay::Emit {
                users: peers,
                event: event.to_owned(),
                data,
            },
        ),
        Err(e) => tracing::error!(error = %e, event, "an event does not serialize"),
    }
}

/// A fresh `onlineUsers` to each device of `user` on this node (it replaces what the device
/// knew: presence events of other nodes were lost during a Redis outage).
pub async fn online_users(state: &AppState, user: Uuid) {
    let peers = match state.store.chat_peers(user).await {
        Ok(peers) => peers,
        Err(e) => {
            tracing::warn!(error = %e, "presence: cannot load chat peers");
            return;
        }
    };
    let online = OnlineUsers {
        user_ids: state.realtime.online_among(peers).await,
    };
    for socket in sockets_of(state, user) {
        emit_to_socket(&socket, events::ONLINE_USERS, &online);
    }
}

/// Tells every socket of this node to walk `/sync` (events from other nodes may have been lost).
pub fn resync_all(state: &AppState) {
    let sockets = state
        .realtime
        .io
        .of("/")
        .map(|ns| ns.sockets())
        .unwrap_or_default();
    for socket in sockets {
        if let Some(session) = session(&socket) {
            session.lagging.store(true, Ordering::Relaxed);
            settle(&socket, Some(&session));
        }
    }
}

/// `serverShutdown` to every socket of this node.
pub async fn broadcast_shutdown(state: &AppState) {
    let notice = Notice {
        reason: "server shutting down; reconnect".to_owned(),
    };
    if let Err(e) = state
        .realtime
        .io
        .emit(events::SERVER_SHUTDOWN, &notice)
        .await
    {
        tracing::debug!(error = %e, "shutdown notice not sent to every socket");
    }
}
