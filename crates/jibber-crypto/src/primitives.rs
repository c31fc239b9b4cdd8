//! Thin wrappers over the RustCrypto primitives, so each is used one way everywhere.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::CryptoError;

/// AES-GCM nonce length (`iv`), bytes.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length, bytes.
pub const TAG_LEN: usize = 16;

/// HKDF-SHA256 (RFC 5869) with a 32-byte output.
pub(crate) fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut okm[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

/// AES-256-GCM encryption; the result is the ciphertext followed by the 16-byte tag. Only a
/// plaintext beyond GCM's limit (64 GiB) fails, with `INVALID_INPUT`.
pub(crate) fn aes_gcm_seal(
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
    plaintext: &[u8],
    ad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes256Gcm::new(key.into())
        .encrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: plaintext,
                aad: ad,
            },
        )
        .map_err(|_| CryptoError::InvalidInput("plaintext too long for AES-GCM"))
}

/// AES-256-GCM decryption of ciphertext-and-tag; any failure is `DECRYPTION_FAILED`.
pub(crate) fn aes_gcm_open(
    key: &[u8; 32],
    iv: &[u8; IV_LEN],
    sealed: &[u8],
    ad: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    Aes256Gcm::new(key.into())
        .decrypt(
            Nonce::from_slice(iv),
            Payload {
                msg: sealed,
                aad: ad,
            },
        )
        .map_err(|_| CryptoError::DecryptionFailed)
}

/// Strict base64url without padding (docs/crypto.md, "Encodings"): padding, other alphabets,
/// whitespace and non-zero trailing bits are `INVALID_INPUT` naming `field`.
pub fn decode_b64(field: &'static str, s: &str) -> Result<Vec<u8>, CryptoError> {
    jibber_proto::B64::decode(s).map_err(|_| CryptoError::InvalidInput(field))
}
