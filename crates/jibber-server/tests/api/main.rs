//! Integration tests: the real server on port 0 with a fresh SQLite database, driven over HTTP.

mod auth;
mod helpers;
mod interop;
mod messages;
mod ops;
mod realtime;
mod sio;
