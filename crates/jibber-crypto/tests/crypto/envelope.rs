//! Sealing and opening: every field tampered with, keys substituted, rotation, own messages.

use jibber_crypto::envelope::{self, open, open_sent, seal};
use jibber_crypto::{Envelope, KeyRing, MessageContext, PublicIdKey, PublicKeys, PublicSigningKey};
use jibber_proto::B64;
use jibber_proto::api::{DeliveryStatus, Message};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Pair, stranger};

type Field = fn(&mut Envelope) -> &mut B64;

const FIELDS: [(&str, Field); 6] = [
    ("cipher", |e| &mut e.cipher),
    ("iv", |e| &mut e.iv),
    ("signature", |e| &mut e.signature),
    ("senderPublicIdKey", |e| &mut e.sender_public_id_key),
    ("senderPublicSigningKey", |e| {
        &mut e.sender_public_signing_key
    }),
    ("receiverPublicIdKey", |e| &mut e.receiver_public_id_key),
];

#[test]
fn round_trip() {
    let p = Pair::new();
    let ctx = p.context("t1");
    let env = p.seal(&ctx, "héllo".as_bytes());
    assert_eq!(env.iv.len(), 12);
    assert_eq!(env.signature.len(), 64);
    assert_eq!(env.cipher.as_bytes()[0], envelope::ENVELOPE_VERSION);
    assert_eq!(env.cipher.len(), 1 + "héllo".len() + 16);
    assert_eq!(p.open(&ctx, &env), Ok("héllo".as_bytes().to_vec()));
    // A fresh iv every time.
    assert_ne!(p.seal(&ctx, b"x").iv, p.seal(&ctx, b"x").iv);
}

/// The expected code for one flipped bit at `index` of a field (docs/crypto.md, "Tampering").
fn expected_after_flip(field: &str, index: usize, tampered: &[u8]) -> &'static str {
    match field {
        "cipher" if index == 0 => "UNSUPPORTED_VERSION",
        "cipher" | "iv" | "signature" => "BAD_SIGNATURE",
        "senderPublicSigningKey" => match PublicSigningKey::from_bytes(tampered) {
            Err(_) => "INVALID_KEY_FORMAT",
            Ok(_) => "KEY_MISMATCH",
        },
        "senderPublicIdKey" | "receiverPublicIdKey" => "KEY_MISMATCH",
        other => panic!("unknown field {other}"),
    }
}

#[test]
fn every_bit_of_every_field_is_checked() {
    let p = Pair::new();
    let ctx = p.context("t2");
    let env = p.seal(&ctx, b"tamper with me");
    for (name, field) in FIELDS {
        let len = field(&mut env.clone()).len();
        for index in 0..len {
            for bit in [0x01u8, 0x80] {
                let mut t = env.clone();
                let bytes = &mut field(&mut t).0;
                bytes[index] ^= bit;
                let tampered = bytes.clone();
                assert_eq!(
                    p.open(&ctx, &t),
                    Err(expected_after_flip(name, index, &tampered)),
                    "{name}[{index}] ^= {bit:#x}"
                );
            }
        }
    }
}

#[test]
fn every_header_field_is_authenticated() {
    let p = Pair::new();
    let ctx = p.context("t3");
    let env = p.seal(&ctx, b"header");
    type Change = (&'static str, fn(&mut MessageContext));
    let changes: [Change; 7] = [
        ("chatId", |c| c.chat_id = Uuid::now_v7()),
        ("sender", |c| c.sender = Uuid::now_v7()),
        ("receiver", |c| c.receiver = Uuid::now_v7()),
        ("clientTimestamp +1", |c| c.client_timestamp_ms += 1),
        ("clientTimestamp sign", |c| {
            c.client_timestamp_ms = -c.client_timestamp_ms
        }),
        ("tempMessageId", |c| c.temp_message_id.push('!')),
        ("tempMessageId case", |c| {
            c.temp_message_id = c.temp_message_id.to_uppercase()
        }),
    ];
    for (name, change) in changes {
        let mut c = ctx.clone();
        change(&mut c);
        assert_eq!(p.open(&c, &env), Err("BAD_SIGNATURE"), "{name}");
    }
    // Sender and receiver swapped: still the same message key, but the header differs.
    let mut swapped = ctx.clone();
    std::mem::swap(&mut swapped.sender, &mut swapped.receiver);
    assert_eq!(p.open(&swapped, &env), Err("BAD_SIGNATURE"));
}

#[test]
fn lengths_and_missing_fields() {
    let p = Pair::new();
    let ctx = p.context("t4");
    let env = p.seal(&ctx, b"lengths");
    for (name, field) in FIELDS {
        let mut t = env.clone();
        field(&mut t).0.clear();
        assert_eq!(p.open(&ctx, &t), Err("MISSING_FIELDS"), "{name} empty");

        let mut shorter = env.clone();
        field(&mut shorter).0.pop();
        let mut longer = env.clone();
        field(&mut longer).0.push(0);
        let (short_code, long_code) = match name {
            "cipher" => ("BAD_SIGNATURE", "BAD_SIGNATURE"),
            "iv" | "signature" => ("INVALID_INPUT", "INVALID_INPUT"),
            _ => ("INVALID_KEY_FORMAT", "INVALID_KEY_FORMAT"),
        };
        assert_eq!(
            p.open(&ctx, &shorter),
            Err(short_code),
            "{name} one byte short"
        );
        assert_eq!(
            p.open(&ctx, &longer),
            Err(long_code),
            "{name} one byte long"
        );
    }
    let mut t = env.clone();
    t.cipher.0.truncate(envelope::MIN_CIPHER_LEN - 1);
    assert_eq!(p.open(&ctx, &t), Err("INVALID_INPUT"));
    let mut empty_temp = ctx.clone();
    empty_temp.temp_message_id.clear();
    assert_eq!(p.open(&empty_temp, &env), Err("MISSING_FIELDS"));
}

#[test]
fn substituted_keys() {
    let p = Pair::new();
    let ctx = p.context("t5");
    let env = p.seal(&ctx, b"keys");
    let mallory = stranger();
    let m = mallory.public_keys();

    // Mallory seals in Alice's name with her own keys: Bob's directory says those are not Alice's.
    let forged = seal(&mallory, &p.bob.current().public_keys().id_key, &ctx, b"hi").expect("seals");
    assert_eq!(p.open(&ctx, &forged), Err("KEY_MISMATCH"));
    // ...and if Bob's directory had been poisoned with Mallory's keys, the message opens: the
    // directory is what is trusted, which is what safety numbers are for.
    assert!(open(&p.bob, &[m], &ctx, &forged).is_ok());

    // Keys swapped in place without re-signing.
    let mut t = env.clone();
    t.sender_public_id_key = B64(m.id_key.as_bytes().to_vec());
    assert_eq!(p.open(&ctx, &t), Err("KEY_MISMATCH"));
    let mut t = env.clone();
    t.sender_public_signing_key = B64(m.signing_key.as_bytes().to_vec());
    assert_eq!(p.open(&ctx, &t), Err("KEY_MISMATCH"));
    let mut t = env.clone();
    t.receiver_public_id_key = B64(m.id_key.as_bytes().to_vec());
    assert_eq!(p.open(&ctx, &t), Err("KEY_MISMATCH"));

    // Substituted by keys the checks accept: the signature catches it.
    let mut bob = p.bob.clone();
    let old_bob = bob.current().public_keys();
    let new_bob = bob.rotate().expect("room").public_keys();
    let to_new = seal(p.alice.current(), &new_bob.id_key, &ctx, b"to new").expect("seals");
    let mut t = to_new.clone();
    t.receiver_public_id_key = B64(old_bob.id_key.as_bytes().to_vec());
    let code = |r: Result<Vec<u8>, jibber_crypto::CryptoError>| r.map_err(|e| e.code());
    assert_eq!(
        code(open(&bob, &[p.alice_keys()], &ctx, &t)),
        Err("BAD_SIGNATURE")
    );
    assert_eq!(
        code(open(&bob, &[p.alice_keys()], &ctx, &to_new)),
        Ok(b"to new".to_vec())
    );

    // The sender's keys of two generations mixed: a pair the directory never listed.
    let mut alice = p.alice.clone();
    let a0 = alice.current().public_keys();
    let a1 = alice.rotate().expect("room").public_keys();
    let from_new = seal(alice.current(), &new_bob.id_key, &ctx, b"mixed").expect("seals");
    let mut t = from_new.clone();
    t.sender_public_signing_key = B64(a0.signing_key.as_bytes().to_vec());
    assert_eq!(code(open(&bob, &[a0, a1], &ctx, &t)), Err("KEY_MISMATCH"));
    // Both of the older pair, which the directory lists: signed by the newer key, so refused.
    t.sender_public_id_key = B64(a0.id_key.as_bytes().to_vec());
    assert_eq!(code(open(&bob, &[a0, a1], &ctx, &t)), Err("BAD_SIGNATURE"));
}

#[test]
fn small_order_keys_are_refused() {
    let p = Pair::new();
    let ctx = p.context("t6");
    let zero = PublicIdKey::from_bytes(&[0; 32]).expect("32 bytes");
    assert_eq!(
        seal(p.alice.current(), &zero, &ctx, b"x").map_err(|e| e.code()),
        Err("INVALID_KEY_FORMAT")
    );
    // u = 1 has order 4 on Curve25519.
    let mut one = [0u8; 32];
    one[0] = 1;
    let one = PublicIdKey::from_bytes(&one).expect("32 bytes");
    assert_eq!(
        seal(p.alice.current(), &one, &ctx, b"x").map_err(|e| e.code()),
        Err("INVALID_KEY_FORMAT")
    );
}

#[test]
fn seal_refuses_an_empty_temp_message_id() {
    let p = Pair::new();
    let ctx = p.context("");
    assert_eq!(
        seal(
            p.alice.current(),
            &p.bob.current().public_keys().id_key,
            &ctx,
            b"x"
        )
        .map_err(|e| e.code()),
        Err("MISSING_FIELDS")
    );
}

#[test]
fn rotation_keeps_old_messages_readable() {
    let mut p = Pair::new();
    let ctx = p.context("t7");
    let before = p.seal(&ctx, b"before");
    let alice_before = p.alice_keys();

    // Bob rotates: the old message is to his old key, a new one to his new key.
    p.bob.rotate().expect("room");
    assert_eq!(p.open(&ctx, &before), Ok(b"before".to_vec()));
    let after_bob = p.seal(&ctx, b"after bob");
    assert_eq!(
        after_bob.receiver_public_id_key.as_bytes(),
        p.bob.current().public_keys().id_key.as_bytes()
    );
    assert_eq!(p.open(&ctx, &after_bob), Ok(b"after bob".to_vec()));

    // Alice rotates: Bob's directory keeps her older keys so the old messages still open.
    p.alice.rotate().expect("room");
    let after_alice = p.seal(&ctx, b"after alice");
    let directory = [alice_before, p.alice_keys()];
    for (env, text) in [
        (&before, &b"before"[..]),
        (&after_alice, &b"after alice"[..]),
    ] {
        assert_eq!(
            open(&p.bob, &directory, &ctx, env).map_err(|e| e.code()),
            Ok(text.to_vec())
        );
    }
    // With only her current keys listed, the old message is a key mismatch.
    assert_eq!(p.open(&ctx, &before), Err("KEY_MISMATCH"));

    // After a trip through the key bundle the rotated rings open everything too.
    let export_key = [7u8; 64];
    let bob = jibber_crypto::bundle::open(
        &jibber_crypto::bundle::seal(&p.bob, &export_key).expect("seals"),
        &export_key,
    )
    .expect("opens");
    assert_eq!(bob.generations().len(), 2);
    for (env, text) in [(&before, &b"before"[..]), (&after_bob, &b"after bob"[..])] {
        assert_eq!(
            open(&bob, &directory, &ctx, env).map_err(|e| e.code()),
            Ok(text.to_vec())
        );
    }
}

#[test]
fn the_sender_reads_its_own_messages() {
    let mut p = Pair::new();
    let ctx = p.context("t8");
    let env = p.seal(&ctx, b"mine");
    let bob_id = p.bob.current().public_keys().id_key;
    let code = |r: Result<Vec<u8>, jibber_crypto::CryptoError>| r.map_err(|e| e.code());
    assert_eq!(
        code(open_sent(&p.alice, &[bob_id], &ctx, &env)),
        Ok(b"mine".to_vec())
    );
    // After Alice rotates, her ring still holds the generation that sealed it.
    p.alice.rotate().expect("room");
    assert_eq!(
        code(open_sent(&p.alice, &[bob_id], &ctx, &env)),
        Ok(b"mine".to_vec())
    );
    // Bob cannot use open_sent on it (the sender's keys are not in his ring)...
    assert_eq!(
        code(open_sent(&p.bob, &[bob_id], &ctx, &env)),
        Err("KEY_MISMATCH")
    );
    // ...nor Alice open() it as if she had received it.
    assert_eq!(
        code(open(&p.alice, &[p.alice_keys()], &ctx, &env)),
        Err("KEY_MISMATCH")
    );
    let other = stranger().public_keys().id_key;
    assert_eq!(
        code(open_sent(&p.alice, &[other], &ctx, &env)),
        Err("KEY_MISMATCH")
    );
}

#[test]
fn through_the_wire_message_object() {
    let p = Pair::new();
    let ms = 1_700_000_123_456_i64;
    let mut ctx = p.context("wire-1");
    ctx.client_timestamp_ms = ms;
    let env = p.seal(&ctx, b"over the wire");
    let message = Message {
        id: Uuid::now_v7(),
        chat_id: ctx.chat_id,
        sender: ctx.sender,
        receiver: ctx.receiver,
        cipher: env.cipher.clone(),
        iv: env.iv.clone(),
        signature: env.signature.clone(),
        sender_public_id_key: env.sender_public_id_key.clone(),
        sender_public_signing_key: env.sender_public_signing_key.clone(),
        receiver_public_id_key: env.receiver_public_id_key.clone(),
        sequence_number: 1,
        delivery_status: DeliveryStatus::Sent,
        client_timestamp: OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .expect("in range"),
        temp_message_id: ctx.temp_message_id.clone(),
        created_at: OffsetDateTime::now_utc(),
        delivered_at: None,
        read_at: None,
    };
    let json = serde_json::to_value(&message).expect("serializes");
    // The JSON path a client without the proto types takes.
    let from_json = Envelope::from_json(&json).expect("parses");
    assert_eq!(from_json, env);
    // The typed path.
    let back: Message = serde_json::from_value(json).expect("deserializes");
    let ctx2 = MessageContext::from_message(&back);
    assert_eq!(ctx2, ctx);
    assert_eq!(
        p.open(&ctx2, &Envelope::from_message(&back)),
        Ok(b"over the wire".to_vec())
    );
}

#[test]
fn envelope_from_json_reports_the_first_problem() {
    let p = Pair::new();
    let env = p.seal(&p.context("t9"), b"json");
    let good = serde_json::to_value(&env).expect("serializes");
    let code = |v: serde_json::Value| Envelope::from_json(&v).map(|_| ()).map_err(|e| e.code());
    assert_eq!(code(good.clone()), Ok(()));
    assert_eq!(code(serde_json::json!("string")), Err("INVALID_INPUT"));
    for name in envelope::ENVELOPE_FIELDS {
        let mut v = good.clone();
        v[name] = serde_json::Value::Null;
        assert_eq!(code(v.clone()), Err("MISSING_FIELDS"), "{name} null");
        v[name] = serde_json::json!("");
        assert_eq!(code(v.clone()), Err("MISSING_FIELDS"), "{name} empty");
        v.as_object_mut().expect("object").remove(name);
        assert_eq!(code(v.clone()), Err("MISSING_FIELDS"), "{name} absent");
        v[name] = serde_json::json!(["AAAA"]);
        assert_eq!(code(v.clone()), Err("INVALID_INPUT"), "{name} not a string");
        v[name] = serde_json::json!("AAAA=");
        assert_eq!(code(v.clone()), Err("INVALID_INPUT"), "{name} padded");
        v[name] = serde_json::json!("AA AA");
        assert_eq!(code(v), Err("INVALID_INPUT"), "{name} whitespace");
    }
}

#[test]
fn public_keys_round_trip_through_bytes() {
    let ring = KeyRing::generate();
    let k = ring.current().public_keys();
    let back =
        PublicKeys::from_bytes(k.id_key.as_bytes(), k.signing_key.as_bytes()).expect("valid");
    assert_eq!(back, k);
}
