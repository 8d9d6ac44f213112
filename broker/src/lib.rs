//! `steme-broker`: the Steme server, in three parts — the node, the request handlers and
//! the peer plane — over Raft and the partitions.
//!
//! - [`node`]: one running [`Broker`](node::Broker): start, the metadata group, the
//!   partitions it hosts, its group coordinators, background loops, shutdown.
//! - [`handlers`]: one file per API area; [`handlers::handle`] answers a client request.
//! - [`server`]: the client plane, `run(listener, broker, shutdown)`: connections,
//!   pipelining, limits (connections per address, frame deadline, idle timeout); requests go
//!   to [`handlers`], which refuse peer APIs.
//! - [`peer`]: the peer plane (D8): its own listener, authentication on a cluster secret,
//!   checks on what peers say, links to the other brokers, serving their Raft frames.
//! - [`reply`]: an encoded response ([`Reply`](reply::Reply)) and a frame on its way out.
//! - [`error`]: [`BrokerError`](error::BrokerError), what the node answers when it fails.
//! - [`raft`]: openraft behind one module (D1): types, log store over the segment log,
//!   state machine, hosted groups, our RPC encoding, the openraft network.
//! - [`metadata`]: the metadata group's state machine: brokers, topics, placement (D9).
//! - [`topic_config`]: topic settings parsed once into a typed, bounded `TopicConfig`.
//! - [`partition`]: one partition: its Raft group, single-writer produce path, fetch.
//! - [`groups`]: consumer-group coordination, stored in the groups topic (D10).
//! - [`hlc`]: the broker's Hybrid Logical Clock (D6).
//! - [`config`]: flags, environment, TOML file and embedded defaults.
//! - [`data_dir`]: one broker process per data directory, an exclusive lock on `.lock`.
//! - [`admin`]: the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`), and
//!   [`metrics`], what it reports (D13).
//!
//! Dependencies run one way: `server` → `handlers` → `node` → `peer`/`raft`/`partition`;
//! nothing below the node reaches up to it, the handlers or the server. The node is what
//! peers reach, through the `peer::serve::RaftHost` trait it implements.
#![deny(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod authz;
pub mod config;
pub mod data_dir;
pub mod error;
pub mod groups;
pub mod handlers;
pub mod hlc;
pub mod metadata;
pub mod metrics;
pub mod node;
pub mod partition;
pub mod peer;
pub mod quota;
pub mod raft;
pub mod reply;
pub mod server;
pub mod tls;
pub mod topic_config;
