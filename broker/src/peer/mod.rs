//! The peer plane (D8): how brokers talk to each other — only here, on a listener of its
//! own, over connections authenticated before any frame is read.
//!
//! - [`auth`]: the cluster secret, the challenge–response handshake and sealed frames.
//! - [`guard`]: checks on what authenticated peers say, before openraft or the metadata
//!   sees it.
//! - [`listener`]: `--peer-listen`: accepts brokers' connections, authenticates each,
//!   serves its frames and seals every answer.
//! - [`link`]: the sending side — one connection per peer shared by every Raft group, with a
//!   control lane ahead of a bulk lane, reconnecting in the background.
//! - [`serve`]: the receiving side — `Raft` frames from a peer's connection, with their own
//!   budgets, answered by the groups this broker hosts ([`serve::RaftHost`]).
//! - [`inbound`]: the per-connection pipes that keep a group's stream appends in arrival
//!   order.
//!
//! The openraft side of the transport (`RaftNetworkV2`) is [`crate::raft::network`], over
//! [`link`].

pub mod auth;
pub mod guard;
pub mod inbound;
pub mod link;
pub mod listener;
pub mod liveness;
pub mod serve;
