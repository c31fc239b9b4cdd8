//! Binary values on the wire: base64url without padding.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes that travel as a base64url string without padding (keys, ciphertexts, nonces,
/// signatures, OPAQUE messages). Deserializing anything else is an error that names the field.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct B64(pub Vec<u8>);

impl B64 {
    /// Encodes bytes.
    pub fn encode(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a base64url string (padding is not accepted).
    pub fn decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
        URL_SAFE_NO_PAD.decode(s)
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
        s.serialize_str(&B64::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        B64::decode(&s)
            .map(B64)
            .map_err(|_| serde::de::Error::custom("expected base64url without padding"))
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
}
