//! `steme-client`: the Rust client of Steme, a replicated log of signed, content-addressed
//! assertions. The `steme` operator CLI is its own crate, `steme-cli` (`client/cli/`).
//!
//! - [`connection`]: one TCP connection to a broker; pipelined requests matched by
//!   correlation id, a bounded number in flight, the version handshake.
//! - [`cluster`]: bootstrap, the metadata cache (brokers, partition leaders), a connection
//!   pool with reconnect backoff, and routing that follows `NotLeader` hints.
//! - [`producer`]: batches signed assertions per partition by linger and size, pipelines
//!   them to the leaders, retries idempotently, carries the causality token, and follows a
//!   topic that grows (re-routing what a partition refuses with `StaleMap`).
//! - [`consumer`]: assigned partitions, seek by offset or HLC time, long-poll fetches,
//!   zero-copy [`Record`]s, optional verification, a `Stream` of records. Integrity fails
//!   closed: a gap or overlap in a fetch, a damaged range (`CorruptData`) or fetches stuck
//!   below the high watermark end in a typed error, never in a skipped range.
//! - [`admin`]: create, delete, describe and grow topics; move replicas; metadata; offsets.
//! - [`keys`]: key files (a signing key's seed in hex, mode 0600), loaded and saved.
//! - [`error`]: [`ClientError`], the one error type of the network API.
//!
//! Cargo feature `serde` (off by default): [`Record`] is `Serialize` (its place, ids,
//! signature and decoded assertion), [`Ack`] `Serialize` and `Deserialize`. Feature `json`
//! (with `serde`): `json`, the printed forms of acks and records that the `steme` CLI and
//! the HTTP gateway share, and HLC times as RFC 3339.
//!
//! Everything speaks the wire messages of [`steme_protocol`]; assertions are built and
//! signed with its types ([`Assertion`], [`SigningKey`]), re-exported here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), steme_client::ClientError> {
//! use std::time::Duration;
//! use steme_client::{Consumer, ConsumerConfig, Producer, ProducerConfig};
//! use steme_client::{Assertion, SigningKey, Value};
//!
//! let key = SigningKey::from_bytes(&[1; 32]);
//! let producer = Producer::connect("127.0.0.1:9092", "facts", ProducerConfig::default()).await?;
//! let fact = Assertion::builder("urn:person:ada", "born")
//!     .object(Value::Integer(1815))
//!     .source("wikipedia")
//!     .confidence(0.99)
//!     .issued_at(1_700_000_000_000)
//!     .build()?;
//! let ack = producer.send(fact.sign(&key)?).await?;
//!
//! let mut consumer = Consumer::connect("127.0.0.1:9092", ConsumerConfig::default()).await?;
//! consumer.assign("facts", &[ack.partition]).await?;
//! consumer.seek(ack.partition, steme_client::Position::Offset(ack.offset)).await?;
//! let records = consumer.poll(Duration::from_secs(1)).await?;
//! assert_eq!(records[0].id(), ack.id);
//! # Ok(())
//! # }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(missing_debug_implementations)]

// Lets in-crate tests share the integration tests' helpers, which name the crate.
#[cfg(test)]
extern crate self as steme_client;

pub mod admin;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
#[cfg(feature = "json")]
pub mod json;
pub mod keys;
pub mod producer;
#[cfg(feature = "serde")]
mod serialize;
pub mod tls;

pub use admin::{Admin, TopicOptions};
pub use cluster::{Backoff, ClientConfig, Cluster};
pub use consumer::{Consumer, ConsumerConfig, OffsetReset, Position, Record};
pub use error::{ClientError, Disconnect};
pub use group::{GroupConfig, GroupConsumer, Rebalance};
pub use producer::{Ack, Acks, PendingAck, PendingAcks, Producer, ProducerConfig};
pub use tls::{ClientTls, TlsError};

pub use steme_protocol::{
    Assertion, AssertionBuilder, AssertionError, AssertionId, SignedAssertion, SigningKey, Value,
    VerifyingKey,
};
