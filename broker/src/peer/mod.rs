//! The peer plane (D8): how brokers talk to each other.
//!
//! - [`link`]: the sending side — one connection per peer shared by every Raft group, with a
//!   control lane ahead of a bulk lane, reconnecting in the background.
//! - [`serve`]: the receiving side — `Raft` frames from a peer's connection, with their own
//!   budgets, answered by the groups this broker hosts ([`serve::RaftHost`]).
//! - [`inbound`]: the per-connection pipes that keep a group's stream appends in arrival
//!   order.
//!
//! The openraft side of the transport (`RaftNetworkV2`) is [`crate::raft::network`], over
//! [`link`].

pub mod inbound;
pub mod link;
pub mod serve;
