//! Socket event payloads: the bytes of an event's argument are read as one JSON value, handed
//! over unparsed (a `RawValue`, as the Socket.IO parser does), then parsed by the gateway into
//! each client → server event type (and, for what fails, again through a `Value`), and a
//! `sendMessage` goes on through the send validation. The whole input is also read as an
//! event's text (`["name", payload]`) by the one-pass parse the gateway tries first, which must
//! agree with the general way whenever it takes a payload. Any input gets Ok or an error, never
//! a panic.
#![no_main]

use jibber_proto::api::SendMessageRequest;
use jibber_proto::events::{
    HandshakeAuth, MarkDelivered, MarkRead, RefreshToken, SetActiveChat, Typing,
};
use jibber_server::realtime::events::{parse_args, parse_event};
use jibber_server::service::new_message;
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(fast) = parse_args::<serde_json::Value>(text)
    {
        let args: Vec<&RawValue> = serde_json::from_str(text).expect("the one pass took it");
        let general: serde_json::Value =
            parse_event("fuzz", args.get(1).copied()).expect("the general way takes it too");
        assert_eq!(fast, general);
        let _ = parse_args::<SendMessageRequest>(text);
        let _ = parse_args::<MarkRead>(text);
    }
    let Ok(value) = serde_json::from_slice::<&RawValue>(data) else {
        return;
    };
    let v = || Some(value);
    if let Ok(req) = parse_event::<SendMessageRequest>("sendMessage", v()) {
        let chat = req.chat_id.unwrap_or_else(uuid::Uuid::nil);
        let _ = new_message(64 * 1024, uuid::Uuid::now_v7(), chat, req);
    }
    let _ = parse_event::<MarkDelivered>("markMessageAsDelivered", v());
    let _ = parse_event::<MarkRead>("markMessageAsRead", v());
    let _ = parse_event::<SetActiveChat>("setActiveChatId", v());
    let _ = parse_event::<Typing>("typing", v());
    let _ = parse_event::<RefreshToken>("refreshToken", v());
    let _ = parse_event::<HandshakeAuth>("connect", v());
});
