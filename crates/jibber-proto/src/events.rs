//! Socket.IO event names and payloads (API.md, "Realtime").

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ErrorCode;

// Client → server.
pub const SEND_MESSAGE: &str = "sendMessage";
pub const MARK_DELIVERED: &str = "markMessageAsDelivered";
pub const MARK_READ: &str = "markMessageAsRead";
pub const SET_ACTIVE_CHAT: &str = "setActiveChatId";
pub const TYPING: &str = "typing";
pub const HEARTBEAT: &str = "heartbeat";
pub const USER_AWAY: &str = "userAway";
pub const USER_BACK: &str = "userBack";
pub const PING: &str = "ping";
pub const REFRESH_TOKEN: &str = "refreshToken";

// Server → client.
pub const RECEIVED_MESSAGE: &str = "receivedMessage";
pub const MESSAGE_SENT: &str = "messageSent";
pub const MESSAGE_DELIVERED: &str = "messageDelivered";
pub const MESSAGE_READ: &str = "messageRead";
pub const USER_TYPING: &str = "userTyping";
pub const USER_ONLINE: &str = "userOnline";
pub const USER_OFFLINE: &str = "userOffline";
pub const NEW_CONVERSATION: &str = "newConversation";
pub const PONG: &str = "pong";
pub const SESSION_EXPIRED: &str = "sessionExpired";
pub const ERROR: &str = "error";
/// Sent on connect: which of the user's chat peers are online now (an addition to API.md).
pub const ONLINE_USERS: &str = "onlineUsers";
/// Sent when events to this socket had to be dropped (a full send queue): walk `/sync`.
pub const SYNC_REQUIRED: &str = "syncRequired";
/// Sent to every socket when the server begins shutting down; clients reconnect (elsewhere).
pub const SERVER_SHUTDOWN: &str = "serverShutdown";

/// The handshake's `auth` object.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HandshakeAuth {
    #[serde(default)]
    pub token: Option<String>,
}

/// The answer of every acknowledged event: `{ok: true, data}` or `{ok: false, error}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Ack<T> {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EventError>,
}

/// The error of a refused event (also the payload of the `error` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventError {
    pub code: ErrorCode,
    pub message: String,
    /// The event that was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// For RATE_LIMITED: when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkDelivered {
    pub message_id: Uuid,
}

/// `{chatId, upToSequence}` or `{messageId}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkRead {
    #[serde(default)]
    pub chat_id: Option<Uuid>,
    #[serde(default)]
    pub up_to_sequence: Option<i64>,
    #[serde(default)]
    pub message_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetActiveChat {
    /// A chat id, or "" for none.
    pub active_chat_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Typing {
    pub chat_id: Uuid,
    pub is_typing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshToken {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTyping {
    pub chat_id: Uuid,
    pub user_id: Uuid,
    pub is_typing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPresence {
    pub user_id: Uuid,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_seen: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OnlineUsers {
    pub user_ids: Vec<Uuid>,
}

/// `messageRead`: messages of `chatId` up to a sequence were read by `reader`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRead {
    pub chat_id: Uuid,
    pub up_to_sequence: i64,
    pub reader: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: OffsetDateTime,
}

/// `messageDelivered`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDelivered {
    pub message_id: Uuid,
    pub chat_id: Uuid,
    pub sequence_number: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub delivered_at: OffsetDateTime,
}

/// `sessionExpired` and `serverShutdown`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub reason: String,
}
