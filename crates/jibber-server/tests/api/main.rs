//! Integration tests: the real server on port 0 with a fresh database (SQLite; PostgreSQL in
//! `postgres`), driven over HTTP.

mod auth;
mod helpers;
mod interop;
mod messages;
mod ops;
mod postgres;
mod realtime;
mod sio;
