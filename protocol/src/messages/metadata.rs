//! Metadata: the brokers of the cluster and, per topic, each partition's leader, leader
//! epoch and replicas. Clients bootstrap from any broker with it and refresh it when told
//! `NotLeader` (D9).
//!
//! Request:
//!
//! ```text
//! +-----------------------+
//! | topics: opt<[string]> |
//! +-----------------------+
//! absent = every topic; present = only these (an empty list asks for brokers only)
//! each name is 1 to 249 bytes
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +---------------------+-----------------------------------+-------------------+
//! | brokers: [ broker ] | metadata_leader: opt<u64 node id> | topics: [ topic ] |
//! +---------------------+-----------------------------------+-------------------+
//!
//! broker    = node_id u64 | addr: string | state u8
//! topic     = name: string | partitions: [ partition ] | map_epoch u64 | splits: [ split ]
//! split     = epoch u64 | from u32 | to u32 | points: [ opt<offset u64 | hlc u64> ]
//! partition = partition u32 | leader opt<u64 node id> | leader_epoch u64 | replicas [u64]
//!             | target opt<[u64]>
//! state     = 0 joining | 1 active | 2 draining | 3 removed
//! ```
//!
//! A broker is *joining* while it is not yet a registered member, *active* once it is,
//! *draining* from `cluster decommission` until every replica has moved off it, and
//! *removed* after (it is then no longer a member, and gets no new replicas). A partition's
//! `target` is present while it moves (`partition reassign`): the replicas it moves to.
//!
//! A topic's `map_epoch` counts its partition-count changes (`topic add-partitions`); each
//! is a `split` from `from` to `to` partitions. For each old partition (`points` has `from`
//! entries, in partition order) the split point is the offset and HLC at which subjects
//! that jump hash sends elsewhere under `to` stop being written there; it is absent until
//! that partition's log records it. Those subjects' records before the split point are in
//! the old partition, and from it on in the new one: a reader that wants a subject in order
//! reads the old partition up to the split point before the new one. A new partition takes
//! records only once every point of its split is present.
//!
//! Topics that do not exist are absent from the response: a client that asked for a topic
//! and does not find it knows the topic is unknown, with no per-topic error code.
//! `metadata_leader` is the leader of the metadata Raft group, which creates and deletes
//! topics. A partition's `leader` is absent while its group elects one; `leader_epoch` is the
//! Raft term of its group, so a client can tell newer metadata from older.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_count, put_option, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Asks for brokers, topics, partitions and their leaders.
pub struct MetadataRequest {
    /// `None` asks for every topic.
    pub topics: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The cluster as this broker knows it.
pub struct MetadataResponse {
    /// Every broker.
    pub brokers: Vec<BrokerInfo>,
    /// The leader of the metadata group, if it has one (topic admin requests go there).
    pub metadata_leader: Option<u64>,
    /// The topics.
    pub topics: Vec<TopicMetadata>,
}

/// A broker and where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's node id.
    pub node_id: u64,
    /// `host:port` of its client listener.
    pub addr: String,
    /// Where it stands in the cluster's life.
    pub state: BrokerState,
}

/// Where a broker stands in the cluster's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BrokerState {
    /// Known to the cluster but not yet a registered member.
    Joining,
    /// A member that takes replicas.
    Active,
    /// Decommissioned: its replicas are moving elsewhere, and it gets no new ones.
    Draining,
    /// Decommissioned, with nothing left on it: no longer a member.
    Removed,
}

impl BrokerState {
    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            BrokerState::Joining => 0,
            BrokerState::Active => 1,
            BrokerState::Draining => 2,
            BrokerState::Removed => 3,
        }
    }

    /// The state of a wire value, if it names one.
    pub fn from_code(code: u8) -> Option<BrokerState> {
        Some(match code {
            0 => BrokerState::Joining,
            1 => BrokerState::Active,
            2 => BrokerState::Draining,
            3 => BrokerState::Removed,
            _ => return None,
        })
    }

    /// The lower-case name (`joining`, `active`, `draining`, `removed`).
    pub fn name(self) -> &'static str {
        match self {
            BrokerState::Joining => "joining",
            BrokerState::Active => "active",
            BrokerState::Draining => "draining",
            BrokerState::Removed => "removed",
        }
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<BrokerState, DecodeError> {
        let code = r.u8()?;
        BrokerState::from_code(code).ok_or(DecodeError::InvalidTag {
            what: "broker state",
            tag: u64::from(code),
            offset: r.position(),
        })
    }
}

impl std::fmt::Display for BrokerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One topic and its partitions.
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// The partitions.
    pub partitions: Vec<PartitionMetadata>,
    /// How many times the partition count changed (0: never).
    pub map_epoch: u64,
    /// Each change of the partition count, oldest first.
    pub splits: Vec<SplitInfo>,
}

/// One growth of a topic's partition count, and where each old partition split. (Brokers
/// keep it in their metadata as it is, hence serde.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitInfo {
    /// The map epoch this split started.
    pub epoch: u64,
    /// The partition count before.
    pub from: u32,
    /// The partition count after.
    pub to: u32,
    /// Per old partition (`from` of them): its split point, once recorded.
    pub points: Vec<Option<SplitPoint>>,
}

/// Where an old partition stopped taking the subjects that moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitPoint {
    /// The offset of the partition's first record written under the new map: every record
    /// of a moved subject in it is below this offset.
    pub offset: u64,
    /// The HLC of the partition's last record before the split point (0 if none).
    pub hlc: u64,
}

impl SplitInfo {
    /// The fewest bytes one entry takes: epoch, from, to, no points.
    const MIN_SIZE: usize = 8 + 4 + 4 + 4;

    /// Whether every old partition has recorded its split point.
    pub fn sealed(&self) -> bool {
        self.points.iter().all(Option::is_some)
    }

    /// The highest HLC of any split point: new partitions stamp their records above it.
    pub fn max_hlc(&self) -> u64 {
        self.points
            .iter()
            .flatten()
            .map(|p| p.hlc)
            .max()
            .unwrap_or(0)
    }
}

impl TopicMetadata {
    /// The split that created `partition`, if the topic grew to make it.
    pub fn split_creating(&self, partition: u32) -> Option<&SplitInfo> {
        self.splits
            .iter()
            .find(|s| partition >= s.from && partition < s.to)
    }

    /// Whether `partition` may be read from the start without breaking any subject's order:
    /// it existed from the topic's creation, or its split is sealed.
    pub fn open_for_reading(&self, partition: u32) -> bool {
        self.split_creating(partition).is_none_or(SplitInfo::sealed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One partition: its leader and replicas.
pub struct PartitionMetadata {
    /// The partition.
    pub partition: u32,
    /// `None` while the partition's Raft group has no leader.
    pub leader: Option<u64>,
    /// The Raft term of the partition's group.
    pub leader_epoch: u64,
    /// Node ids of the voters of the partition's group.
    pub replicas: Vec<u64>,
    /// While the partition moves: the replicas it moves to.
    pub target: Option<Vec<u64>>,
}

impl BrokerInfo {
    /// The fewest bytes one entry takes: a node id, an empty address and a state.
    const MIN_SIZE: usize = 8 + 2 + 1;
}

impl TopicMetadata {
    /// The fewest bytes one entry takes: an empty name, no partitions, an epoch and no
    /// splits.
    const MIN_SIZE: usize = 2 + 4 + 8 + 4;
}

impl PartitionMetadata {
    /// The fewest bytes one entry takes: partition, absent leader, epoch, no replicas, no
    /// target.
    const MIN_SIZE: usize = 4 + 1 + 8 + 4 + 1;
}

impl MetadataResponse {
    /// The broker with this node id, if listed.
    pub fn broker(&self, node_id: u64) -> Option<&BrokerInfo> {
        self.brokers.iter().find(|b| b.node_id == node_id)
    }

    /// The topic of this name, if listed.
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|t| t.name == name)
    }
}

impl Body for MetadataRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_option(buf, self.topics.as_ref(), |b, topics| {
            put_count(b, topics.len());
            for t in topics {
                put_string(b, t);
            }
        });
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(MetadataRequest {
            topics: r.option(|r| r.vec_of("topic names", 3, Reader::topic_name))?,
        })
    }
}

impl Body for MetadataResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_count(buf, self.brokers.len());
        for b in &self.brokers {
            buf.put_u64_le(b.node_id);
            put_string(buf, &b.addr);
            buf.put_u8(b.state.code());
        }
        put_option(buf, self.metadata_leader.as_ref(), |b, id| {
            b.put_u64_le(*id)
        });
        put_count(buf, self.topics.len());
        for t in &self.topics {
            put_string(buf, &t.name);
            put_count(buf, t.partitions.len());
            for p in &t.partitions {
                buf.put_u32_le(p.partition);
                put_option(buf, p.leader.as_ref(), |b, id| b.put_u64_le(*id));
                buf.put_u64_le(p.leader_epoch);
                put_ids(buf, &p.replicas);
                put_option(buf, p.target.as_ref(), |b, ids| put_ids(b, ids));
            }
            buf.put_u64_le(t.map_epoch);
            put_count(buf, t.splits.len());
            for s in &t.splits {
                buf.put_u64_le(s.epoch);
                buf.put_u32_le(s.from);
                buf.put_u32_le(s.to);
                put_count(buf, s.points.len());
                for p in &s.points {
                    put_option(buf, p.as_ref(), |b, p| {
                        b.put_u64_le(p.offset);
                        b.put_u64_le(p.hlc);
                    });
                }
            }
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(MetadataResponse {
            brokers: r.vec_of("brokers", BrokerInfo::MIN_SIZE, |r| {
                Ok(BrokerInfo {
                    node_id: r.u64()?,
                    addr: r.string()?,
                    state: BrokerState::decode(r)?,
                })
            })?,
            metadata_leader: r.option(Reader::u64)?,
            topics: r.vec_of("topics", TopicMetadata::MIN_SIZE, |r| {
                Ok(TopicMetadata {
                    name: r.string()?,
                    partitions: r.vec_of("partitions", PartitionMetadata::MIN_SIZE, |r| {
                        Ok(PartitionMetadata {
                            partition: r.u32()?,
                            leader: r.option(Reader::u64)?,
                            leader_epoch: r.u64()?,
                            replicas: r.vec_of("replicas", 8, Reader::u64)?,
                            target: r.option(|r| r.vec_of("target replicas", 8, Reader::u64))?,
                        })
                    })?,
                    map_epoch: r.u64()?,
                    splits: r.vec_of("splits", SplitInfo::MIN_SIZE, |r| {
                        Ok(SplitInfo {
                            epoch: r.u64()?,
                            from: r.u32()?,
                            to: r.u32()?,
                            points: r.vec_of("split points", 1, |r| {
                                r.option(|r| {
                                    Ok(SplitPoint {
                                        offset: r.u64()?,
                                        hlc: r.u64()?,
                                    })
                                })
                            })?,
                        })
                    })?,
                })
            })?,
        })
    }
}

/// Writes a list of node ids.
pub(crate) fn put_ids(buf: &mut BytesMut, ids: &[u64]) {
    put_count(buf, ids.len());
    for id in ids {
        buf.put_u64_le(*id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::ApiKey;
    use crate::messages::RequestError;
    use crate::messages::testing::{budget_exceeded, decode_request, encoded_len, roundtrip};
    use crate::wire::{DecodeError, put_count};

    /// A Metadata request body listing `count` topics named `name`.
    fn request_of(count: usize, name: &str) -> Vec<u8> {
        let mut b = vec![1u8];
        put_count(&mut b, count);
        for _ in 0..count {
            put_string(&mut b, name);
        }
        b
    }

    #[test]
    fn rejects_metadata_request_of_empty_names() {
        // One empty name, and a byte more so that the count itself is plausible.
        let mut body = request_of(1, "");
        body.push(0);
        let err = decode_request(ApiKey::Metadata, body).unwrap_err();
        assert!(matches!(
            err,
            RequestError::Decode(DecodeError::InvalidName {
                what: "topic name",
                offset: 5,
                len: 0,
                ..
            })
        ));
        // The attack: a 16 MiB frame of 8 million empty names. An empty name is not a
        // topic name, so the count cannot be backed by the bytes at 3 bytes a name and is
        // refused before anything is reserved.
        let count = ((16 << 20) - 5) / 2;
        let err = decode_request(ApiKey::Metadata, request_of(count, "")).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Decode(DecodeError::LengthOverrun { offset: 1, .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn rejects_metadata_request_of_many_one_byte_names() {
        // 5.6 million one-byte names fill 16 MiB and would take 140 MB as `String`s.
        let count = ((16 << 20) - 5) / 3;
        let res = decode_request(ApiKey::Metadata, request_of(count, "a"));
        assert_eq!(budget_exceeded(res), Some(("topic names", count as u64)));
    }

    #[test]
    fn decodes_metadata_request_of_realistic_names_up_to_the_frame() {
        // Names of six bytes or more never reach the budget, however many.
        let count = 100_000;
        let req = decode_request(ApiKey::Metadata, request_of(count, "facts1")).unwrap();
        let crate::messages::Request::Metadata(m) = req else {
            panic!("wrong request type")
        };
        assert_eq!(m.topics.map(|t| t.len()), Some(count));
    }

    #[test]
    fn roundtrip_request() {
        roundtrip(&MetadataRequest { topics: None });
        roundtrip(&MetadataRequest {
            topics: Some(vec![]),
        });
        roundtrip(&MetadataRequest {
            topics: Some(vec!["facts".into(), "people".into()]),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&MetadataResponse {
            brokers: vec![
                BrokerInfo {
                    node_id: 1,
                    addr: "127.0.0.1:9092".into(),
                    state: BrokerState::Active,
                },
                BrokerInfo {
                    node_id: 2,
                    addr: "127.0.0.1:9093".into(),
                    state: BrokerState::Draining,
                },
            ],
            metadata_leader: Some(1),
            topics: vec![TopicMetadata {
                name: "facts".into(),
                partitions: vec![
                    PartitionMetadata {
                        partition: 0,
                        leader: Some(2),
                        leader_epoch: 4,
                        replicas: vec![1, 2],
                        target: Some(vec![2, 3]),
                    },
                    PartitionMetadata {
                        partition: 1,
                        leader: None,
                        leader_epoch: 0,
                        replicas: vec![],
                        target: None,
                    },
                ],
                map_epoch: 1,
                splits: vec![SplitInfo {
                    epoch: 1,
                    from: 1,
                    to: 2,
                    points: vec![Some(SplitPoint {
                        offset: 42,
                        hlc: 7 << 32,
                    })],
                }],
            }],
        });
        roundtrip(&MetadataResponse {
            brokers: vec![],
            metadata_leader: None,
            topics: vec![],
        });
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = MetadataResponse {
            brokers: vec![],
            metadata_leader: None,
            topics: vec![],
        };
        let broker = MetadataResponse {
            brokers: vec![BrokerInfo {
                node_id: 0,
                addr: String::new(),
                state: BrokerState::Joining,
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&broker) - encoded_len(&empty),
            BrokerInfo::MIN_SIZE
        );
        let topic = MetadataResponse {
            topics: vec![TopicMetadata {
                name: String::new(),
                partitions: vec![],
                map_epoch: 0,
                splits: vec![],
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&topic) - encoded_len(&empty),
            TopicMetadata::MIN_SIZE
        );
        let partition = MetadataResponse {
            topics: vec![TopicMetadata {
                name: String::new(),
                partitions: vec![PartitionMetadata {
                    partition: 0,
                    leader: None,
                    leader_epoch: 0,
                    replicas: vec![],
                    target: None,
                }],
                map_epoch: 0,
                splits: vec![],
            }],
            ..empty
        };
        assert_eq!(
            encoded_len(&partition) - encoded_len(&topic),
            PartitionMetadata::MIN_SIZE
        );
    }
}
