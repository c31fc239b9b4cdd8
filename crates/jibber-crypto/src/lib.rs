//! Jibber's end-to-end cryptography, without I/O.
//!
//! Everything a client needs to keep the server blind: per-user keys, the sealed and signed
//! message envelope, the key bundle that carries a user's private keys between devices, and
//! safety numbers. It also holds the OPAQUE cipher suite that is wire-compatible with the npm
//! package `@serenity-kit/opaque` 1.x (facts in shared/notes/opaque.md), used by the server and
//! by every Rust client. Only RustCrypto and dalek primitives are used; nothing is hand-rolled.
//!
//! The byte-level specification, written so the web client can implement it from that page
//! alone, is `docs/crypto.md`; the JSON test vectors in `tests/vectors/` pin every output.
//!
//! Layout:
//! - [`keys`]: X25519 identity and Ed25519 signing keys, one generation ([`UserKeys`]), every
//!   generation after rotations ([`KeyRing`]); secrets are zeroized, redacted, never serialized.
//! - [`envelope`]: [`envelope::seal`], [`envelope::open`] and [`envelope::open_sent`] of a
//!   message: AES-256-GCM under an HKDF-SHA256 key from X25519, signed with Ed25519.
//! - [`bundle`]: [`bundle::seal`] and [`bundle::open`] of a [`KeyRing`] under the OPAQUE export
//!   key.
//! - [`safety`]: [`SafetyNumber`] and the contact key-change check ([`safety::check_keys`]).
//! - [`error`]: [`CryptoError`], whose `code()` strings are part of the protocol.
//! - the crate root: the OPAQUE [`Suite`] and its key-stretching functions.

pub mod bundle;
pub mod envelope;
pub mod error;
pub mod keys;
mod primitives;
pub mod safety;
#[cfg(test)]
mod vectors;

pub use envelope::{Envelope, MessageContext};
pub use error::CryptoError;
pub use keys::{
    IdentityKeyPair, KeyRing, PublicIdKey, PublicKeys, PublicSigningKey, SigningKeyPair, UserKeys,
};
pub use primitives::{IV_LEN, TAG_LEN, decode_b64};
pub use safety::{KeyChange, KeyCheck, SafetyNumber};

pub use opaque_ke;

/// The OPAQUE suite of `@serenity-kit/opaque` 1.x: Ristretto255 OPRF, triple-DH over
/// Ristretto255 with SHA-512, Argon2id key stretching (client side only).
pub struct Suite;

impl opaque_ke::CipherSuite for Suite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeyExchange = opaque_ke::TripleDh<opaque_ke::Ristretto255, sha2::Sha512>;
    type Ksf = argon2::Argon2<'static>;
}

/// Argon2id with serenity-kit's default ("memory-constrained") parameters: m=65536 KiB, t=3,
/// p=4. A client must use exactly these to log in to an account made by the web client.
pub fn serenity_ksf() -> argon2::Argon2<'static> {
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(65536, 3, 4, None).expect("constant Argon2 parameters are valid"),
    )
}

/// A cheap Argon2id for tests only: it keeps the protocol identical but stretches little.
/// Accounts made with it can only be opened with it.
pub fn test_ksf() -> argon2::Argon2<'static> {
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8, 1, 1, None).expect("constant Argon2 parameters are valid"),
    )
}
