//! The one error type of the client library.

use std::sync::Arc;
use std::time::Duration;

use steme_protocol::assertion::AssertionError;
use steme_protocol::codec::CodecError;
use steme_protocol::wire::DecodeError;
use steme_protocol::{ApiError, ApiKey, BatchError};

/// Everything that can go wrong in the client, with the context needed to act on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A TCP connection to a broker could not be opened (or timed out opening).
    #[error("cannot connect to broker {addr}")]
    Connect {
        /// The broker's address.
        addr: String,
        #[source]
        /// The cause.
        source: std::io::Error,
    },
    /// The connection to a broker died; every request pending on it fails with this.
    #[error("connection to broker {addr} lost")]
    ConnectionLost {
        /// The broker's address.
        addr: String,
        #[source]
        /// The cause.
        cause: Arc<Disconnect>,
    },
    /// No answer within the request timeout.
    #[error("{api:?} request to broker {addr} timed out after {after:?}")]
    Timeout {
        /// The broker's address.
        addr: String,
        /// The request's api.
        api: ApiKey,
        /// How long the client waited.
        after: Duration,
    },
    /// The broker answered with an error code. (The broker's error is shown in the message
    /// rather than chained as a source, so that it is printed once.)
    #[error("broker error: {0}")]
    Api(ApiError),
    /// A response body could not be decoded: the broker speaks something else.
    #[error("malformed {api:?} response from broker {addr}")]
    Decode {
        /// The broker's address.
        addr: String,
        /// The request's api.
        api: ApiKey,
        #[source]
        /// The cause.
        source: DecodeError,
    },
    /// The broker does not speak the version of an api this client uses.
    #[error("broker {addr} does not support {api:?} version {version}")]
    UnsupportedApi {
        /// The broker's address.
        addr: String,
        /// The request's api.
        api: ApiKey,
        /// The version the client needs.
        version: u16,
    },
    /// A request would not fit in one frame (a smaller batch size would).
    #[error("{api:?} request of {size} bytes exceeds the {max}-byte frame limit")]
    RequestTooLarge {
        /// The request's api.
        api: ApiKey,
        /// The request's size.
        size: usize,
        /// The frame limit.
        max: usize,
    },
    /// The broker's answer is well-formed but inconsistent with the request.
    #[error("protocol violation by broker {addr}: {detail}")]
    Protocol {
        /// The broker's address.
        addr: String,
        /// What was inconsistent.
        detail: String,
    },
    /// No bootstrap or known broker answered a metadata request.
    #[error("no broker reachable (tried {tried})")]
    NoBrokers {
        /// The addresses tried.
        tried: String,
        #[source]
        /// The last failure, if any.
        last: Option<Box<ClientError>>,
    },
    /// The topic does not exist (according to fresh metadata).
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition} (it has {partitions})")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// The partition has no leader right now, or its leader's address is unknown.
    #[error("partition {topic}/{partition} has no reachable leader")]
    NoLeader {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// A consumer asked for an offset outside the retained log (reset policy `Error`).
    #[error(
        "offset {offset} of {topic}/{partition} is out of range: the log holds [{log_start}, {high_watermark})"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The consumer's position.
        offset: u64,
        /// The first offset the log holds.
        log_start: u64,
        /// The partition's high watermark.
        high_watermark: u64,
    },
    /// An assertion could not be encoded or signed.
    #[error("invalid assertion")]
    Assertion(#[from] AssertionError),
    /// A fetched record batch is damaged.
    #[error("corrupt record batch from {topic}/{partition} at byte {position} of the fetch")]
    CorruptBatch {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// Byte position of the damaged batch in the fetch answer.
        position: usize,
        #[source]
        /// The cause.
        source: BatchError,
    },
    /// A fetch answer does not continue the partition's log from where the consumer is: its
    /// first batch does not hold `expected`, or a later batch does not begin where the one
    /// before it ended (a gap or an overlap). No record past `expected` is returned.
    #[error(
        "fetch of {topic}/{partition} is discontinuous: expected offset {expected}, found a batch of offsets {base_offset}..{end_offset}"
    )]
    OffsetDiscontinuity {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The offset the batch should have held (the first) or begun at (the others).
        expected: u64,
        /// The batch found instead, `[base_offset, end_offset)`.
        base_offset: u64,
        /// The offset after the range.
        end_offset: u64,
    },
    /// The leader answered `CorruptData` to `attempts` fetches in a row at `offset`: its copy
    /// of offsets `[first_offset, end_offset)` is damaged. The range is not skipped: the
    /// position stays at `offset`. `message` is the broker's (it names the damage).
    #[error(
        "cannot read {topic}/{partition} at offset {offset} ({attempts} attempt(s)): offsets {first_offset}..{end_offset} are damaged: {message}"
    )]
    CorruptData {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The consumer's position.
        offset: u64,
        /// The first offset of the range.
        first_offset: u64,
        /// The offset after the range.
        end_offset: u64,
        /// How many attempts were made.
        attempts: u32,
        /// The broker's message.
        message: String,
    },
    /// The position reached offsets `[first_offset, end_offset)`, which an operator gave up
    /// (`steme cluster skip-damaged`: damaged on every replica). A notice, not a failure:
    /// the position has moved to `end_offset`, and the next poll goes on from there. The
    /// records in the range are lost; `message` is the broker's record of the skip (when,
    /// and the operator's reason).
    #[error(
        "{topic}/{partition}: offsets {first_offset}..{end_offset} were skipped by an operator, going on from {end_offset}: {message}"
    )]
    SkippedData {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The first offset of the range.
        first_offset: u64,
        /// The offset after the range.
        end_offset: u64,
        /// The broker's message.
        message: String,
    },
    /// `empty_answers` fetches in a row at `offset` came back without records although the
    /// partition's high watermark is above it: records that exist are not being served.
    #[error(
        "{topic}/{partition} serves no records at offset {offset} although its high watermark is {high_watermark} ({empty_answers} empty answers in a row)"
    )]
    FetchStalled {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The consumer's position.
        offset: u64,
        /// The partition's high watermark.
        high_watermark: u64,
        /// How many empty answers came in a row.
        empty_answers: u32,
    },
    /// A fetched record does not decode or its signature does not verify.
    #[error("record {topic}/{partition}@{offset} fails verification")]
    Verify {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The consumer's position.
        offset: u64,
        #[source]
        /// The cause.
        source: AssertionError,
    },
    /// A produce request failed for good (after `attempts` tries); every record of its
    /// batch fails with this, sharing the cause.
    #[error("producing to {topic}/{partition} failed after {attempts} attempt(s)")]
    ProduceFailed {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// How many attempts were made.
        attempts: u32,
        #[source]
        /// The cause.
        cause: Arc<ClientError>,
    },
    /// The producer has been closed; nothing more can be sent through it.
    #[error("the producer is closed")]
    ProducerClosed,
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Disconnect {
    #[error("the broker closed the connection")]
    /// The broker closed the connection.
    Eof,
    #[error("transport error")]
    /// Reading or writing the connection failed.
    Transport(#[source] CodecError),
    #[error("the client closed the connection")]
    /// The client closed the connection (the connection handle was dropped).
    Closed,
    /// The broker said why before closing (a connection limit, an idle or frame timeout).
    #[error("the broker closed the connection: {0}")]
    Refused(#[source] ApiError),
}

impl ClientError {
    /// Whether the same request may succeed if sent again, perhaps to another broker after a
    /// metadata refresh. Produce retries are safe: content ids make them idempotent.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::ConnectionLost { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoBrokers { .. }
            | ClientError::NoLeader { .. } => true,
            ClientError::Api(e) => e.is_retriable(),
            _ => false,
        }
    }

    /// Whether the cached metadata (leaders, partitions) should be refreshed before a retry.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::ConnectionLost { .. }
            | ClientError::Timeout { .. }
            | ClientError::NoLeader { .. } => true,
            ClientError::Api(e) => matches!(
                e.code(),
                steme_protocol::ErrorCode::NotLeader
                    | steme_protocol::ErrorCode::Storage
                    | steme_protocol::ErrorCode::UnknownPartition
                    | steme_protocol::ErrorCode::UnknownTopic
                    | steme_protocol::ErrorCode::ShuttingDown
            ),
            _ => false,
        }
    }

    /// The broker's error, if this is one.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ApiError> for ClientError {
    fn from(e: ApiError) -> Self {
        ClientError::Api(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_protocol::ErrorCode;

    #[test]
    fn retriable_follows_the_broker_code() {
        assert!(ClientError::Api(ApiError::other(ErrorCode::NotEnoughReplicas, "")).is_retriable());
        assert!(!ClientError::Api(ApiError::other(ErrorCode::UnknownTopic, "")).is_retriable());
        // A partition whose storage failed is reopened, or another replica leads.
        let storage = ClientError::Api(ApiError::other(ErrorCode::Storage, ""));
        assert!(storage.is_retriable() && storage.invalidates_metadata());
        assert!(
            ClientError::ConnectionLost {
                addr: "a".into(),
                cause: Arc::new(Disconnect::Eof)
            }
            .is_retriable()
        );
        assert!(!ClientError::ProducerClosed.is_retriable());
    }

    #[test]
    fn display_keeps_context_and_source() {
        let e = ClientError::Verify {
            topic: "facts".into(),
            partition: 3,
            offset: 17,
            source: AssertionError::BadSignature,
        };
        assert_eq!(e.to_string(), "record facts/3@17 fails verification");
        let src = std::error::Error::source(&e).expect("has a source");
        assert_eq!(src.to_string(), "signature does not verify");
    }

    #[test]
    fn assertion_errors_convert_with_the_question_mark() {
        fn sign_empty_subject() -> Result<steme_protocol::SignedAssertion, ClientError> {
            let a = steme_protocol::Assertion::builder("", "p")
                .object(1)
                .build()?;
            Ok(a.sign(&steme_protocol::SigningKey::from_bytes(&[1; 32]))?)
        }
        let e = sign_empty_subject().unwrap_err();
        assert!(matches!(
            e,
            ClientError::Assertion(AssertionError::Empty { field: "subject" })
        ));
        let src = std::error::Error::source(&e).expect("the cause is kept");
        assert_eq!(src.to_string(), "subject must not be empty");
    }
}
