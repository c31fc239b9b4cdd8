//! `jibber bench`: a load generator that speaks only the public protocol (REST + Socket.IO of
//! `shared/API.md`), built on the SDK's Socket.IO client.
//!
//! - [`relay`]: user pairs in their own chats; each sender keeps a window of `sendMessage`s in
//!   flight (closed loop) or sends at a fixed rate; receivers acknowledge `receivedMessage`
//!   (which marks it delivered). Reports delivered messages/s, send→ack and send→receive
//!   latency (HDR histograms), errors, and checks that every acknowledged message arrived once
//!   and in order.
//! - [`ceiling`]: the same relay against a bare socketioxide relay in this process (no auth, no
//!   storage), so every report carries the ratio to the ceiling measured in the same run.
//! - [`idle`]: many authenticated idle connections; server RSS per connection.
//! - [`storm`]: drop many clients at once; time until all are back and caught up.
//! - [`soak`]: the relay at a fixed rate for a long time; server memory must stay flat.
//!
//! Message bodies are random bytes of the requested size with the send time in the first 8 bytes
//! (the server never decrypts, so its work is the same as for sealed messages; sealing costs the
//! clients, see docs). The server must allow the load: `--spawn` starts `jibber serve` with the
//! limits raised; against another server set `JIBBER_SOCKET_EVENTS_PER_SECOND` and the auth rate
//! limits high.

pub mod ceiling;
pub mod idle;
pub mod proc;
pub mod relay;
pub mod report;
pub mod setup;
pub mod soak;
pub mod storm;

pub use report::Latency;
