//! A user's keys: the X25519 identity key, the Ed25519 signing key, one generation of both
//! ([`UserKeys`]) and every generation the user has had ([`KeyRing`]).
//!
//! Public keys are validated when they are built, so a [`PublicIdKey`] is always 32 bytes and
//! a [`PublicSigningKey`] always a canonical Ed25519 point of large order. Private keys are
//! zeroized on drop, print as `[redacted]`, and implement no serde trait: they leave the
//! process only inside a sealed key bundle ([`crate::bundle`]).

use ed25519_dalek::Signer;
use rand_core::{CryptoRngCore, OsRng};
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// Length of every public and private key, in bytes.
pub const KEY_LEN: usize = 32;

/// Most key generations a ring (and so a key bundle) holds; see docs/crypto.md.
pub const MAX_GENERATIONS: usize = 255;

fn key_array(bytes: &[u8], what: &'static str) -> Result<[u8; KEY_LEN], CryptoError> {
    <[u8; KEY_LEN]>::try_from(bytes).map_err(|_| CryptoError::InvalidKeyFormat(what))
}

/// A short, harmless prefix of a public key for `Debug` output.
fn short(bytes: &[u8; KEY_LEN]) -> String {
    let mut s = jibber_proto::B64::encode(bytes);
    s.truncate(8);
    s
}

// ---------------------------------------------------------------- public keys

/// A public X25519 identity key (`publicIdKey` on the wire): 32 bytes (RFC 7748).
///
/// Every 32-byte string is an X25519 public key; keys of small order are refused where they
/// are used (the shared secret would be all zero), with `INVALID_KEY_FORMAT`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicIdKey([u8; KEY_LEN]);

impl PublicIdKey {
    /// Takes exactly 32 bytes; anything else is `INVALID_KEY_FORMAT`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        key_array(bytes, "public identity key must be 32 bytes").map(PublicIdKey)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub fn to_bytes(self) -> [u8; KEY_LEN] {
        self.0
    }
}

impl std::fmt::Debug for PublicIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicIdKey({}…)", short(&self.0))
    }
}

/// A public Ed25519 signing key (`publicSigningKey` on the wire): 32 bytes (RFC 8032).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicSigningKey(ed25519_dalek::VerifyingKey);

impl PublicSigningKey {
    /// Takes exactly 32 bytes that decode to an Ed25519 point, encode back to the same bytes
    /// (canonical), and are not of small order; anything else is `INVALID_KEY_FORMAT`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes = key_array(bytes, "public signing key must be 32 bytes")?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CryptoError::InvalidKeyFormat("public signing key is not a point"))?;
        if key.to_edwards().compress().to_bytes() != bytes {
            return Err(CryptoError::InvalidKeyFormat(
                "public signing key is not canonically encoded",
            ));
        }
        if key.is_weak() {
            return Err(CryptoError::InvalidKeyFormat(
                "public signing key is of small order",
            ));
        }
        Ok(PublicSigningKey(key))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }

    pub fn to_bytes(self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// Strict Ed25519 verification (RFC 8032, canonical `S` and `R`, no small-order `R`).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), CryptoError> {
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl std::hash::Hash for PublicSigningKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl std::fmt::Debug for PublicSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicSigningKey({}…)", short(self.as_bytes()))
    }
}

/// A user's two public keys, as a directory (`GET /users/:id`) lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKeys {
    pub id_key: PublicIdKey,
    pub signing_key: PublicSigningKey,
}

impl PublicKeys {
    /// Validates both keys (see [`PublicIdKey::from_bytes`], [`PublicSigningKey::from_bytes`]).
    pub fn from_bytes(id_key: &[u8], signing_key: &[u8]) -> Result<Self, CryptoError> {
        Ok(PublicKeys {
            id_key: PublicIdKey::from_bytes(id_key)?,
            signing_key: PublicSigningKey::from_bytes(signing_key)?,
        })
    }
}

// ---------------------------------------------------------------- private keys

/// An X25519 identity key pair. The private key is zeroized on drop and never printed.
#[derive(Clone)]
pub struct IdentityKeyPair {
    secret: x25519_dalek::StaticSecret,
    public: PublicIdKey,
}

impl IdentityKeyPair {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A new key from the given cryptographic random generator.
    pub fn generate_with(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_secret(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// Imports a private key: 32 bytes, used as RFC 7748 specifies (clamped when used, stored
    /// as given). Anything else is `INVALID_KEY_FORMAT`.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes = Zeroizing::new(key_array(bytes, "private identity key must be 32 bytes")?);
        Ok(Self::from_secret(x25519_dalek::StaticSecret::from(*bytes)))
    }

    fn from_secret(secret: x25519_dalek::StaticSecret) -> Self {
        let public = PublicIdKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        IdentityKeyPair { secret, public }
    }

    /// Exports the private key (32 bytes, as imported or generated).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    pub fn public(&self) -> PublicIdKey {
        self.public
    }

    /// X25519 with `peer`; a peer key of small order (all-zero result) is `INVALID_KEY_FORMAT`.
    pub(crate) fn diffie_hellman(
        &self,
        peer: &PublicIdKey,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        let shared = self
            .secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() {
            return Err(CryptoError::InvalidKeyFormat(
                "public identity key is of small order",
            ));
        }
        Ok(Zeroizing::new(*shared.as_bytes()))
    }
}

impl std::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// An Ed25519 signing key pair. The private key (the RFC 8032 32-byte seed) is zeroized on drop
/// and never printed.
#[derive(Clone)]
pub struct SigningKeyPair {
    key: ed25519_dalek::SigningKey,
}

impl SigningKeyPair {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A new key from the given cryptographic random generator.
    pub fn generate_with(rng: &mut impl CryptoRngCore) -> Self {
        SigningKeyPair {
            key: ed25519_dalek::SigningKey::generate(rng),
        }
    }

    /// Imports a private key: the 32-byte RFC 8032 seed. Anything else is `INVALID_KEY_FORMAT`.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let seed = Zeroizing::new(key_array(bytes, "private signing key must be 32 bytes")?);
        Ok(SigningKeyPair {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Exports the private key (the 32-byte seed).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.key.to_bytes())
    }

    pub fn public(&self) -> PublicSigningKey {
        PublicSigningKey(self.key.verifying_key())
    }

    /// A deterministic RFC 8032 Ed25519 signature.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("public", &self.public())
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// One generation of a user's keys: the identity key and the signing key made together.
#[derive(Clone, Debug)]
pub struct UserKeys {
    identity: IdentityKeyPair,
    signing: SigningKeyPair,
}

impl UserKeys {
    /// A new generation from the operating system's random generator.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A new generation from the given cryptographic random generator.
    pub fn generate_with(rng: &mut impl CryptoRngCore) -> Self {
        UserKeys {
            identity: IdentityKeyPair::generate_with(rng),
            signing: SigningKeyPair::generate_with(rng),
        }
    }

    pub fn new(identity: IdentityKeyPair, signing: SigningKeyPair) -> Self {
        UserKeys { identity, signing }
    }

    /// Imports a generation from its two private keys (32 bytes each).
    pub fn from_secret_bytes(identity: &[u8], signing: &[u8]) -> Result<Self, CryptoError> {
        Ok(UserKeys {
            identity: IdentityKeyPair::from_secret_bytes(identity)?,
            signing: SigningKeyPair::from_secret_bytes(signing)?,
        })
    }

    pub fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    pub fn signing(&self) -> &SigningKeyPair {
        &self.signing
    }

    /// The public keys to publish (`publicIdKey`, `publicSigningKey`).
    pub fn public_keys(&self) -> PublicKeys {
        PublicKeys {
            id_key: self.identity.public(),
            signing_key: self.signing.public(),
        }
    }
}

/// Every generation of one user's keys, oldest first; the last is the current one.
///
/// New messages are sealed with the current generation; opening picks the generation whose
/// identity key the message names, so messages to and from older keys stay readable after a
/// rotation. A ring is never empty and holds at most [`MAX_GENERATIONS`].
#[derive(Clone)]
pub struct KeyRing {
    generations: Vec<UserKeys>,
}

impl KeyRing {
    /// A ring with one generation.
    pub fn new(current: UserKeys) -> Self {
        KeyRing {
            generations: vec![current],
        }
    }

    /// A ring with one new generation from the operating system's random generator.
    pub fn generate() -> Self {
        Self::new(UserKeys::generate())
    }

    /// A ring from its generations, oldest first: 1 to [`MAX_GENERATIONS`], else
    /// `INVALID_INPUT`.
    pub fn from_generations(generations: Vec<UserKeys>) -> Result<Self, CryptoError> {
        if generations.is_empty() || generations.len() > MAX_GENERATIONS {
            return Err(CryptoError::InvalidInput(
                "a key ring holds 1 to 255 generations",
            ));
        }
        Ok(KeyRing { generations })
    }

    /// The generation new messages are sealed with.
    pub fn current(&self) -> &UserKeys {
        self.generations
            .last()
            .expect("a key ring is never empty: every constructor checks")
    }

    /// Every generation, oldest first.
    pub fn generations(&self) -> &[UserKeys] {
        &self.generations
    }

    /// Makes a new generation (operating system randomness) the current one and keeps the old
    /// ones. A full ring is `INVALID_INPUT`.
    pub fn rotate(&mut self) -> Result<&UserKeys, CryptoError> {
        self.rotate_to(UserKeys::generate())
    }

    /// Makes `keys` the current generation and keeps the old ones. A full ring is
    /// `INVALID_INPUT`.
    pub fn rotate_to(&mut self, keys: UserKeys) -> Result<&UserKeys, CryptoError> {
        if self.generations.len() >= MAX_GENERATIONS {
            return Err(CryptoError::InvalidInput(
                "a key ring holds 1 to 255 generations",
            ));
        }
        self.generations.push(keys);
        Ok(self.current())
    }

    /// The newest generation whose identity key is `id_key`.
    pub fn find_identity(&self, id_key: &PublicIdKey) -> Option<&UserKeys> {
        self.generations
            .iter()
            .rev()
            .find(|g| g.identity.public() == *id_key)
    }
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("generations", &self.generations.len())
            .field("current", &self.current().public_keys())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_export_round_trip() {
        let keys = UserKeys::generate();
        let again = UserKeys::from_secret_bytes(
            &keys.identity().secret_bytes()[..],
            &keys.signing().secret_bytes()[..],
        )
        .expect("exported keys import");
        assert_eq!(keys.public_keys(), again.public_keys());
        let public = keys.public_keys();
        let parsed =
            PublicKeys::from_bytes(public.id_key.as_bytes(), public.signing_key.as_bytes())
                .expect("public keys parse");
        assert_eq!(parsed, public);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let keys = UserKeys::generate();
        let secret = jibber_proto::B64::encode(&keys.identity().secret_bytes()[..]);
        let seed = jibber_proto::B64::encode(&keys.signing().secret_bytes()[..]);
        let ring = KeyRing::new(keys.clone());
        for text in [format!("{keys:?}"), format!("{ring:?}")] {
            assert!(
                !text.contains(&secret[..8]) && !text.contains(&seed[..8]),
                "{text}"
            );
        }
        assert!(format!("{keys:?}").contains("[redacted]"));
    }

    #[test]
    fn bad_public_keys_are_invalid_key_format() {
        assert_eq!(
            PublicIdKey::from_bytes(&[1; 31]).map_err(|e| e.code()),
            Err("INVALID_KEY_FORMAT")
        );
        // The identity point (y = 1) decodes but has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicSigningKey::from_bytes(&identity).map_err(|e| e.code()),
            Err("INVALID_KEY_FORMAT")
        );
        // y = 2 is not on the curve.
        let mut off = [0u8; 32];
        off[0] = 2;
        assert_eq!(
            PublicSigningKey::from_bytes(&off).map_err(|e| e.code()),
            Err("INVALID_KEY_FORMAT")
        );
    }

    #[test]
    fn rotation_keeps_old_generations() {
        let mut ring = KeyRing::generate();
        let old = ring.current().public_keys();
        let new = ring.rotate().expect("room").public_keys();
        assert_ne!(old, new);
        assert_eq!(ring.generations().len(), 2);
        assert_eq!(ring.current().public_keys(), new);
        assert!(ring.find_identity(&old.id_key).is_some());
    }
}
