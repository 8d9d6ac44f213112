//! `steme-broker`: the Steme server.
//!
//! - [`config`]: flags, environment, TOML file and embedded defaults.
//! - [`hlc`]: the broker's Hybrid Logical Clock (D6).
//! - [`raft`]: openraft behind one module: types, log store over the segment log, state
//!   machine, transport.
#![deny(unsafe_code)]

pub mod config;
pub mod hlc;
pub mod raft;
