//! Access tokens: arbitrary strings through the verify path (header, algorithm, signature,
//! claims), and arbitrary claims correctly signed with the server's key, which must only pass
//! when they are a well-formed, unexpired access token.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use jibber_server::auth::tokens::AccessTokens;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

const SECRET: &str = "fuzz-secret-0123456789-0123456789-0123456789";

fn tokens() -> &'static AccessTokens {
    static T: OnceLock<AccessTokens> = OnceLock::new();
    T.get_or_init(|| AccessTokens::new(&SecretString::from(SECRET), Duration::from_secs(900)))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tokens().verify(text);
    }
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        let signed = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        if let Ok(c) = tokens().verify(&signed) {
            assert_eq!(c.typ, "access");
            assert_eq!(c.iss, "jibber");
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            assert!(c.exp + 5 >= now, "an expired token passed: {claims}");
        }
    }
});
