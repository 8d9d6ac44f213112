//! Error codes and the errors a broker answers with.
//!
//! Every response body starts with a `u16` [`ErrorCode`]. `0` ([`ErrorCode::None`]) is
//! followed by the typed response; any other code is followed by the [`ApiError`]'s context
//! fields (per variant, below) and then a human-readable `string` message:
//!
//! ```text
//! +------------+---------------------------------+------------------+
//! | code u16   | context (depends on the code)   | message: string  |
//! +------------+---------------------------------+------------------+
//!
//! NotLeader          opt<leader_id u64, leader_addr string>
//! OffsetOutOfRange   log_start u64, high_watermark u64
//! InvalidSignature   record u32
//! WrongPartition     record u32, expected u32
//! ClockSkew          broker_now u64 (HLC, NTP64)
//! UnsupportedVersion api_key u16, min u16, max u16
//! FrameTooLarge      size u64, max u64
//! Throttled          retry_after_ms u32
//! FencedMember       current_epoch u32
//! CorruptData        first_offset u64, end_offset u64 (the damaged range, end exclusive)
//! SkippedData        first_offset u64, end_offset u64 (the skipped range, end exclusive)
//! (all others)       nothing
//! ```

use bytes::{BufMut, BytesMut};

use crate::wire::{DecodeError, Reader, put_option, put_string};

/// Wire error codes. Stable: new codes are only ever appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ErrorCode {
    /// No error.
    None = 0,
    /// An error the broker could not classify.
    Unknown = 1,
    /// A frame could not be decoded.
    CorruptFrame = 2,
    /// The broker does not speak this version of the API. See [`ApiError::UnsupportedVersion`].
    UnsupportedVersion = 3,
    /// A frame is larger than the broker accepts. See [`ApiError::FrameTooLarge`].
    FrameTooLarge = 4,
    /// A request is well-formed but its content is refused (bad name, bad value).
    InvalidRequest = 5,
    /// No such topic.
    UnknownTopic = 6,
    /// A topic of that name exists already.
    TopicExists = 7,
    /// The topic has no such partition.
    UnknownPartition = 8,
    /// This broker does not lead the partition (or group). See [`ApiError::NotLeader`].
    NotLeader = 9,
    /// The offset is outside the log. See [`ApiError::OffsetOutOfRange`].
    OffsetOutOfRange = 10,
    /// A record's signature does not verify. See [`ApiError::InvalidSignature`].
    InvalidSignature = 11,
    /// A record's subject belongs to another partition. See [`ApiError::WrongPartition`].
    WrongPartition = 12,
    /// A causality token is too far ahead of the broker's clock. See [`ApiError::ClockSkew`].
    ClockSkew = 13,
    /// A record batch fails its checks (CRC, framing).
    CorruptBatch = 14,
    /// An assertion does not decode or breaks the encoding's rules.
    InvalidAssertion = 15,
    /// A quota was exceeded; retry later. See [`ApiError::Throttled`].
    Throttled = 16,
    /// The request did not complete within its timeout.
    Timeout = 17,
    /// The broker's storage failed (the partition is being reopened from what is durable,
    /// or cannot be opened): retriable, see [`ApiError::is_retriable`].
    Storage = 18,
    /// Too few replicas are in sync to accept the write.
    NotEnoughReplicas = 19,
    /// The broker is shutting down.
    ShuttingDown = 20,
    /// No such consumer group.
    UnknownGroup = 21,
    /// The group does not know this member.
    UnknownMember = 22,
    /// The member's epoch is stale: another holds its place. See [`ApiError::FencedMember`].
    FencedMember = 23,
    /// The group has members (it cannot be deleted or reset).
    GroupNotEmpty = 24,
    /// This broker does not coordinate the group.
    NotCoordinator = 25,
    /// A bug in the broker.
    Internal = 26,
    /// A fetch reached a damaged range of the partition's log; it is not served (nor
    /// skipped) until repaired. See [`ApiError::CorruptData`].
    CorruptData = 27,
    /// A fetch reached a damaged range that an operator gave up (no replica had a healthy
    /// copy). See [`ApiError::SkippedData`].
    SkippedData = 28,
    /// A key's proof did not verify, or a client certificate names no principal.
    AuthenticationFailed = 29,
    /// The broker requires authentication (`--auth required`) and the connection has none.
    AuthenticationRequired = 30,
    /// The broker enforces authorization and no ACL allows the principal the operation on
    /// the resource; the message names all three.
    AuthorizationDenied = 31,
    /// A record's subject moved to a new partition when the topic grew (`topic
    /// add-partitions`): refresh the metadata and send it to the partition its new map
    /// names. Retriable.
    StaleMap = 32,
    /// A partition added by `topic add-partitions` takes records once every old partition
    /// has recorded its split point (so a moved subject's new records follow its old
    /// ones). Retriable: this lasts a fraction of a second.
    SplitPending = 33,
}

impl ErrorCode {
    const ALL: [ErrorCode; 34] = [
        ErrorCode::None,
        ErrorCode::Unknown,
        ErrorCode::CorruptFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::InvalidRequest,
        ErrorCode::UnknownTopic,
        ErrorCode::TopicExists,
        ErrorCode::UnknownPartition,
        ErrorCode::NotLeader,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::InvalidSignature,
        ErrorCode::WrongPartition,
        ErrorCode::ClockSkew,
        ErrorCode::CorruptBatch,
        ErrorCode::InvalidAssertion,
        ErrorCode::Throttled,
        ErrorCode::Timeout,
        ErrorCode::Storage,
        ErrorCode::NotEnoughReplicas,
        ErrorCode::ShuttingDown,
        ErrorCode::UnknownGroup,
        ErrorCode::UnknownMember,
        ErrorCode::FencedMember,
        ErrorCode::GroupNotEmpty,
        ErrorCode::NotCoordinator,
        ErrorCode::Internal,
        ErrorCode::CorruptData,
        ErrorCode::SkippedData,
        ErrorCode::AuthenticationFailed,
        ErrorCode::AuthenticationRequired,
        ErrorCode::AuthorizationDenied,
        ErrorCode::StaleMap,
        ErrorCode::SplitPending,
    ];
}

/// A code this version does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0}")]
pub struct UnknownErrorCode(pub u16);

impl TryFrom<u16> for ErrorCode {
    type Error = UnknownErrorCode;

    fn try_from(v: u16) -> Result<ErrorCode, UnknownErrorCode> {
        ErrorCode::ALL
            .get(usize::from(v))
            .copied()
            .ok_or(UnknownErrorCode(v))
    }
}

/// Where the leader is, so the client can go straight to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's node id.
    pub node_id: u64,
    /// The leader's client address.
    pub addr: String,
}

/// An error a broker answers a request with, carrying what the client needs to recover.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// This broker does not lead the partition (or coordinate the group).
    #[error("not the leader{}: {message}", leader.as_ref().map(|l| format!(" (leader is {} at {})", l.node_id, l.addr)).unwrap_or_default())]
    NotLeader {
        /// Where the leader is, if this broker knows.
        leader: Option<LeaderHint>,
        /// The broker's explanation.
        message: String,
    },
    /// The offset asked for is outside the log.
    #[error("offset out of range: the log holds [{log_start}, {high_watermark})")]
    OffsetOutOfRange {
        /// The first offset the log still holds.
        log_start: u64,
        /// The offset after the last committed record.
        high_watermark: u64,
    },
    /// A record of a produce request has a signature that does not verify.
    #[error("record {record} has an invalid signature: {message}")]
    InvalidSignature {
        /// The record's index in its batch.
        record: u32,
        /// Why it does not verify.
        message: String,
    },
    /// A record's subject belongs to another partition than the one produced to.
    #[error("record {record} belongs to partition {expected}")]
    WrongPartition {
        /// The record's index in its batch.
        record: u32,
        /// The partition its subject belongs to.
        expected: u32,
    },
    /// A causality token is further ahead of the broker's clock than the skew allowed.
    #[error("causality token is beyond the allowed clock skew (broker clock {broker_now})")]
    ClockSkew {
        /// The broker's clock (HLC, NTP64) when it refused.
        broker_now: u64,
    },
    /// The broker does not support the version asked for.
    #[error("api {api_key} supports versions {min}..={max}")]
    UnsupportedVersion {
        /// The API asked for.
        api_key: u16,
        /// The oldest version the broker speaks.
        min: u16,
        /// The newest version the broker speaks.
        max: u16,
    },
    /// A frame is larger than the broker accepts.
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The frame's size.
        size: u64,
        /// The largest frame accepted.
        max: u64,
    },
    /// A quota was exceeded.
    #[error("throttled (retry after {retry_after_ms} ms): {message}")]
    Throttled {
        /// How long to wait before retrying.
        retry_after_ms: u32,
        /// Which quota.
        message: String,
    },
    /// The member's epoch is stale: it was removed from the group, or replaced.
    #[error("member fenced (group epoch is now {current_epoch}): {message}")]
    FencedMember {
        /// The member epoch the coordinator holds now.
        current_epoch: u32,
        /// The coordinator's explanation.
        message: String,
    },
    /// The fetch reached offsets `[first_offset, end_offset)`, which are damaged in the
    /// broker's copy of the log; the message names the topic, partition and damage.
    #[error("offsets {first_offset}..{end_offset} are damaged: {message}")]
    CorruptData {
        /// The first damaged offset.
        first_offset: u64,
        /// The offset after the damaged range.
        end_offset: u64,
        /// The topic, partition and damage.
        message: String,
    },
    /// A fetch reached a range an operator skipped: damaged on every replica and given up
    /// on purpose. The message holds the record of the skip (when, by whom, why). Readers
    /// go on from `end_offset`, saying so; the records in the range are lost.
    #[error("offsets {first_offset}..{end_offset} were skipped: {message}")]
    SkippedData {
        /// The first skipped offset.
        first_offset: u64,
        /// The offset after the skipped range, where reading goes on.
        end_offset: u64,
        /// The record of the skip.
        message: String,
    },
    /// Any other code, with its message.
    #[error("{code:?}: {message}")]
    Other {
        /// The error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
}

impl ApiError {
    /// Shorthand for the errors that carry only a message.
    pub fn other(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::Other {
            code,
            message: message.into(),
        }
    }

    /// The wire code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::NotLeader { .. } => ErrorCode::NotLeader,
            ApiError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            ApiError::InvalidSignature { .. } => ErrorCode::InvalidSignature,
            ApiError::WrongPartition { .. } => ErrorCode::WrongPartition,
            ApiError::ClockSkew { .. } => ErrorCode::ClockSkew,
            ApiError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            ApiError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ApiError::Throttled { .. } => ErrorCode::Throttled,
            ApiError::FencedMember { .. } => ErrorCode::FencedMember,
            ApiError::CorruptData { .. } => ErrorCode::CorruptData,
            ApiError::SkippedData { .. } => ErrorCode::SkippedData,
            ApiError::Other { code, .. } => *code,
        }
    }

    /// Whether the same request may succeed if sent again (perhaps to another broker).
    /// Produce retries are safe because content ids make them idempotent.
    ///
    /// `CorruptData` is not: the damage stays until the range is repaired or another
    /// replica leads, so a reader that waits for that does so on purpose, a bounded number
    /// of times (as the client's consumer does), rather than in a generic retry loop.
    ///
    /// `Storage` is, as Kafka's `KafkaStorageException` is: a partition whose storage
    /// failed is reopened from what is durable, or another replica takes the lead.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self.code(),
            ErrorCode::NotLeader
                | ErrorCode::Storage
                | ErrorCode::Throttled
                | ErrorCode::Timeout
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::ShuttingDown
                | ErrorCode::NotCoordinator
                | ErrorCode::UnknownPartition
                | ErrorCode::StaleMap
                | ErrorCode::SplitPending
        )
    }

    fn message(&self) -> &str {
        match self {
            ApiError::NotLeader { message, .. }
            | ApiError::InvalidSignature { message, .. }
            | ApiError::FencedMember { message, .. }
            | ApiError::Throttled { message, .. }
            | ApiError::CorruptData { message, .. }
            | ApiError::SkippedData { message, .. }
            | ApiError::Other { message, .. } => message,
            _ => "",
        }
    }

    /// Writes the code, context fields and message.
    pub fn encode(&self, buf: &mut BytesMut) {
        buf.put_u16_le(self.code() as u16);
        match self {
            ApiError::NotLeader { leader, .. } => {
                put_option(buf, leader.as_ref(), |b, l| {
                    b.put_u64_le(l.node_id);
                    put_string(b, &l.addr);
                });
            }
            ApiError::OffsetOutOfRange {
                log_start,
                high_watermark,
            } => {
                buf.put_u64_le(*log_start);
                buf.put_u64_le(*high_watermark);
            }
            ApiError::InvalidSignature { record, .. } => buf.put_u32_le(*record),
            ApiError::WrongPartition { record, expected } => {
                buf.put_u32_le(*record);
                buf.put_u32_le(*expected);
            }
            ApiError::ClockSkew { broker_now } => buf.put_u64_le(*broker_now),
            ApiError::UnsupportedVersion { api_key, min, max } => {
                buf.put_u16_le(*api_key);
                buf.put_u16_le(*min);
                buf.put_u16_le(*max);
            }
            ApiError::FrameTooLarge { size, max } => {
                buf.put_u64_le(*size);
                buf.put_u64_le(*max);
            }
            ApiError::Throttled { retry_after_ms, .. } => buf.put_u32_le(*retry_after_ms),
            ApiError::FencedMember { current_epoch, .. } => buf.put_u32_le(*current_epoch),
            ApiError::CorruptData {
                first_offset,
                end_offset,
                ..
            }
            | ApiError::SkippedData {
                first_offset,
                end_offset,
                ..
            } => {
                buf.put_u64_le(*first_offset);
                buf.put_u64_le(*end_offset);
            }
            ApiError::Other { .. } => {}
        }
        let msg = self.message();
        put_string(buf, truncate_utf8(msg, u16::MAX as usize));
    }

    /// Reads the context fields and message that follow a non-zero `code`.
    pub fn decode(code: ErrorCode, r: &mut Reader) -> Result<ApiError, DecodeError> {
        let err = match code {
            ErrorCode::NotLeader => {
                let leader = r.option(|r| {
                    Ok(LeaderHint {
                        node_id: r.u64()?,
                        addr: r.string()?,
                    })
                })?;
                ApiError::NotLeader {
                    leader,
                    message: r.string()?,
                }
            }
            ErrorCode::OffsetOutOfRange => ApiError::OffsetOutOfRange {
                log_start: r.u64()?,
                high_watermark: r.u64()?,
            },
            ErrorCode::InvalidSignature => ApiError::InvalidSignature {
                record: r.u32()?,
                message: r.string()?,
            },
            ErrorCode::WrongPartition => ApiError::WrongPartition {
                record: r.u32()?,
                expected: r.u32()?,
            },
            ErrorCode::ClockSkew => ApiError::ClockSkew {
                broker_now: r.u64()?,
            },
            ErrorCode::UnsupportedVersion => ApiError::UnsupportedVersion {
                api_key: r.u16()?,
                min: r.u16()?,
                max: r.u16()?,
            },
            ErrorCode::FrameTooLarge => ApiError::FrameTooLarge {
                size: r.u64()?,
                max: r.u64()?,
            },
            ErrorCode::Throttled => ApiError::Throttled {
                retry_after_ms: r.u32()?,
                message: r.string()?,
            },
            ErrorCode::FencedMember => ApiError::FencedMember {
                current_epoch: r.u32()?,
                message: r.string()?,
            },
            ErrorCode::CorruptData => ApiError::CorruptData {
                first_offset: r.u64()?,
                end_offset: r.u64()?,
                message: r.string()?,
            },
            ErrorCode::SkippedData => ApiError::SkippedData {
                first_offset: r.u64()?,
                end_offset: r.u64()?,
                message: r.string()?,
            },
            code => ApiError::Other {
                code,
                message: r.string()?,
            },
        };
        // Variants without a message field still carry an (empty or informative) string.
        if !matches!(
            err,
            ApiError::NotLeader { .. }
                | ApiError::InvalidSignature { .. }
                | ApiError::FencedMember { .. }
                | ApiError::Throttled { .. }
                | ApiError::CorruptData { .. }
                | ApiError::SkippedData { .. }
                | ApiError::Other { .. }
        ) {
            r.string()?;
        }
        Ok(err)
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn roundtrip(e: ApiError) {
        let mut buf = BytesMut::new();
        e.encode(&mut buf);
        let full = buf.freeze();
        let mut r = Reader::new(full.clone());
        let code = ErrorCode::try_from(r.u16().unwrap()).unwrap();
        assert_eq!(ApiError::decode(code, &mut r).unwrap(), e);
        r.finish().unwrap();
        for cut in 2..full.len() {
            let mut r = Reader::new(full.slice(..cut));
            r.u16().unwrap();
            assert!(
                ApiError::decode(code, &mut r).is_err(),
                "truncated at {cut}"
            );
        }
    }

    #[test]
    fn roundtrip_every_variant() {
        roundtrip(ApiError::NotLeader {
            leader: Some(LeaderHint {
                node_id: 2,
                addr: "127.0.0.1:9093".into(),
            }),
            message: "partition 3".into(),
        });
        roundtrip(ApiError::NotLeader {
            leader: None,
            message: String::new(),
        });
        roundtrip(ApiError::OffsetOutOfRange {
            log_start: 10,
            high_watermark: 20,
        });
        roundtrip(ApiError::InvalidSignature {
            record: 4,
            message: "bad".into(),
        });
        roundtrip(ApiError::WrongPartition {
            record: 1,
            expected: 7,
        });
        roundtrip(ApiError::ClockSkew { broker_now: 99 });
        roundtrip(ApiError::UnsupportedVersion {
            api_key: 5,
            min: 0,
            max: 1,
        });
        roundtrip(ApiError::FrameTooLarge { size: 1, max: 2 });
        roundtrip(ApiError::Throttled {
            retry_after_ms: 5,
            message: "too many connections".into(),
        });
        roundtrip(ApiError::FencedMember {
            current_epoch: 3,
            message: "stale".into(),
        });
        roundtrip(ApiError::CorruptData {
            first_offset: 826,
            end_offset: 970,
            message: "partition t-0 offsets 826..970 are damaged on broker 2 (needs repair): \
                      frame header crc mismatch"
                .into(),
        });
        roundtrip(ApiError::SkippedData {
            first_offset: 826,
            end_offset: 970,
            message: "skipped at 2026-11-29T22:40:00Z: disk lost on every replica".into(),
        });
        roundtrip(ApiError::other(ErrorCode::UnknownTopic, "no topic t"));
    }

    #[test]
    fn corrupt_data_wire_layout_and_retriability() {
        let e = ApiError::CorruptData {
            first_offset: 826,
            end_offset: 970,
            message: "m".into(),
        };
        let mut buf = BytesMut::new();
        e.encode(&mut buf);
        let mut expect = Vec::new();
        expect.extend_from_slice(&27u16.to_le_bytes());
        expect.extend_from_slice(&826u64.to_le_bytes());
        expect.extend_from_slice(&970u64.to_le_bytes());
        expect.extend_from_slice(&1u16.to_le_bytes());
        expect.push(b'm');
        assert_eq!(&buf[..], &expect[..]);
        assert!(!e.is_retriable());
        assert_eq!(e.to_string(), "offsets 826..970 are damaged: m");
    }

    #[test]
    fn error_code_try_from_covers_all() {
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*c as u16, i as u16);
            assert_eq!(ErrorCode::try_from(i as u16), Ok(*c));
        }
        assert_eq!(ErrorCode::try_from(999), Err(UnknownErrorCode(999)));
    }

    #[test]
    fn rejects_garbage_context() {
        let mut r = Reader::new(Bytes::from_static(&[7]));
        assert!(ApiError::decode(ErrorCode::NotLeader, &mut r).is_err());
    }
}
