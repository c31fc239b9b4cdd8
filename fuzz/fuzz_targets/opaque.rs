//! OPAQUE messages as the server receives them: registration request and upload, credential
//! request (for a known and an unknown user) and finalization, each deserialized with the
//! jibber-crypto suite and run through the server's step.
#![no_main]

use std::sync::OnceLock;

use jibber_crypto::Suite;
use jibber_crypto::opaque_ke::ServerSetup;
use jibber_server::auth::opaque;
use libfuzzer_sys::fuzz_target;

fn setup() -> &'static ServerSetup<Suite> {
    static SETUP: OnceLock<ServerSetup<Suite>> = OnceLock::new();
    SETUP.get_or_init(|| opaque::parse_server_setup(&opaque::new_server_setup()).expect("setup"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            let _ = opaque::registration_response(setup(), "fuzz", bytes);
        }
        1 => {
            let _ = opaque::registration_record(bytes);
        }
        2 => {
            // The first half is a stored record (as if from the database), the rest the request.
            let (record, request) = bytes.split_at(bytes.len() / 2);
            let _ = opaque::login_start(setup(), "fuzz", Some(record), request);
            let _ = opaque::login_start(setup(), "fuzz", None, request);
        }
        _ => {
            let (state, finalization) = bytes.split_at(bytes.len() / 2);
            let _ = opaque::login_finish(state, finalization);
        }
    }
});
