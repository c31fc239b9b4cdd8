//! Integration tests of `jibber-crypto` through its public API only: tampering and key
//! substitution, rotation, the key bundle, safety numbers, the OPAQUE key stretching's Argon2id
//! parameters, and property tests; and a second, JavaScript implementation on WebCrypto that
//! must reproduce the vectors. The byte-exact test vectors are checked against this crate by
//! its own `vectors` module.

mod bundle;
mod envelope;
mod ksf;
mod props;
mod safety;
mod webcrypto;

use jibber_crypto::{Envelope, KeyRing, MessageContext, PublicKeys, UserKeys, envelope::seal};
use uuid::Uuid;

/// Two users with one chat, as the tests need them.
pub struct Pair {
    pub alice: KeyRing,
    pub bob: KeyRing,
    pub alice_id: Uuid,
    pub bob_id: Uuid,
    pub chat: Uuid,
}

impl Default for Pair {
    fn default() -> Pair {
        Pair::new()
    }
}

impl Pair {
    pub fn new() -> Pair {
        Pair {
            alice: KeyRing::generate(),
            bob: KeyRing::generate(),
            alice_id: Uuid::now_v7(),
            bob_id: Uuid::now_v7(),
            chat: Uuid::now_v7(),
        }
    }

    /// The context of a message from Alice to Bob.
    pub fn context(&self, temp: &str) -> MessageContext {
        MessageContext {
            chat_id: self.chat,
            sender: self.alice_id,
            receiver: self.bob_id,
            client_timestamp_ms: 1_700_000_000_000,
            temp_message_id: temp.to_owned(),
        }
    }

    pub fn alice_keys(&self) -> PublicKeys {
        self.alice.current().public_keys()
    }

    /// Alice seals `text` to Bob's current identity key.
    pub fn seal(&self, ctx: &MessageContext, text: &[u8]) -> Envelope {
        seal(
            self.alice.current(),
            &self.bob.current().public_keys().id_key,
            ctx,
            text,
        )
        .expect("seals")
    }

    /// Bob opens with Alice's current keys in his directory; the error code on failure.
    pub fn open(&self, ctx: &MessageContext, env: &Envelope) -> Result<Vec<u8>, &'static str> {
        jibber_crypto::envelope::open(&self.bob, &[self.alice_keys()], ctx, env)
            .map_err(|e| e.code())
    }
}

/// A generation of keys that is nobody's in the test.
pub fn stranger() -> UserKeys {
    UserKeys::generate()
}
