//! The peer plane (D8): brokers talk to each other only here, on a listener of its own,
//! over connections authenticated before any frame is read.
//!
//! - [`auth`]: the cluster secret, the challenge–response handshake and sealed frames.
//! - [`guard`]: checks on what authenticated peers say, before openraft or the metadata sees it.

pub mod auth;
pub mod guard;
