//! `steme-protocol`: everything Steme puts on the wire or on disk, as pure types with
//! encoders and decoders. No I/O, no async runtime (the codec adapter in [`codec`] is a few
//! lines over [`frame`]).
//!
//! - [`assertion`]: the assertion model, its canonical encoding, content ids, Ed25519
//!   signing and batch verification, and the JSON form.
//! - [`batch`]: record batches, the one format used on the wire, in the Raft log and on disk.
//! - [`partition`]: which partition a subject belongs to.
//! - [`wire`]: little-endian primitives with positioned decode errors.
//! - [`frame`]: the length-prefixed frame (api key, version, correlation id, body).
//! - [`error`]: error codes and the errors clients recover from.
//! - [`messages`]: one module per request/response pair.
//! - [`codec`]: the `tokio_util::codec` adapter.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
pub mod assertion;
pub mod batch;
pub mod codec;
pub mod error;
pub mod frame;
pub mod messages;
pub mod partition;
pub mod wire;

pub use assertion::{
    Assertion, AssertionBuilder, AssertionError, AssertionId, SignedAssertion, Value,
};
pub use batch::{BatchBuilder, BatchError, BatchHeader, RecordBatch, RecordRef};
pub use codec::FrameCodec;
pub use error::{ApiError, ErrorCode, LeaderHint};
pub use frame::{Frame, FrameHeader};
pub use messages::{ApiKey, Request, RequestBody, Response};
pub use partition::{jump_consistent_hash, partition_for, subject_key};

/// Re-exported so users sign with the same Ed25519 types the protocol verifies with.
pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// The longest topic, group or member name, in bytes. Names travel as `string` (u16 length).
pub const MAX_NAME_LEN: usize = 255;

/// The longest topic name, in bytes (as in Kafka); topic names are never empty.
pub const MAX_TOPIC_NAME_LEN: usize = 249;
