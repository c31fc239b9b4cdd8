//! The key stretching of OPAQUE: `serenity_ksf` must be exactly the Argon2id of
//! `@serenity-kit/opaque` 1.x (notes/opaque.md), or no account made by the web client opens.

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};

/// The parameters as the hash itself records them (the PHC string names the algorithm, the
/// version and every cost), not as the constructor was called.
#[test]
fn serenity_ksf_is_argon2id_v19_with_serenity_kits_parameters() {
    let salt = SaltString::encode_b64(&[0u8; 16]).expect("salt");
    let phc = jibber_crypto::serenity_ksf()
        .hash_password(b"password123", &salt)
        .expect("hash")
        .to_string();
    let parsed = PasswordHash::new(&phc).expect("PHC string");
    assert_eq!(parsed.algorithm.as_str(), "argon2id", "{phc}");
    assert_eq!(parsed.version, Some(0x13), "{phc}");
    let cost = |name: &str| parsed.params.get_decimal(name);
    // Memory 64 MiB (in KiB), three passes, four lanes: serenity-kit's "memory-constrained".
    assert_eq!(cost("m"), Some(65536), "{phc}");
    assert_eq!(cost("t"), Some(3), "{phc}");
    assert_eq!(cost("p"), Some(4), "{phc}");
    // The argon2 crate's own default is not it (a native client must not fall back to it).
    let default = argon2::Argon2::default()
        .hash_password(b"password123", &salt)
        .expect("hash")
        .to_string();
    assert_ne!(
        PasswordHash::new(&default).expect("PHC").params,
        parsed.params
    );
}
