//! DescribeTopic: one topic's settings and, per partition, its placement and log figures.
//!
//! Request:
//!
//! ```text
//! +--------------+
//! | name: string |
//! +--------------+
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +--------------+---------------------+---------------------------+
//! | name: string | configs: [ config ] | partitions: [ partition ] |
//! +--------------+---------------------+---------------------------+
//!
//! config    = key: string (1 to 255 bytes) | value: string
//! partition = partition u32 | leader opt<u64 node id> | leader_epoch u64 | replicas [u64]
//!           | log_start_offset u64 | high_watermark u64 | log_end_offset u64 | size_bytes u64
//!           | offline opt<string reason>
//! ```
//!
//! `configs` holds the topic's overrides (as given to CreateTopic), not the broker defaults.
//! The log figures are a snapshot: `log_start_offset` is the first retained offset,
//! `high_watermark` the end of what consumers may read (committed and applied),
//! `log_end_offset` the end of what the log holds (committed or not), and `size_bytes` the
//! bytes the partition's segments take on disk. `offline` says why a replica placed on the
//! broker is not serving (it failed to open, or is recovering from a storage failure); its
//! figures are then zero. An unknown topic is answered with `UnknownTopic`.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::messages::create_topic::ConfigEntry;
use crate::wire::{DecodeError, Reader, put_count, put_option, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeTopicRequest {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeTopicResponse {
    pub name: String,
    /// The topic's overrides of the broker defaults.
    pub configs: Vec<ConfigEntry>,
    pub partitions: Vec<PartitionDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    pub partition: u32,
    /// `None` while the partition's Raft group has no leader.
    pub leader: Option<u64>,
    /// The Raft term of the partition's group.
    pub leader_epoch: u64,
    /// Node ids of the voters of the partition's group.
    pub replicas: Vec<u64>,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
    pub size_bytes: u64,
    /// Why this replica is not serving, if it is not.
    pub offline: Option<String>,
}

impl PartitionDescription {
    /// The fewest bytes one entry takes: partition, absent leader, epoch, no replicas and
    /// the four log figures.
    const MIN_SIZE: usize = 4 + 1 + 8 + 4 + 4 * 8 + 1;
}

impl Body for DescribeTopicRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.name);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeTopicRequest { name: r.string()? })
    }
}

impl Body for DescribeTopicResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.name);
        ConfigEntry::encode_all(&self.configs, buf);
        put_count(buf, self.partitions.len());
        for p in &self.partitions {
            buf.put_u32_le(p.partition);
            put_option(buf, p.leader.as_ref(), |b, id| b.put_u64_le(*id));
            buf.put_u64_le(p.leader_epoch);
            put_count(buf, p.replicas.len());
            for r in &p.replicas {
                buf.put_u64_le(*r);
            }
            buf.put_u64_le(p.log_start_offset);
            buf.put_u64_le(p.high_watermark);
            buf.put_u64_le(p.log_end_offset);
            buf.put_u64_le(p.size_bytes);
            put_option(buf, p.offline.as_ref(), |b, m| put_string(b, m));
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeTopicResponse {
            name: r.string()?,
            configs: ConfigEntry::decode_all(r)?,
            partitions: r.vec_of("partitions", PartitionDescription::MIN_SIZE, |r| {
                Ok(PartitionDescription {
                    partition: r.u32()?,
                    leader: r.option(Reader::u64)?,
                    leader_epoch: r.u64()?,
                    replicas: r.vec_of("replicas", 8, Reader::u64)?,
                    log_start_offset: r.u64()?,
                    high_watermark: r.u64()?,
                    log_end_offset: r.u64()?,
                    size_bytes: r.u64()?,
                    offline: r.option(Reader::string)?,
                })
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{encoded_len, roundtrip};

    #[test]
    fn roundtrip_request() {
        roundtrip(&DescribeTopicRequest {
            name: "facts".into(),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&DescribeTopicResponse {
            name: "facts".into(),
            configs: vec![ConfigEntry {
                key: "retention.bytes".into(),
                value: "1073741824".into(),
            }],
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    leader: Some(1),
                    leader_epoch: 3,
                    replicas: vec![1, 2, 3],
                    log_start_offset: 100,
                    high_watermark: 250,
                    log_end_offset: 260,
                    size_bytes: 1 << 20,
                    offline: Some("cannot open: segment.bytes out of range".into()),
                },
                PartitionDescription {
                    partition: 1,
                    leader: None,
                    leader_epoch: 0,
                    replicas: vec![],
                    log_start_offset: 0,
                    high_watermark: 0,
                    log_end_offset: 0,
                    size_bytes: 0,
                    offline: None,
                },
            ],
        });
        roundtrip(&DescribeTopicResponse {
            name: String::new(),
            configs: vec![],
            partitions: vec![],
        });
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = DescribeTopicResponse {
            name: String::new(),
            configs: vec![],
            partitions: vec![],
        };
        let one = DescribeTopicResponse {
            partitions: vec![PartitionDescription {
                partition: 0,
                leader: None,
                leader_epoch: 0,
                replicas: vec![],
                log_start_offset: 0,
                high_watermark: 0,
                log_end_offset: 0,
                size_bytes: 0,
                offline: None,
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            PartitionDescription::MIN_SIZE
        );
    }
}
