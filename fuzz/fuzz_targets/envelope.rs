//! The crypto envelope: a received message object (JSON) is checked and opened with a real key
//! ring. The sender's keys from the input are trusted, so that the signature check and the
//! decryption are reached too; only a genuine message may open, and nothing may panic.
#![no_main]

use std::sync::OnceLock;

use jibber_crypto::envelope::{Envelope, open};
use jibber_crypto::{KeyRing, MessageContext, PublicIdKey, PublicKeys, PublicSigningKey, UserKeys};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| {
        KeyRing::new(UserKeys::from_secret_bytes(&[7u8; 32], &[9u8; 32]).expect("keys"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(envelope) = Envelope::from_json(&value) else {
        return;
    };
    let (Ok(id_key), Ok(signing_key)) = (
        PublicIdKey::from_bytes(envelope.sender_public_id_key.as_bytes()),
        PublicSigningKey::from_bytes(envelope.sender_public_signing_key.as_bytes()),
    ) else {
        return;
    };
    let context = MessageContext {
        chat_id: uuid::Uuid::nil(),
        sender: uuid::Uuid::nil(),
        receiver: uuid::Uuid::nil(),
        client_timestamp_ms: value["ts"].as_i64().unwrap_or(0),
        temp_message_id: value["tempMessageId"].as_str().unwrap_or("t").to_owned(),
    };
    let _ = open(
        ring(),
        &[PublicKeys {
            id_key,
            signing_key,
        }],
        &context,
        &envelope,
    );
});
