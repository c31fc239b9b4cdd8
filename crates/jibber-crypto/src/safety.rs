//! Safety numbers that two users compare out of band, and the check that tells when a
//! contact's keys changed.
//!
//! Algorithm: docs/crypto.md, "Safety numbers"; vectors: `tests/vectors/safety_number.json`.

use sha2::{Digest, Sha512};
use uuid::Uuid;

use crate::keys::PublicKeys;

/// Version of the fingerprint algorithm, hashed in first as a big-endian `u16`.
pub const FINGERPRINT_VERSION: u16 = 1;
/// SHA-512 iterations per fingerprint.
pub const FINGERPRINT_ITERATIONS: usize = 5200;
/// Digits of one user's half.
pub const FINGERPRINT_DIGITS: usize = 30;

/// A 60-digit number, the same for both users of a chat, shown as 12 groups of 5 digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber {
    digits: String,
}

impl SafetyNumber {
    /// The safety number of two users: each user's 30-digit [`fingerprint`], the smaller
    /// string first, so both sides compute the same number.
    pub fn new(a: (&Uuid, &PublicKeys), b: (&Uuid, &PublicKeys)) -> Self {
        let (fa, fb) = (fingerprint(a.0, a.1), fingerprint(b.0, b.1));
        let (lo, hi) = if fa <= fb { (fa, fb) } else { (fb, fa) };
        SafetyNumber { digits: lo + &hi }
    }

    /// The 60 digits without separators.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// The 12 groups of 5 digits, in reading order.
    pub fn groups(&self) -> Vec<&str> {
        (0..self.digits.len() / 5)
            .filter_map(|i| self.digits.get(i * 5..i * 5 + 5))
            .collect()
    }

    /// Whether `typed` (what the other user reads out or a scanned code holds) is this number;
    /// ASCII whitespace is ignored.
    pub fn matches(&self, typed: &str) -> bool {
        let typed: String = typed.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        typed == self.digits
    }
}

impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.groups().join(" "))
    }
}

/// One user's 30-digit half: `h = SHA-512(version (u16 BE) || idKey || signingKey || userId)`,
/// then [`FINGERPRINT_ITERATIONS`] times `h = SHA-512(h || idKey || signingKey)`; bytes
/// `5i..5i+5` of `h` as a big-endian integer mod 100000 give the `i`-th group of 5 digits.
pub fn fingerprint(user: &Uuid, keys: &PublicKeys) -> String {
    let id_key = keys.id_key.as_bytes();
    let signing_key = keys.signing_key.as_bytes();
    let mut hash = Sha512::new()
        .chain_update(FINGERPRINT_VERSION.to_be_bytes())
        .chain_update(id_key)
        .chain_update(signing_key)
        .chain_update(user.as_bytes())
        .finalize();
    for _ in 0..FINGERPRINT_ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(id_key)
            .chain_update(signing_key)
            .finalize();
    }
    hash.chunks_exact(5)
        .take(FINGERPRINT_DIGITS / 5)
        .map(|chunk| {
            let n = chunk.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
            format!("{:05}", n % 100_000)
        })
        .collect()
}

/// A contact's keys as fetched differ from the ones stored: the safety number changed and the
/// user should be told (and may re-verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyChange {
    pub previous: PublicKeys,
    pub current: PublicKeys,
}

impl KeyChange {
    pub fn id_key_changed(&self) -> bool {
        self.previous.id_key != self.current.id_key
    }

    pub fn signing_key_changed(&self) -> bool {
        self.previous.signing_key != self.current.signing_key
    }
}

/// What [`check_keys`] found.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per directory fetch; boxing would only add noise to every match"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// Nothing was stored for this contact: store the fetched keys (trust on first use).
    FirstSeen,
    /// The fetched keys are the stored ones.
    Unchanged,
    /// The fetched keys differ from the stored ones.
    Changed(KeyChange),
}

/// Compares the keys stored for a contact with newly fetched ones.
pub fn check_keys(stored: Option<&PublicKeys>, fetched: &PublicKeys) -> KeyCheck {
    match stored {
        None => KeyCheck::FirstSeen,
        Some(stored) if stored == fetched => KeyCheck::Unchanged,
        Some(stored) => KeyCheck::Changed(KeyChange {
            previous: *stored,
            current: *fetched,
        }),
    }
}
