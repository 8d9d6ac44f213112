//! CommitOffsets: record how far a consumer group has consumed, per partition. Sent to the
//! group's coordinator, which replicates the offsets through Raft before answering (D10).
//!
//! Request:
//!
//! ```text
//! +---------------+------------------+------------------+---------------------+
//! | group: string | member_id string | member_epoch u32 | offsets: [ commit ] |
//! +---------------+------------------+------------------+---------------------+
//!
//! commit = topic: string | partition u32 | offset u64 | metadata: string
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +---------------------+
//! | results: [ result ] |
//! +---------------------+
//!
//! result = topic: string | partition u32 | error code u16 (0 = committed)
//! ```
//!
//! As in Kafka, the committed `offset` is the next one to consume (last processed + 1), and
//! `metadata` is free text kept alongside it. Errors that concern the whole request (unknown
//! group or member, a stale `member_epoch`, not the coordinator) come back as the response's
//! error code. Otherwise there is one result per requested partition, in request order, with
//! code 0 when it was committed, or why not (e.g. a partition the member does not own).
//! An empty `member_id` commits from outside the group (an administrative reset), which is
//! accepted only while the group has no members.

use bytes::{BufMut, BytesMut};

use crate::error::ErrorCode;
use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_count, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Commits a member's progress (or, with an empty member id and epoch 0, resets a group without members).
pub struct CommitOffsetsRequest {
    /// The group id.
    pub group: String,
    /// The member id the coordinator gave.
    pub member_id: String,
    /// The member's epoch, as the coordinator last gave it.
    pub member_epoch: u32,
    /// Offsets, per partition.
    pub offsets: Vec<OffsetCommit>,
}

/// The offset to commit for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    /// Free text stored with the offset.
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One result per offset, in request order.
pub struct CommitOffsetsResponse {
    /// One per requested partition, in request order.
    pub results: Vec<PartitionResult>,
}

/// Whether one partition's offset was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// An [`ErrorCode`] as sent, 0 when committed. Kept raw so that a code from a newer
    /// broker does not fail the whole response; read it with [`PartitionResult::code`].
    pub error: u16,
}

impl OffsetCommit {
    /// The fewest bytes one entry takes: one-byte topic, partition, offset, empty metadata.
    const MIN_SIZE: usize = 2 + 1 + 4 + 8 + 2;
}

impl PartitionResult {
    /// The fewest bytes one entry takes: empty topic, partition, code.
    const MIN_SIZE: usize = 2 + 4 + 2;

    /// The error code, with codes this version does not know read as `Unknown`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::try_from(self.error).unwrap_or(ErrorCode::Unknown)
    }

    /// Whether the offset was committed.
    pub fn is_ok(&self) -> bool {
        self.error == ErrorCode::None as u16
    }
}

impl Body for CommitOffsetsRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.group);
        put_string(buf, &self.member_id);
        buf.put_u32_le(self.member_epoch);
        put_count(buf, self.offsets.len());
        for o in &self.offsets {
            put_string(buf, &o.topic);
            buf.put_u32_le(o.partition);
            buf.put_u64_le(o.offset);
            put_string(buf, &o.metadata);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CommitOffsetsRequest {
            group: r.string()?,
            member_id: r.string()?,
            member_epoch: r.u32()?,
            offsets: r.vec_of("offset commits", OffsetCommit::MIN_SIZE, |r| {
                Ok(OffsetCommit {
                    topic: r.topic_name()?,
                    partition: r.u32()?,
                    offset: r.u64()?,
                    metadata: r.string()?,
                })
            })?,
        })
    }
}

impl Body for CommitOffsetsResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_count(buf, self.results.len());
        for p in &self.results {
            put_string(buf, &p.topic);
            buf.put_u32_le(p.partition);
            buf.put_u16_le(p.error);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(CommitOffsetsResponse {
            results: r.vec_of("partition results", PartitionResult::MIN_SIZE, |r| {
                Ok(PartitionResult {
                    topic: r.string()?,
                    partition: r.u32()?,
                    error: r.u16()?,
                })
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{decode_request, encoded_len, roundtrip};
    use crate::messages::{ApiKey, RequestError};

    #[test]
    fn rejects_commit_of_empty_topic_name() {
        let mut b = BytesMut::new();
        CommitOffsetsRequest {
            group: "g".into(),
            member_id: "m".into(),
            member_epoch: 1,
            offsets: vec![OffsetCommit {
                topic: String::new(),
                partition: 0,
                offset: 0,
                metadata: "x".into(),
            }],
        }
        .encode(&mut b);
        assert!(matches!(
            decode_request(ApiKey::CommitOffsets, b.to_vec()),
            Err(RequestError::Decode(DecodeError::InvalidName { .. }))
        ));
    }

    #[test]
    fn roundtrip_request() {
        roundtrip(&CommitOffsetsRequest {
            group: "indexers".into(),
            member_id: "m-1".into(),
            member_epoch: 4,
            offsets: vec![
                OffsetCommit {
                    topic: "facts".into(),
                    partition: 0,
                    offset: 1234,
                    metadata: "checkpoint 9".into(),
                },
                OffsetCommit {
                    topic: "facts".into(),
                    partition: 1,
                    offset: 0,
                    metadata: String::new(),
                },
            ],
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&CommitOffsetsResponse {
            results: vec![
                PartitionResult {
                    topic: "facts".into(),
                    partition: 0,
                    error: 0,
                },
                PartitionResult {
                    topic: "facts".into(),
                    partition: 1,
                    error: ErrorCode::FencedMember as u16,
                },
            ],
        });
        roundtrip(&CommitOffsetsResponse { results: vec![] });
    }

    #[test]
    fn unknown_partition_code_reads_as_unknown() {
        let ok = PartitionResult {
            topic: "t".into(),
            partition: 0,
            error: 0,
        };
        assert!(ok.is_ok());
        assert_eq!(ok.code(), ErrorCode::None);
        let newer = PartitionResult { error: 999, ..ok };
        assert!(!newer.is_ok());
        assert_eq!(newer.code(), ErrorCode::Unknown);
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = CommitOffsetsRequest {
            group: String::new(),
            member_id: String::new(),
            member_epoch: 0,
            offsets: vec![],
        };
        let one = CommitOffsetsRequest {
            offsets: vec![OffsetCommit {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                metadata: String::new(),
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            OffsetCommit::MIN_SIZE
        );
        let empty = CommitOffsetsResponse { results: vec![] };
        let one = CommitOffsetsResponse {
            results: vec![PartitionResult {
                topic: String::new(),
                partition: 0,
                error: 0,
            }],
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            PartitionResult::MIN_SIZE
        );
    }
}
