//! REST bodies: raw bytes through the body parser of the `ApiJson` extractor into every request
//! type, then the validation the handlers run on them.
#![no_main]

use jibber_proto::api::{
    CreateChatRequest, LoginFinishRequest, LoginStartRequest, MarkReadRequest, RefreshRequest,
    RegisterFinishRequest, RegisterStartRequest, RotateKeysRequest, SendMessageRequest,
};
use jibber_server::http::auth::{validate_bytes, validate_username};
use jibber_server::http::extract::parse_json_body;
use jibber_server::service::new_message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_json_body::<RegisterStartRequest>(data) {
        let _ = validate_username(&r.username);
        let _ = validate_bytes("registrationRequest", r.registration_request.as_bytes(), 64);
    }
    if let Ok(r) = parse_json_body::<RegisterFinishRequest>(data) {
        let _ = validate_username(&r.username);
        let _ = validate_bytes(
            "keyBundle",
            r.key_bundle.as_bytes(),
            jibber_proto::KEY_BUNDLE_MAX,
        );
    }
    let _ = parse_json_body::<LoginStartRequest>(data);
    let _ = parse_json_body::<LoginFinishRequest>(data);
    let _ = parse_json_body::<RefreshRequest>(data);
    let _ = parse_json_body::<RotateKeysRequest>(data);
    let _ = parse_json_body::<CreateChatRequest>(data);
    let _ = parse_json_body::<MarkReadRequest>(data);
    if let Ok(req) = parse_json_body::<SendMessageRequest>(data) {
        let chat = req.chat_id.unwrap_or_else(uuid::Uuid::nil);
        let _ = new_message(64 * 1024, uuid::Uuid::now_v7(), chat, req);
    }
});
