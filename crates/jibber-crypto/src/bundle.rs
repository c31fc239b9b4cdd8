//! The key bundle: a user's [`KeyRing`] sealed under a key derived from the OPAQUE export key,
//! stored by the server (`keyBundle`) and opened by any device of the user after login.
//!
//! Layout and labels: docs/crypto.md, "Key bundle"; vectors: `tests/vectors/key_bundle.json`.

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::keys::{KEY_LEN, KeyRing, MAX_GENERATIONS, UserKeys};
use crate::primitives::{IV_LEN, TAG_LEN, aes_gcm_open, aes_gcm_seal, hkdf_sha256};

/// The bundle version this crate writes and reads: the first byte of a sealed bundle.
pub const BUNDLE_VERSION: u8 = 1;
/// Length of the OPAQUE export key, bytes.
pub const EXPORT_KEY_LEN: usize = 64;
/// HKDF `info` of the bundle key (the salt is empty).
pub const BUNDLE_KEY_LABEL: &[u8] = b"jibber/v1/key-bundle";
/// Bytes per generation in the plaintext: the X25519 private key, then the Ed25519 seed.
pub const GENERATION_LEN: usize = 2 * KEY_LEN;
/// The shortest sealed bundle that can hold anything: version, iv and tag.
pub const MIN_SEALED_LEN: usize = 1 + IV_LEN + TAG_LEN;

/// Seals the ring under the OPAQUE `export_key` (64 bytes, else `INVALID_KEY_FORMAT`) with a
/// fresh random `iv`. Panics only if the operating system's random generator fails.
pub fn seal(ring: &KeyRing, export_key: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut iv = [0u8; IV_LEN];
    OsRng.fill_bytes(&mut iv);
    seal_with_iv(ring, export_key, &iv)
}

/// [`seal`] with a chosen `iv`: for the test vectors only.
pub(crate) fn seal_with_iv(
    ring: &KeyRing,
    export_key: &[u8],
    iv: &[u8; IV_LEN],
) -> Result<Vec<u8>, CryptoError> {
    let key = bundle_key(export_key)?;
    let plaintext = encode_ring(ring);
    seal_plaintext(&key, iv, &plaintext)
}

/// Encrypts an already encoded plaintext (the vectors also seal malformed ones).
pub(crate) fn seal_plaintext(
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(MIN_SEALED_LEN + plaintext.len());
    out.push(BUNDLE_VERSION);
    out.extend_from_slice(iv);
    out.extend(aes_gcm_seal(key, iv, plaintext, &[BUNDLE_VERSION])?);
    Ok(out)
}

/// Opens a sealed bundle with the OPAQUE `export_key` and returns the ring.
///
/// Checks, in order: export key length (`INVALID_KEY_FORMAT`), empty bundle
/// (`MISSING_FIELDS`), version byte (`UNSUPPORTED_VERSION`), length (`INVALID_INPUT`),
/// AES-GCM (`DECRYPTION_FAILED`), plaintext layout (`INVALID_INPUT`).
pub fn open(sealed: &[u8], export_key: &[u8]) -> Result<KeyRing, CryptoError> {
    let key = bundle_key(export_key)?;
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(CryptoError::MissingFields("keyBundle"));
    };
    if version != BUNDLE_VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    if sealed.len() < MIN_SEALED_LEN {
        return Err(CryptoError::InvalidInput("keyBundle is too short"));
    }
    let (iv, ciphertext) = rest.split_at(IV_LEN);
    let iv = <[u8; IV_LEN]>::try_from(iv).expect("split_at(IV_LEN) yields IV_LEN bytes");
    let plaintext = Zeroizing::new(aes_gcm_open(&key, &iv, ciphertext, &[version])?);
    decode_ring(&plaintext)
}

/// The AES-256 key of the bundle: HKDF-SHA256(salt = empty, ikm = export key,
/// info = [`BUNDLE_KEY_LABEL`]).
pub(crate) fn bundle_key(export_key: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    if export_key.len() != EXPORT_KEY_LEN {
        return Err(CryptoError::InvalidKeyFormat("export key must be 64 bytes"));
    }
    Ok(hkdf_sha256(&[], export_key, BUNDLE_KEY_LABEL))
}

/// The plaintext: `count (u8, 1..=255) || count × (X25519 private key (32) || Ed25519 seed
/// (32))`, oldest generation first.
pub(crate) fn encode_ring(ring: &KeyRing) -> Zeroizing<Vec<u8>> {
    let generations = ring.generations();
    let mut out = Zeroizing::new(Vec::with_capacity(1 + generations.len() * GENERATION_LEN));
    let count = u8::try_from(generations.len()).expect("a key ring holds at most 255 generations");
    out.push(count);
    for g in generations {
        out.extend_from_slice(&g.identity().secret_bytes()[..]);
        out.extend_from_slice(&g.signing().secret_bytes()[..]);
    }
    out
}

fn decode_ring(plaintext: &[u8]) -> Result<KeyRing, CryptoError> {
    let Some((&count, body)) = plaintext.split_first() else {
        return Err(CryptoError::InvalidInput("key bundle content is empty"));
    };
    let count = usize::from(count);
    if count == 0 || count > MAX_GENERATIONS || body.len() != count * GENERATION_LEN {
        return Err(CryptoError::InvalidInput(
            "key bundle content has the wrong length",
        ));
    }
    let generations = body
        .chunks_exact(GENERATION_LEN)
        .map(|g| {
            let (identity, signing) = g.split_at(KEY_LEN);
            UserKeys::from_secret_bytes(identity, signing)
        })
        .collect::<Result<Vec<_>, _>>()?;
    KeyRing::from_generations(generations)
}
