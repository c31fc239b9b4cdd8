//! REST bodies and the shared objects (user, chat, message, sync change).
//!
//! Field names are camelCase on the wire. Requests reject unknown shapes with an error that
//! names the field; responses are what the server promises to send.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::B64;

/// `{"success": true, "data": ..., "pagination"?: ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Envelope<T> {
    pub success: bool,
    pub data: T,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
}

/// Where a paginated list goes on. Only the cursor that fits the list is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    pub has_more: bool,
    /// Opaque cursor for contacts and chats: pass it back as `cursor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// For message history: pass it back as `before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
    /// For per-chat sync: pass it back as `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_since: Option<i64>,
}

// ---------------------------------------------------------------- auth

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterStartRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.-]{3,32}$"))]
    pub username: String,
    pub registration_request: B64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterStartResponse {
    pub registration_response: B64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterFinishRequest {
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_.-]{3,32}$"))]
    pub username: String,
    pub registration_record: B64,
    pub public_id_key: B64,
    pub public_signing_key: B64,
    pub key_bundle: B64,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginStartRequest {
    pub username: String,
    pub start_login_request: B64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoginStartResponse {
    pub login_id: Uuid,
    pub login_response: B64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginFinishRequest {
    pub login_id: Uuid,
    pub finish_login_request: B64,
}

/// The answer to a successful login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoginFinishResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub user: Me,
}

/// Body of `/auth/refresh`, `/auth/refresh-socket-token` and `/auth/logout` for clients that
/// do not use the cookie.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RefreshResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenResponse {
    pub access_token: String,
    pub expires_in: u64,
}

// ---------------------------------------------------------------- users

/// The caller's own account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: Uuid,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub public_id_key: B64,
    pub public_signing_key: B64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What anyone signed in may see of another user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PublicUser {
    pub id: Uuid,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub public_id_key: B64,
    pub public_signing_key: B64,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_seen: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct KeyBundleResponse {
    pub key_bundle: B64,
    pub public_id_key: B64,
    pub public_signing_key: B64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeysRequest {
    pub public_id_key: B64,
    pub public_signing_key: B64,
    pub key_bundle: B64,
}

// ---------------------------------------------------------------- chats

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateChatRequest {
    pub user_id: Uuid,
}

/// A 1:1 chat as its member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    pub id: Uuid,
    pub other_user: PublicUser,
    pub last_message: Option<Message>,
    pub unread_count: i64,
    /// The highest sequence number in the chat (0 when empty).
    pub last_sequence: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The last activity: creation or the newest message.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

// ---------------------------------------------------------------- messages

/// Delivery state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "sent" => Some(DeliveryStatus::Sent),
            "delivered" => Some(DeliveryStatus::Delivered),
            "read" => Some(DeliveryStatus::Read),
            _ => None,
        }
    }
}

/// `sendMessage` (socket) and `POST /messages/:chatId` (REST). The sender is never part of the
/// body: the server takes it from the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessageRequest {
    /// Required on the socket; on REST the path names the chat and a body value must match it.
    #[serde(default)]
    pub chat_id: Option<Uuid>,
    pub receiver: Uuid,
    pub cipher: B64,
    pub iv: B64,
    pub signature: B64,
    pub sender_public_id_key: B64,
    pub sender_public_signing_key: B64,
    pub receiver_public_id_key: B64,
    #[serde(with = "time::serde::rfc3339")]
    pub client_timestamp: OffsetDateTime,
    pub temp_message_id: String,
}

/// The acknowledgement of a stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SendMessageResponse {
    pub message_id: Uuid,
    pub temp_message_id: String,
    pub chat_id: Uuid,
    pub sequence_number: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// True when this send repeated an earlier one and nothing new was stored.
    pub duplicate: bool,
}

/// The message object of API.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: Uuid,
    pub chat_id: Uuid,
    pub sender: Uuid,
    pub receiver: Uuid,
    pub cipher: B64,
    pub iv: B64,
    pub signature: B64,
    pub sender_public_id_key: B64,
    pub sender_public_signing_key: B64,
    pub receiver_public_id_key: B64,
    pub sequence_number: i64,
    pub delivery_status: DeliveryStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub client_timestamp: OffsetDateTime,
    pub temp_message_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_at: Option<OffsetDateTime>,
}

/// `POST /messages/:chatId/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkReadRequest {
    pub up_to_sequence: i64,
}

/// The result of marking a message delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeliveredReceipt {
    pub message_id: Uuid,
    pub chat_id: Uuid,
    pub sequence_number: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub delivered_at: OffsetDateTime,
    /// False when the message had been marked delivered (or read) before.
    pub changed: bool,
}

/// The result of marking a chat read up to a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    pub chat_id: Uuid,
    pub up_to_sequence: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: OffsetDateTime,
    /// How many messages this call turned to read.
    pub marked: i64,
    /// The caller's unread count in the chat afterwards.
    pub unread_count: i64,
}

// ---------------------------------------------------------------- sync

/// One entry of the caller's change feed (`GET /sync`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Change {
    /// A new message in one of the caller's chats (sent or received).
    #[serde(rename_all = "camelCase")]
    Message { cursor: i64, message: Box<Message> },
    /// A message the caller sent reached a device of its receiver.
    #[serde(rename_all = "camelCase")]
    Delivered {
        cursor: i64,
        chat_id: Uuid,
        message_id: Uuid,
        sequence_number: i64,
        #[serde(with = "time::serde::rfc3339")]
        delivered_at: OffsetDateTime,
    },
    /// Messages up to a sequence were read by `reader` (the caller or the other member).
    #[serde(rename_all = "camelCase")]
    Read {
        cursor: i64,
        chat_id: Uuid,
        reader: Uuid,
        up_to_sequence: i64,
        #[serde(with = "time::serde::rfc3339")]
        read_at: OffsetDateTime,
    },
    /// A chat the caller is a member of was created.
    #[serde(rename_all = "camelCase")]
    Chat { cursor: i64, chat: Box<Chat> },
}

impl Change {
    pub fn cursor(&self) -> i64 {
        match self {
            Change::Message { cursor, .. }
            | Change::Delivered { cursor, .. }
            | Change::Read { cursor, .. }
            | Change::Chat { cursor, .. } => *cursor,
        }
    }
}

/// `GET /sync?since=`: changes in order, and the cursor to pass next time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyncResponse {
    pub changes: Vec<Change>,
    pub next_cursor: i64,
    pub has_more: bool,
}

// ---------------------------------------------------------------- operations

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// "ok", "degraded" (Redis down: this node serves its own clients) or "unavailable".
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub database: DatabaseHealth,
    /// The link to the other nodes (only when `redis_url` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisHealth>,
    pub sockets: SocketHealth,
    pub memory: MemoryHealth,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DatabaseHealth {
    pub ok: bool,
    pub backend: String,
    pub latency_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The Redis link between nodes: `ok` false means this node serves its own clients only.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RedisHealth {
    pub ok: bool,
    pub latency_ms: f64,
    /// This node's id in the cluster.
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SocketHealth {
    pub connected: u64,
    pub users: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MemoryHealth {
    pub rss_bytes: u64,
}
