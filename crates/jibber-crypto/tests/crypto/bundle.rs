//! The key bundle: round trip, rotation, wrong export key, tampering, limits.

use jibber_crypto::bundle::{self, BUNDLE_VERSION, EXPORT_KEY_LEN, MIN_SEALED_LEN};
use jibber_crypto::keys::MAX_GENERATIONS;
use jibber_crypto::{KeyRing, UserKeys};

fn publics(ring: &KeyRing) -> Vec<jibber_crypto::PublicKeys> {
    ring.generations()
        .iter()
        .map(UserKeys::public_keys)
        .collect()
}

fn secrets(ring: &KeyRing) -> Vec<[u8; 64]> {
    ring.generations()
        .iter()
        .map(|g| {
            let mut out = [0u8; 64];
            out[..32].copy_from_slice(&g.identity().secret_bytes()[..]);
            out[32..].copy_from_slice(&g.signing().secret_bytes()[..]);
            out
        })
        .collect()
}

#[test]
fn round_trip_with_rotations() {
    let export_key = [0x42u8; EXPORT_KEY_LEN];
    let mut ring = KeyRing::generate();
    ring.rotate().expect("room");
    ring.rotate().expect("room");
    let sealed = bundle::seal(&ring, &export_key).expect("seals");
    assert_eq!(sealed[0], BUNDLE_VERSION);
    assert_eq!(sealed.len(), MIN_SEALED_LEN + 1 + 3 * 64);
    let back = bundle::open(&sealed, &export_key).expect("opens");
    assert_eq!(publics(&back), publics(&ring));
    assert_eq!(secrets(&back), secrets(&ring));
    assert_eq!(back.current().public_keys(), ring.current().public_keys());
    // A fresh iv every time.
    assert_ne!(sealed, bundle::seal(&ring, &export_key).expect("seals"));
}

#[test]
fn refusals() {
    let export_key = [1u8; EXPORT_KEY_LEN];
    let ring = KeyRing::generate();
    let sealed = bundle::seal(&ring, &export_key).expect("seals");
    let code = |s: &[u8], k: &[u8]| bundle::open(s, k).map(|_| ()).map_err(|e| e.code());
    assert_eq!(
        code(&sealed, &[2u8; EXPORT_KEY_LEN]),
        Err("DECRYPTION_FAILED")
    );
    assert_eq!(code(&sealed, &export_key[..32]), Err("INVALID_KEY_FORMAT"));
    assert_eq!(
        bundle::seal(&ring, &[0u8; 65]).map_err(|e| e.code()),
        Err("INVALID_KEY_FORMAT")
    );
    assert_eq!(code(&[], &export_key), Err("MISSING_FIELDS"));
    assert_eq!(
        code(&sealed[..MIN_SEALED_LEN - 1], &export_key),
        Err("INVALID_INPUT")
    );
    for i in 0..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x04;
        let expected = if i == 0 {
            "UNSUPPORTED_VERSION"
        } else {
            "DECRYPTION_FAILED"
        };
        assert_eq!(code(&t, &export_key), Err(expected), "byte {i}");
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert_eq!(code(&longer, &export_key), Err("DECRYPTION_FAILED"));
}

#[test]
fn a_ring_holds_at_most_255_generations() {
    let mut ring = KeyRing::generate();
    for _ in 1..MAX_GENERATIONS {
        ring.rotate().expect("room");
    }
    assert_eq!(
        ring.rotate().map(|_| ()).map_err(|e| e.code()),
        Err("INVALID_INPUT")
    );
    let export_key = [3u8; EXPORT_KEY_LEN];
    let sealed = bundle::seal(&ring, &export_key).expect("seals");
    // A full bundle still fits the server's limit.
    assert!(
        sealed.len() <= jibber_proto::KEY_BUNDLE_MAX,
        "{}",
        sealed.len()
    );
    assert_eq!(
        bundle::open(&sealed, &export_key)
            .expect("opens")
            .generations()
            .len(),
        MAX_GENERATIONS
    );
    assert_eq!(
        KeyRing::from_generations(Vec::new())
            .map(|_| ())
            .map_err(|e| e.code()),
        Err("INVALID_INPUT")
    );
}
