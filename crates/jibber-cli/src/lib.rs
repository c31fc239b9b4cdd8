//! The `jibber` command line as a library, so its commands and the terminal UI can be tested
//! in-process: [`client`] (register, send, tail, seed).

pub mod bench;
pub mod client;
pub mod runtime;
pub mod tui;
