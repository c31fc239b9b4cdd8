//! Property tests: random messages round-trip; any tampering is refused; no input panics.

use jibber_crypto::envelope::{open, open_sent, seal};
use jibber_crypto::{
    Envelope, KeyRing, MessageContext, PublicKeys, SafetyNumber, UserKeys, bundle,
};
use jibber_proto::B64;
use proptest::prelude::*;
use uuid::Uuid;

fn keys(seed: [u8; 64]) -> UserKeys {
    UserKeys::from_secret_bytes(&seed[..32], &seed[32..]).expect("32-byte secrets import")
}

fn context() -> impl Strategy<Value = MessageContext> {
    (
        any::<u128>(),
        any::<u128>(),
        any::<u128>(),
        any::<i64>(),
        "\\PC{1,40}",
    )
        .prop_map(|(chat, sender, receiver, ms, temp)| MessageContext {
            chat_id: Uuid::from_u128(chat),
            sender: Uuid::from_u128(sender),
            receiver: Uuid::from_u128(receiver),
            client_timestamp_ms: ms,
            temp_message_id: temp,
        })
}

fn field(e: &mut Envelope, i: usize) -> &mut B64 {
    match i % 6 {
        0 => &mut e.cipher,
        1 => &mut e.iv,
        2 => &mut e.signature,
        3 => &mut e.sender_public_id_key,
        4 => &mut e.sender_public_signing_key,
        _ => &mut e.receiver_public_id_key,
    }
}

proptest! {
    #[test]
    fn messages_round_trip(
        a in any::<[u8; 64]>(),
        b in any::<[u8; 64]>(),
        ctx in context(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (alice, bob) = (KeyRing::new(keys(a)), KeyRing::new(keys(b)));
        let bob_keys = bob.current().public_keys();
        let env = seal(alice.current(), &bob_keys.id_key, &ctx, &plaintext).expect("seals");
        let alice_keys = [alice.current().public_keys()];
        prop_assert_eq!(open(&bob, &alice_keys, &ctx, &env).expect("opens"), plaintext.clone());
        prop_assert_eq!(open_sent(&alice, &[bob_keys.id_key], &ctx, &env).expect("opens"), plaintext);
    }

    #[test]
    fn tampering_is_refused(
        a in any::<[u8; 64]>(),
        b in any::<[u8; 64]>(),
        ctx in context(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        which in 0usize..6,
        position in any::<usize>(),
        bit in 0u8..8,
    ) {
        let (alice, bob) = (KeyRing::new(keys(a)), KeyRing::new(keys(b)));
        let env = seal(alice.current(), &bob.current().public_keys().id_key, &ctx, &plaintext)
            .expect("seals");
        let mut t = env.clone();
        let bytes = &mut field(&mut t, which).0;
        let i = position % bytes.len();
        bytes[i] ^= 1 << bit;
        prop_assert!(open(&bob, &[alice.current().public_keys()], &ctx, &t).is_err());
    }

    #[test]
    fn garbage_never_panics(
        fields in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 6),
        ctx in context(),
        first_byte_is_version in any::<bool>(),
    ) {
        let ring = KeyRing::new(keys([9; 64]));
        let mut env = Envelope {
            cipher: B64(fields[0].clone()),
            iv: B64(fields[1].clone()),
            signature: B64(fields[2].clone()),
            sender_public_id_key: B64(fields[3].clone()),
            sender_public_signing_key: B64(fields[4].clone()),
            receiver_public_id_key: B64(fields[5].clone()),
        };
        if first_byte_is_version && !env.cipher.is_empty() {
            env.cipher.0[0] = 1;
        }
        let expected: Vec<PublicKeys> = PublicKeys::from_bytes(&fields[3], &fields[4]).into_iter().collect();
        prop_assert!(open(&ring, &expected, &ctx, &env).is_err());
        prop_assert!(open_sent(&ring, &[], &ctx, &env).is_err());
        let json = serde_json::to_value(&env).expect("serializes");
        let parsed = Envelope::from_json(&json);
        prop_assert!(parsed.is_ok() || env.cipher.is_empty() || fields.iter().any(Vec::is_empty));
    }

    #[test]
    fn garbage_bundles_never_panic(
        sealed in proptest::collection::vec(any::<u8>(), 0..200),
        export_key in proptest::collection::vec(any::<u8>(), 0..70),
    ) {
        prop_assert!(bundle::open(&sealed, &export_key).is_err());
    }

    #[test]
    fn bundles_round_trip(
        seeds in proptest::collection::vec(any::<[u8; 64]>(), 1..5),
        export_key in any::<[u8; 32]>(),
    ) {
        let export_key = [export_key, export_key].concat();
        let ring = KeyRing::from_generations(seeds.iter().copied().map(keys).collect())
            .expect("1 to 4 generations");
        let back = bundle::open(&bundle::seal(&ring, &export_key).expect("seals"), &export_key)
            .expect("opens");
        let publics = |r: &KeyRing| r.generations().iter().map(UserKeys::public_keys).collect::<Vec<_>>();
        prop_assert_eq!(publics(&back), publics(&ring));
    }
}

proptest! {
    // 5,200 SHA-512 rounds per side are slow in an unoptimised test build: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn safety_numbers_are_symmetric(a in any::<[u8; 64]>(), b in any::<[u8; 64]>(), ia in any::<u128>(), ib in any::<u128>()) {
        let (ka, kb) = (keys(a).public_keys(), keys(b).public_keys());
        let (ia, ib) = (Uuid::from_u128(ia), Uuid::from_u128(ib));
        prop_assert_eq!(SafetyNumber::new((&ia, &ka), (&ib, &kb)), SafetyNumber::new((&ib, &kb), (&ia, &ka)));
    }
}
