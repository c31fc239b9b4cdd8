//! Binary values on the wire: base64url without padding.
//!
//! Encoding and decoding use `base64-simd` (SIMD where the CPU has it). Every relayed message
//! carries six such fields, decoded once from `sendMessage` and encoded once more for each
//! `receivedMessage`: with the scalar `base64` crate that was ~15 % of the server's runtime
//! thread's instructions, half encoding and half decoding (BENCHMARKS.md, session 18). What is accepted is unchanged (the `base64` crate's
//! strict URL_SAFE_NO_PAD: no padding, no `+` or `/`, no stray bits in the last character); the
//! tests below compare the two on generated input.

use base64_simd::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes that travel as a base64url string without padding (keys, ciphertexts, nonces,
/// signatures, OPAQUE messages). Deserializing anything else is an error that names the field.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct B64(pub Vec<u8>);

/// A string that is not base64url without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

impl std::fmt::Display for InvalidBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("expected base64url without padding")
    }
}

impl std::error::Error for InvalidBase64 {}

/// Values whose text fits here are encoded on the stack when they are serialized (every
/// message field does: keys, nonces, signatures and ciphertexts up to 384 bytes).
const STACK_TEXT: usize = 512;

impl B64 {
    /// Encodes bytes.
    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode_to_string(bytes)
    }

    /// Decodes a base64url string (padding is not accepted).
    pub fn decode(s: &str) -> Result<Vec<u8>, InvalidBase64> {
        // Strict, like the `base64` crate before it: a last character with stray bits is
        // refused (`base64-simd`'s `forgiving_decode` would take it).
        URL_SAFE_NO_PAD.decode_to_vec(s).map_err(|_| InvalidBase64)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for B64 {
    fn from(v: Vec<u8>) -> Self {
        B64(v)
    }
}

impl std::fmt::Debug for B64 {
    // Never print the content: it may be a key or a ciphertext.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "B64({} bytes)", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if URL_SAFE_NO_PAD.encoded_length(self.0.len()) <= STACK_TEXT {
            let mut buf = [0u8; STACK_TEXT];
            let text =
                URL_SAFE_NO_PAD.encode_as_str(&self.0, base64_simd::Out::from_slice(&mut buf));
            s.serialize_str(text)
        } else {
            s.serialize_str(&B64::encode(&self.0))
        }
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64::decode(&s).map(B64).map_err(serde::de::Error::custom)
    }
}

/// In the OpenAPI document: a base64url string without padding whose last character carries no
/// stray bits (what [`B64::decode`] accepts).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for B64 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(
                "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$",
            ))
            .description(Some("Bytes as base64url without padding"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for B64 {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("B64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_padding() {
        let v = B64(vec![0xfb, 0xff, 0x01]);
        let json = serde_json::to_string(&v).expect("serialize");
        assert_eq!(json, "\"-_8B\"");
        let back: B64 = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, v);
        assert!(serde_json::from_str::<B64>("\"-_8B==\"").is_err());
        assert!(serde_json::from_str::<B64>("\"+/8B\"").is_err());
        assert_eq!(format!("{v:?}"), "B64(3 bytes)");
    }

    /// What the API accepted before `base64-simd`: the `base64` crate's URL_SAFE_NO_PAD.
    fn reference_decode(s: &str) -> Option<Vec<u8>> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()
    }

    /// What the API wrote before `base64-simd`.
    fn reference_encode(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn stray_bits_in_the_last_character_are_refused() {
        // "AA" is one zero byte; "AB" puts a 1 in the spare bits.
        assert_eq!(B64::decode("AA"), Ok(vec![0]));
        assert_eq!(B64::decode("AB"), Err(InvalidBase64));
        assert_eq!(B64::decode("AAA"), Ok(vec![0, 0]));
        assert_eq!(B64::decode("AAB"), Err(InvalidBase64));
        assert_eq!(B64::decode("A"), Err(InvalidBase64));
        assert_eq!(B64::decode(""), Ok(vec![]));
        assert_eq!(reference_decode("AB"), None);
    }

    #[test]
    fn long_values_serialize_beyond_the_stack_buffer() {
        let v = B64((0..=255u8).cycle().take(5_000).collect());
        let json = serde_json::to_string(&v).expect("serialize");
        let back: B64 = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, v);
        assert_eq!(json, format!("\"{}\"", reference_encode(&v.0)));
    }

    proptest::proptest! {
        #[test]
        fn encoding_matches_the_reference(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let reference = reference_encode(&bytes);
            proptest::prop_assert_eq!(&B64::encode(&bytes), &reference);
            let json = serde_json::to_string(&B64(bytes.clone())).expect("serialize");
            proptest::prop_assert_eq!(json, format!("\"{reference}\""));
            proptest::prop_assert_eq!(B64::decode(&reference), Ok(bytes));
        }

        /// Any string over the alphabet and its neighbours (padding, the standard alphabet's
        /// `+` and `/`, a space, a non-ASCII letter): accepted and decoded exactly as before.
        #[test]
        fn decoding_accepts_exactly_what_the_reference_accepts(
            s in "[A-Za-z0-9_=+/ é-]{0,40}|[A-Za-z0-9_-]{0,200}"
        ) {
            proptest::prop_assert_eq!(B64::decode(&s).ok(), reference_decode(&s));
        }
    }
}
