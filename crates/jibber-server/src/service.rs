//! The operations REST and the realtime gateway share, so both validate and store alike.

use jibber_proto::api::{DeliveredReceipt, ReadReceipt, SendMessageRequest, SendMessageResponse};
use jibber_proto::{ErrorCode, IV_MAX, PUBLIC_KEY_MAX, SIGNATURE_MAX, TEMP_MESSAGE_ID_MAX};
use jibber_store::util::now_ms;
use jibber_store::{NewMessage, Sent, StoreError};
use serde_json::value::RawValue;
use socketioxide::socket::Sid;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::http::auth::validate_bytes;
use crate::realtime::notify;
use crate::state::AppState;

/// A store NotFound on a chat-scoped call means "no such chat for you".
pub fn chat_not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("chat"),
        other => other.into(),
    }
}

/// Validates a send and turns it into a [`NewMessage`] from `sender` (the token's user);
/// `max_message_bytes` bounds the ciphertext.
pub fn new_message(
    max_message_bytes: usize,
    sender: Uuid,
    chat_id: Uuid,
    req: SendMessageRequest,
) -> ApiResult<NewMessage> {
    if req.chat_id.is_some_and(|c| c != chat_id) {
        return Err(ApiError::validation(
            "chatId: does not match the chat in the path",
        ));
    }
    if req.receiver == sender {
        return Err(ApiError::validation("receiver: cannot be the sender"));
    }
    let max = max_message_bytes;
    if req.cipher.len() > max {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("cipher: larger than {max} bytes"),
        ));
    }
    validate_bytes("cipher", req.cipher.as_bytes(), max)?;
    validate_bytes("iv", req.iv.as_bytes(), IV_MAX)?;
    validate_bytes("signature", req.signature.as_bytes(), SIGNATURE_MAX)?;
    validate_bytes(
        "senderPublicIdKey",
        req.sender_public_id_key.as_bytes(),
        PUBLIC_KEY_MAX,
    )?;
    validate_bytes(
        "senderPublicSigningKey",
        req.sender_public_signing_key.as_bytes(),
        PUBLIC_KEY_MAX,
    )?;
    validate_bytes(
        "receiverPublicIdKey",
        req.receiver_public_id_key.as_bytes(),
        PUBLIC_KEY_MAX,
    )?;
    let temp = req.temp_message_id;
    if temp.is_empty() || temp.len() > TEMP_MESSAGE_ID_MAX || temp.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "tempMessageId: must be 1 to {TEMP_MESSAGE_ID_MAX} printable characters"
        )));
    }
    Ok(NewMessage {
        id: Uuid::now_v7(),
        chat_id,
        sender,
        receiver: req.receiver,
        cipher: req.cipher.into_bytes(),
        iv: req.iv.into_bytes(),
        signature: req.signature.into_bytes(),
        sender_public_id_key: req.sender_public_id_key.into_bytes(),
        sender_public_signing_key: req.sender_public_signing_key.into_bytes(),
        receiver_public_id_key: req.receiver_public_id_key.into_bytes(),
        client_timestamp: req.client_timestamp,
        temp_message_id: temp,
        created_at: now_ms(),
    })
}

/// A stored send: the message, and its acknowledgement as the JSON text that `messageSent`
/// carried (a socket's acknowledgement repeats that text instead of serializing it again).
pub struct Stored {
    pub sent: Sent,
    pub ack: Box<RawValue>,
}

/// Stores a message durably (or finds the first copy of a repeated send), then fans it out to
/// the devices (`origin` is the sending socket, which gets the acknowledgement instead). The
/// receiver's unread count rises only when none of their devices has the chat open.
pub async fn send_message(
    state: &AppState,
    sender: Uuid,
    chat_id: Uuid,
    req: SendMessageRequest,
    origin: Option<Sid>,
) -> ApiResult<Stored> {
    let mut msg = new_message(state.settings.max_message_bytes, sender, chat_id, req)?;
    // This chat's sends queue in the store one at a time and fan out in the same order, but
    // commit together (realtime/order.rs): devices get the chat's messages in order.
    let mut turn = state.realtime.send_order.lock(chat_id).await;
    msg.created_at = now_ms();
    let count_unread = !state.realtime.chat_open(msg.receiver, chat_id).await;
    let queued = state.store.queue_message(msg, count_unread).await;
    turn.queued();
    let stored = queued.await;
    turn.wait_previous().await;
    let sent = stored.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::new(
            ErrorCode::Conflict,
            "tempMessageId: already used for a message in another chat",
        ),
        other => chat_not_found(other),
    })?;
    metrics::counter!("jibber_messages_total", "result" => if sent.duplicate { "duplicate" } else { "stored" })
        .increment(1);
    let ack = ack_of(&sent);
    match serde_json::value::to_raw_value(&ack) {
        Ok(raw) => {
            notify::message_stored(state, &sent, &*raw, origin);
            Ok(Stored { sent, ack: raw })
        }
        // Not expected (a plain struct); the devices are told all the same, and the sender's
        // retry finds the message stored.
        Err(e) => {
            notify::message_stored(state, &sent, &ack, origin);
            Err(ApiError::internal(format_args!(
                "the acknowledgement does not serialize: {e}"
            )))
        }
    }
}

/// The acknowledgement of a send (REST answer, socket ack and `messageSent`).
pub fn ack_of(sent: &Sent) -> SendMessageResponse {
    let m = &sent.message;
    SendMessageResponse {
        message_id: m.id,
        temp_message_id: m.temp_message_id.clone(),
        chat_id: m.chat_id,
        sequence_number: m.sequence_number,
        created_at: m.created_at,
        duplicate: sent.duplicate,
    }
}

/// Marks a message delivered (its receiver only) and, the first time, tells the sender.
pub async fn mark_delivered(
    state: &AppState,
    me: Uuid,
    message: Uuid,
) -> ApiResult<DeliveredReceipt> {
    mark_delivered_from(state, me, message, None).await
}

/// [`mark_delivered`] when the caller already knows the message's sender (the gateway, which
/// delivered the message itself), which saves looking the message up again.
pub async fn mark_delivered_from(
    state: &AppState,
    me: Uuid,
    message: Uuid,
    sender: Option<Uuid>,
) -> ApiResult<DeliveredReceipt> {
    let not_found = |e| match e {
        StoreError::NotFound => ApiError::not_found("message"),
        other => ApiError::from(other),
    };
    let receipt = state
        .store
        .mark_delivered(me, message, now_ms())
        .await
        .map_err(not_found)?;
    if receipt.changed {
        let sender = match sender {
            Some(sender) => sender,
            None => {
                state
                    .store
                    .message_for(me, message)
                    .await
                    .map_err(not_found)?
                    .sender
            }
        };
        notify::delivered(state, &receipt, sender);
    }
    Ok(receipt)
}

/// Marks the caller's received messages up to a sequence read, resets the unread count, and
/// tells the other member (and the caller's devices) when anything changed.
pub async fn mark_read(
    state: &AppState,
    me: Uuid,
    chat: Uuid,
    up_to: i64,
) -> ApiResult<ReadReceipt> {
    if up_to < 0 {
        return Err(ApiError::validation("upToSequence: must be zero or more"));
    }
    let receipt = state
        .store
        .mark_read(me, chat, up_to, now_ms())
        .await
        .map_err(chat_not_found)?;
    if receipt.marked > 0 {
        let (_, other) = state
            .store
            .chat_members(me, chat)
            .await
            .map_err(chat_not_found)?;
        notify::read(state, &receipt, me, other);
    }
    Ok(receipt)
}
