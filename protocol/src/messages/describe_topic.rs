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
//!           | offline opt<string reason> | damaged [ damage ] | scrub scrub
//!           | in_sync opt<[u64]>
//! damage    = first_offset u64 | end_offset u64 | first_index u64 | end_index u64
//!           | quarantined opt<string why> | reason string | skipped opt<skip>
//! skip      = at_ms u64 | reason string
//! scrub     = passes u64 | last_pass_ms u64 | verified_bytes u64
//! ```
//!
//! `configs` holds the topic's overrides (as given to CreateTopic), not the broker defaults.
//! The log figures are a snapshot: `log_start_offset` is the first retained offset,
//! `high_watermark` the end of what consumers may read (committed and applied),
//! `log_end_offset` the end of what the log holds (committed or not), and `size_bytes` the
//! bytes the partition's segments take on disk. `offline` says why a replica placed on the
//! broker is not serving (it failed to open, or is recovering from a storage failure); its
//! figures are then zero. `damaged` lists this replica's damaged ranges (bytes that failed
//! their checks: never served, repaired from another replica); `quarantined` says why no
//! healthy copy was found in the last repair round; `skipped`, when and why an operator gave
//! the range up (see [`super::skip_damage`]). `scrub` is the background scrubber's
//! progress over this replica: full passes over the log, when the last one ended (Unix ms,
//! 0 before the first) and the bytes it has verified. `in_sync` is given by the leader only:
//! the replicas that hold its log within a bounded lag and whose brokers are alive (itself
//! included); fewer than `replicas` means the partition is under-replicated. An unknown
//! topic is answered with `UnknownTopic`.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::messages::create_topic::ConfigEntry;
use crate::wire::{DecodeError, Reader, put_count, put_option, put_string};

/// Asks for one topic's settings and partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeTopicRequest {
    /// The topic.
    pub name: String,
}

/// One topic's settings and, per partition, this broker's view of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribeTopicResponse {
    /// The topic.
    pub name: String,
    /// The topic's overrides of the broker defaults.
    pub configs: Vec<ConfigEntry>,
    /// Each partition this broker hosts or has placed here (offline), in order.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition as the answering broker's replica (or, without one, the metadata) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition's number.
    pub partition: u32,
    /// `None` while the partition's Raft group has no leader.
    pub leader: Option<u64>,
    /// The Raft term of the partition's group.
    pub leader_epoch: u64,
    /// Node ids of the voters of the partition's group.
    pub replicas: Vec<u64>,
    /// The first retained offset.
    pub log_start_offset: u64,
    /// The end of what consumers may read (committed and applied here).
    pub high_watermark: u64,
    /// The end of what this replica's log holds, committed or not.
    pub log_end_offset: u64,
    /// Bytes the replica's segments take on disk.
    pub size_bytes: u64,
    /// Why this replica is not serving, if it is not.
    pub offline: Option<String>,
    /// This replica's damaged ranges.
    pub damaged: Vec<DamagedRange>,
    /// The background scrubber's progress over this replica.
    pub scrub: ScrubProgress,
    /// Given by the leader only: the replicas in sync with it (itself included).
    pub in_sync: Option<Vec<u64>>,
}

/// A damaged range of a replica's log: never served, repaired from another replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    /// The first record offset the range covers.
    pub first_offset: u64,
    /// The offset after the last record it covers.
    pub end_offset: u64,
    /// The first Raft log index it covers.
    pub first_index: u64,
    /// The index after the last entry it covers.
    pub end_index: u64,
    /// Why the last repair round found no healthy copy, if it did not.
    pub quarantined: Option<String>,
    /// What the first damaged frame failed.
    pub reason: String,
    /// When and why an operator gave the range up, if one did.
    pub skipped: Option<SkipRecord>,
}

/// An operator's record that a damaged range is given up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRecord {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// Why, as the operator gave it.
    pub reason: String,
}

impl DamagedRange {
    pub(crate) const MIN_SIZE: usize = 4 * 8 + 1 + 2 + 1;

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.first_offset);
        buf.put_u64_le(self.end_offset);
        buf.put_u64_le(self.first_index);
        buf.put_u64_le(self.end_index);
        put_option(buf, self.quarantined.as_ref(), |b, m| put_string(b, m));
        put_string(buf, &self.reason);
        put_option(buf, self.skipped.as_ref(), |b, s| {
            b.put_u64_le(s.at_ms);
            put_string(b, &s.reason);
        });
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<DamagedRange, DecodeError> {
        Ok(DamagedRange {
            first_offset: r.u64()?,
            end_offset: r.u64()?,
            first_index: r.u64()?,
            end_index: r.u64()?,
            quarantined: r.option(Reader::string)?,
            reason: r.string()?,
            skipped: r.option(|r| {
                Ok(SkipRecord {
                    at_ms: r.u64()?,
                    reason: r.string()?,
                })
            })?,
        })
    }
}

/// The scrubber's progress over one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScrubProgress {
    /// Full passes over the log completed.
    pub passes: u64,
    /// When the last full pass ended (Unix ms), 0 before the first.
    pub last_pass_ms: u64,
    /// Bytes of this replica's log verified so far, over all passes.
    pub verified_bytes: u64,
}

impl PartitionDescription {
    /// The fewest bytes one entry takes: partition, absent leader, epoch, no replicas, the
    /// four log figures, no offline reason, no damage, the scrub figures and no in-sync
    /// list.
    const MIN_SIZE: usize = 4 + 1 + 8 + 4 + 4 * 8 + 1 + 4 + 3 * 8 + 1;
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
            put_count(buf, p.damaged.len());
            for d in &p.damaged {
                d.encode(buf);
            }
            buf.put_u64_le(p.scrub.passes);
            buf.put_u64_le(p.scrub.last_pass_ms);
            buf.put_u64_le(p.scrub.verified_bytes);
            put_option(buf, p.in_sync.as_ref(), |b, ids| {
                put_count(b, ids.len());
                for id in ids {
                    b.put_u64_le(*id);
                }
            });
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
                    damaged: r.vec_of(
                        "damaged ranges",
                        DamagedRange::MIN_SIZE,
                        DamagedRange::decode,
                    )?,
                    scrub: ScrubProgress {
                        passes: r.u64()?,
                        last_pass_ms: r.u64()?,
                        verified_bytes: r.u64()?,
                    },
                    in_sync: r.option(|r| r.vec_of("in-sync replicas", 8, Reader::u64))?,
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
                    damaged: vec![DamagedRange {
                        first_offset: 120,
                        end_offset: 140,
                        first_index: 30,
                        end_index: 34,
                        quarantined: Some("broker 2: damaged there too".into()),
                        reason: "frame header crc mismatch".into(),
                        skipped: Some(SkipRecord {
                            at_ms: 1_764_000_000_000,
                            reason: "lost on every replica".into(),
                        }),
                    }],
                    scrub: ScrubProgress {
                        passes: 2,
                        last_pass_ms: 1_700_000_000_000,
                        verified_bytes: 1 << 30,
                    },
                    in_sync: Some(vec![1, 3]),
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
                    damaged: vec![],
                    scrub: ScrubProgress::default(),
                    in_sync: None,
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
                damaged: vec![],
                scrub: ScrubProgress::default(),
                in_sync: None,
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            PartitionDescription::MIN_SIZE
        );
    }
}
