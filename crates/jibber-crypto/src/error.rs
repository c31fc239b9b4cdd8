//! The one error type of every E2E operation, with the stable codes of docs/crypto.md.

/// Why a key, an envelope or a key bundle was refused.
///
/// [`CryptoError::code`] is part of the protocol (the web client reports the same strings);
/// the `&'static str` carried by some variants names the field or the rule and is for logs and
/// tests only. No variant ever carries key material, plaintext or ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// Malformed input that is not a key: bad base64url, a wrong `iv` or signature length, a
    /// too-short ciphertext or bundle, a bundle whose content does not parse.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// A key of the wrong length, an Ed25519 key that is not a canonical point of large order,
    /// an X25519 key of small order, or an OPAQUE export key that is not 64 bytes.
    #[error("invalid key format: {0}")]
    InvalidKeyFormat(&'static str),
    /// A required field is absent or empty (the name says which).
    #[error("missing field: {0}")]
    MissingFields(&'static str),
    /// The Ed25519 signature does not verify over the header, `iv` and `cipher`.
    #[error("bad signature")]
    BadSignature,
    /// AES-256-GCM refused the ciphertext (wrong key, or a bundle opened with another export key).
    #[error("decryption failed")]
    DecryptionFailed,
    /// The version byte is not one this implementation reads.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    /// The message's keys are not the ones the caller's directory or key ring holds.
    #[error("key mismatch: {0}")]
    KeyMismatch(&'static str),
}

impl CryptoError {
    /// The stable code, as in docs/crypto.md: `INVALID_INPUT`, `INVALID_KEY_FORMAT`,
    /// `MISSING_FIELDS`, `BAD_SIGNATURE`, `DECRYPTION_FAILED`, `UNSUPPORTED_VERSION`,
    /// `KEY_MISMATCH`.
    pub fn code(&self) -> &'static str {
        match self {
            CryptoError::InvalidInput(_) => "INVALID_INPUT",
            CryptoError::InvalidKeyFormat(_) => "INVALID_KEY_FORMAT",
            CryptoError::MissingFields(_) => "MISSING_FIELDS",
            CryptoError::BadSignature => "BAD_SIGNATURE",
            CryptoError::DecryptionFailed => "DECRYPTION_FAILED",
            CryptoError::UnsupportedVersion(_) => "UNSUPPORTED_VERSION",
            CryptoError::KeyMismatch(_) => "KEY_MISMATCH",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_strings() {
        let all = [
            (CryptoError::InvalidInput("x"), "INVALID_INPUT"),
            (CryptoError::InvalidKeyFormat("x"), "INVALID_KEY_FORMAT"),
            (CryptoError::MissingFields("x"), "MISSING_FIELDS"),
            (CryptoError::BadSignature, "BAD_SIGNATURE"),
            (CryptoError::DecryptionFailed, "DECRYPTION_FAILED"),
            (CryptoError::UnsupportedVersion(2), "UNSUPPORTED_VERSION"),
            (CryptoError::KeyMismatch("x"), "KEY_MISMATCH"),
        ];
        for (err, code) in all {
            assert_eq!(err.code(), code);
        }
    }
}
