//! Jibber's wire contract (shared/API.md, version 1) as Rust types.
//!
//! Everything a client and the server exchange lives here: the stable [`ErrorCode`]s, the
//! REST request and response bodies ([`api`]), the message and chat objects, and the
//! base64url binary wrapper [`B64`]. The crate does no I/O and depends on no runtime, so the
//! server, the SDK and the fuzz targets share one definition.
//!
//! Layout:
//! - [`error`]: `ErrorCode` and the error envelope.
//! - [`b64`]: binary values as base64url without padding.
//! - [`api`]: bodies of every REST route, the message, chat and user objects.

pub mod api;
pub mod b64;
pub mod error;
pub mod events;

pub use b64::B64;
pub use error::{ErrorBody, ErrorCode, ErrorEnvelope};

/// The version prefix of every REST route.
pub const API_PREFIX: &str = "/api/v1";

/// Longest accepted username, in characters.
pub const USERNAME_MAX: usize = 32;
/// Shortest accepted username, in characters.
pub const USERNAME_MIN: usize = 3;
/// Longest accepted `tempMessageId`.
pub const TEMP_MESSAGE_ID_MAX: usize = 128;
/// Longest accepted display name, in characters.
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest accepted e-mail address.
pub const EMAIL_MAX: usize = 254;
/// Largest accepted sealed key bundle, decoded.
pub const KEY_BUNDLE_MAX: usize = 16 * 1024;
/// Largest accepted public key, decoded.
pub const PUBLIC_KEY_MAX: usize = 256;
/// Largest accepted nonce (`iv`), decoded.
pub const IV_MAX: usize = 64;
/// Largest accepted signature, decoded.
pub const SIGNATURE_MAX: usize = 256;
/// Largest page any list route returns.
pub const PAGE_MAX: u32 = 200;
