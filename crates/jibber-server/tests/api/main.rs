//! Integration tests: the real server on port 0 with a fresh database (SQLite; PostgreSQL in
//! `postgres`), driven over HTTP.

mod attacks_idor;
mod attacks_tokens;
mod attacks_transport;
mod auth;
mod cluster;
mod helpers;
mod interop;
mod messages;
mod openapi;
mod ops;
mod postgres;
mod realtime;
mod sio;
mod test_client;
mod web;
