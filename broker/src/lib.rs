//! `steme-broker`: the Steme server.
//!
//! - [`config`]: flags, environment, TOML file and embedded defaults.
//! - [`hlc`]: the broker's Hybrid Logical Clock (D6).
//! - [`raft`]: openraft behind one module: types, log store over the segment log, state
//!   machine, transport.
//! - [`metadata`]: the metadata group's state machine: brokers, topics, placement (D9).
//! - [`topic_config`]: topic settings parsed once into a typed, bounded `TopicConfig`.
//! - [`partition`]: one partition: its Raft group, single-writer produce path, fetch.
//! - [`broker`]: the broker: metadata group, hosted partitions, request handlers.
//! - [`server`]: `run(listener, broker, shutdown)`: connections, pipelining, limits.
#![deny(unsafe_code)]

pub mod broker;
pub mod config;
pub mod groups;
pub mod hlc;
pub mod metadata;
pub mod partition;
pub mod raft;
pub mod server;
pub mod topic_config;
