//! The backend-independent half of the change feed and of receipts: backends decode their
//! rows into [`FeedRow`]s and fetch what [`wanted`] names; [`assemble`] turns them into
//! [`Change`]s the same way on every backend.

use jibber_proto::api::{Change, Chat, DeliveredReceipt, Message};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Result, StoreError};

/// One `user_changes` row, decoded.
#[derive(Debug, Clone)]
pub struct FeedRow {
    pub cursor: i64,
    pub kind: String,
    pub chat_id: Uuid,
    pub message_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub up_to_seq: Option<i64>,
    pub at: OffsetDateTime,
}

/// The messages and chats the rows refer to: (message ids, chat ids).
pub fn wanted(rows: &[FeedRow]) -> (Vec<Uuid>, Vec<Uuid>) {
    let messages = rows
        .iter()
        .filter(|r| r.kind == "message")
        .filter_map(|r| r.message_id)
        .collect();
    let chats = rows
        .iter()
        .filter(|r| r.kind == "chat")
        .map(|r| r.chat_id)
        .collect();
    (messages, chats)
}

/// The changes in feed order; a row whose message or chat is gone is left out.
pub fn assemble(rows: Vec<FeedRow>, messages: &[Message], chats: &[Chat]) -> Result<Vec<Change>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let cursor = row.cursor;
        match row.kind.as_str() {
            "message" => {
                if let Some(message) = messages.iter().find(|m| Some(m.id) == row.message_id) {
                    out.push(Change::Message {
                        cursor,
                        message: Box::new(message.clone()),
                    });
                }
            }
            "delivered" => out.push(Change::Delivered {
                cursor,
                chat_id: row.chat_id,
                message_id: row.message_id.unwrap_or_default(),
                sequence_number: row.up_to_seq.unwrap_or_default(),
                delivered_at: row.at,
            }),
            "read" => out.push(Change::Read {
                cursor,
                chat_id: row.chat_id,
                reader: row.actor_id.unwrap_or_default(),
                up_to_sequence: row.up_to_seq.unwrap_or_default(),
                read_at: row.at,
            }),
            "chat" => {
                if let Some(chat) = chats.iter().find(|c| c.id == row.chat_id) {
                    out.push(Change::Chat {
                        cursor,
                        chat: Box::new(chat.clone()),
                    });
                }
            }
            other => {
                return Err(StoreError::Backend(format!(
                    "unknown change kind {other:?}"
                )));
            }
        }
    }
    Ok(out)
}

/// The receipt of a mark-delivered that changed nothing: the message was not `me`'s to
/// receive (NOT_FOUND), or it had been delivered (or read) before.
pub fn unchanged_delivery(me: Uuid, message: &Message) -> Result<DeliveredReceipt> {
    if message.receiver != me {
        return Err(StoreError::NotFound);
    }
    Ok(DeliveredReceipt {
        message_id: message.id,
        chat_id: message.chat_id,
        sequence_number: message.sequence_number,
        delivered_at: message
            .delivered_at
            .or(message.read_at)
            .unwrap_or(message.created_at),
        changed: false,
    })
}
