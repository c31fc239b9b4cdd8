//! Authentication: OPAQUE, access and refresh tokens, and the limits on attempts.

pub mod limits;
pub mod opaque;
pub mod tokens;
