//! FetchOffsets: read a consumer group's committed offsets, so that a member knows where to
//! resume a partition it has just been assigned. Sent to the group's coordinator.
//!
//! Request:
//!
//! ```text
//! +---------------+---------------------------------------+
//! | group: string | partitions: opt<[ topic_partitions ]> |
//! +---------------+---------------------------------------+
//!
//! topic_partitions = topic: string | partitions: [u32]
//! absent partitions = every partition the group has committed
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +------------------------+
//! | offsets: [ committed ] |
//! +------------------------+
//!
//! committed = topic: string | partition u32 | offset: opt<u64> | metadata: string
//! ```
//!
//! When partitions are named, there is one entry per named partition, in request order, and
//! `offset` is absent for a partition the group has never committed (the consumer then
//! starts from its reset policy: earliest or latest). When they are not, there is one entry
//! per partition with a committed offset. `offset` is the next offset to consume, as
//! committed by [`super::commit_offsets`].

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::messages::heartbeat::TopicPartitions;
use crate::wire::{DecodeError, Reader, put_count, put_option, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Asks a group's coordinator for committed offsets.
pub struct FetchOffsetsRequest {
    /// The group id.
    pub group: String,
    /// `None` asks for every partition the group has committed.
    pub partitions: Option<Vec<TopicPartitions>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Committed offsets, per partition.
pub struct FetchOffsetsResponse {
    /// Offsets, per partition.
    pub offsets: Vec<CommittedOffset>,
}

/// What a group has committed for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset to consume; `None` if the group never committed this partition.
    pub offset: Option<u64>,
    /// Free text kept with the offset.
    pub metadata: String,
}

impl CommittedOffset {
    /// The fewest bytes one entry takes: empty topic, partition, absent offset, empty
    /// metadata.
    const MIN_SIZE: usize = 2 + 4 + 1 + 2;
}

impl Body for FetchOffsetsRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.group);
        put_option(buf, self.partitions.as_ref(), |b, p| {
            TopicPartitions::encode_all(p, b)
        });
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchOffsetsRequest {
            group: r.string()?,
            partitions: r.option(TopicPartitions::decode_all)?,
        })
    }
}

impl Body for FetchOffsetsResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_count(buf, self.offsets.len());
        for o in &self.offsets {
            put_string(buf, &o.topic);
            buf.put_u32_le(o.partition);
            put_option(buf, o.offset.as_ref(), |b, v| b.put_u64_le(*v));
            put_string(buf, &o.metadata);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchOffsetsResponse {
            offsets: r.vec_of("committed offsets", CommittedOffset::MIN_SIZE, |r| {
                Ok(CommittedOffset {
                    topic: r.string()?,
                    partition: r.u32()?,
                    offset: r.option(Reader::u64)?,
                    metadata: r.string()?,
                })
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ApiKey;
    use crate::messages::testing::{budget_exceeded, decode_request, encoded_len, roundtrip};

    #[test]
    fn rejects_fetch_offsets_of_many_empty_topic_partitions() {
        let empty = TopicPartitions {
            topic: "t".into(),
            partitions: vec![],
        };
        let mut b = BytesMut::new();
        FetchOffsetsRequest {
            group: "g".into(),
            partitions: Some(vec![empty; 10_000]),
        }
        .encode(&mut b);
        let res = decode_request(ApiKey::FetchOffsets, b.to_vec());
        assert_eq!(budget_exceeded(res), Some(("topic partitions", 10_000)));
    }

    #[test]
    fn roundtrip_request() {
        roundtrip(&FetchOffsetsRequest {
            group: "indexers".into(),
            partitions: None,
        });
        roundtrip(&FetchOffsetsRequest {
            group: "indexers".into(),
            partitions: Some(vec![TopicPartitions {
                topic: "facts".into(),
                partitions: vec![0, 1, 2],
            }]),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&FetchOffsetsResponse {
            offsets: vec![
                CommittedOffset {
                    topic: "facts".into(),
                    partition: 0,
                    offset: Some(500),
                    metadata: "batch 12".into(),
                },
                CommittedOffset {
                    topic: "facts".into(),
                    partition: 1,
                    offset: None,
                    metadata: String::new(),
                },
            ],
        });
        roundtrip(&FetchOffsetsResponse { offsets: vec![] });
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = FetchOffsetsResponse { offsets: vec![] };
        let one = FetchOffsetsResponse {
            offsets: vec![CommittedOffset {
                topic: String::new(),
                partition: 0,
                offset: None,
                metadata: String::new(),
            }],
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            CommittedOffset::MIN_SIZE
        );
    }
}
