//! DescribeGroup: one consumer group in full — its members with their subscriptions and
//! assignments, and per partition the committed offset, the owner and the lag. Sent to the
//! group's coordinator.
//!
//! Request:
//!
//! ```text
//! +---------------+
//! | group: string |
//! +---------------+
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +---------------+----------+-----------+-----------------+
//! | group: string | state u8 | epoch u32 | coordinator u64 |
//! +---------------+----------+-----------+-----------------+
//! +---------------------+----------------------------+
//! | members: [ member ] | offsets: [ partition_lag ] |
//! +---------------------+----------------------------+
//!
//! member        = member_id string | instance_id opt<string> | member_epoch u32
//!               | subscription [string] | assignment [topic_partitions] | lag u64
//! partition_lag = topic string | partition u32 | committed opt<u64>
//!               | high_watermark opt<u64> | lag u64 | owner opt<string member id>
//! topic_partitions = topic: string | partitions: [u32]
//! state: 0 = empty, 1 = stable, 2 = reconciling, 3 = dead
//! ```
//!
//! `epoch` is the group epoch, raised whenever membership or subscriptions change.
//! `coordinator` is the node id of the broker that answered. A member's `assignment` is what
//! it currently owns. `offsets` has one entry per partition of the subscribed topics:
//! `lag` is the number of records between the committed offset (or the log start offset when
//! nothing is committed) and the high watermark, and a member's `lag` is the sum over the
//! partitions it owns. The figures are a snapshot taken when the request is answered.
//!
//! The coordinator knows the high watermarks of the partitions hosted on its own broker
//! only. For the others `high_watermark` is absent and `lag` is 0 (and left out of the
//! members' sums): the client asks those partitions' leaders (`ListOffsets`, latest) and
//! completes the figures, as Kafka's admin client does.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::messages::heartbeat::TopicPartitions;
use crate::messages::list_groups::GroupState;
use crate::wire::{DecodeError, Reader, put_count, put_option, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Asks a group's coordinator for its members, assignment, committed offsets and lag.
pub struct DescribeGroupRequest {
    /// The group id.
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A group's state, members and per-partition progress.
pub struct DescribeGroupResponse {
    /// The group id.
    pub group: String,
    /// The group's state.
    pub state: GroupState,
    /// The group epoch.
    pub epoch: u32,
    /// Node id of the group's coordinator.
    pub coordinator: u64,
    /// The group's members.
    pub members: Vec<MemberDescription>,
    /// Offsets, per partition.
    pub offsets: Vec<PartitionLag>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One member of a group.
pub struct MemberDescription {
    /// The member id the coordinator gave.
    pub member_id: String,
    /// Set for static members.
    pub instance_id: Option<String>,
    /// The member's current epoch.
    pub member_epoch: u32,
    /// The topics the member consumes.
    pub subscription: Vec<String>,
    /// The partitions the member currently owns.
    pub assignment: Vec<TopicPartitions>,
    /// Total lag over the partitions the member owns.
    pub lag: u64,
}

/// How far the group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The next offset to consume, if the group has committed one.
    pub committed: Option<u64>,
    /// The partition's high watermark, if the coordinator's broker hosts the partition.
    pub high_watermark: Option<u64>,
    /// Records from the committed offset to the high watermark (0 while that is unknown).
    pub lag: u64,
    /// The member id of the member that owns the partition, if any.
    pub owner: Option<String>,
}

impl MemberDescription {
    /// The fewest bytes one entry takes: empty id, absent instance id, epoch, no
    /// subscription, no assignment, lag.
    const MIN_SIZE: usize = 2 + 1 + 4 + 4 + 4 + 8;
}

impl PartitionLag {
    /// The fewest bytes one entry takes: empty topic, partition, absent committed offset,
    /// absent high watermark, lag, absent owner.
    const MIN_SIZE: usize = 2 + 4 + 1 + 1 + 8 + 1;
}

impl Body for DescribeGroupRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.group);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeGroupRequest { group: r.string()? })
    }
}

impl Body for DescribeGroupResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.group);
        self.state.encode(buf);
        buf.put_u32_le(self.epoch);
        buf.put_u64_le(self.coordinator);
        put_count(buf, self.members.len());
        for m in &self.members {
            put_string(buf, &m.member_id);
            put_option(buf, m.instance_id.as_ref(), |b, id| put_string(b, id));
            buf.put_u32_le(m.member_epoch);
            put_count(buf, m.subscription.len());
            for t in &m.subscription {
                put_string(buf, t);
            }
            TopicPartitions::encode_all(&m.assignment, buf);
            buf.put_u64_le(m.lag);
        }
        put_count(buf, self.offsets.len());
        for p in &self.offsets {
            put_string(buf, &p.topic);
            buf.put_u32_le(p.partition);
            put_option(buf, p.committed.as_ref(), |b, o| b.put_u64_le(*o));
            put_option(buf, p.high_watermark.as_ref(), |b, h| b.put_u64_le(*h));
            buf.put_u64_le(p.lag);
            put_option(buf, p.owner.as_ref(), |b, id| put_string(b, id));
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DescribeGroupResponse {
            group: r.string()?,
            state: GroupState::decode(r)?,
            epoch: r.u32()?,
            coordinator: r.u64()?,
            members: r.vec_of("members", MemberDescription::MIN_SIZE, |r| {
                Ok(MemberDescription {
                    member_id: r.string()?,
                    instance_id: r.option(Reader::string)?,
                    member_epoch: r.u32()?,
                    subscription: r.vec_of("subscribed topics", 3, Reader::topic_name)?,
                    assignment: TopicPartitions::decode_all(r)?,
                    lag: r.u64()?,
                })
            })?,
            offsets: r.vec_of("partition lags", PartitionLag::MIN_SIZE, |r| {
                Ok(PartitionLag {
                    topic: r.string()?,
                    partition: r.u32()?,
                    committed: r.option(Reader::u64)?,
                    high_watermark: r.option(Reader::u64)?,
                    lag: r.u64()?,
                    owner: r.option(Reader::string)?,
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
        roundtrip(&DescribeGroupRequest {
            group: "indexers".into(),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&DescribeGroupResponse {
            group: "indexers".into(),
            state: GroupState::Reconciling,
            epoch: 9,
            coordinator: 2,
            members: vec![
                MemberDescription {
                    member_id: "m-1".into(),
                    instance_id: Some("host-a".into()),
                    member_epoch: 9,
                    subscription: vec!["facts".into()],
                    assignment: vec![TopicPartitions {
                        topic: "facts".into(),
                        partitions: vec![0],
                    }],
                    lag: 40,
                },
                MemberDescription {
                    member_id: "m-2".into(),
                    instance_id: None,
                    member_epoch: 8,
                    subscription: vec![],
                    assignment: vec![],
                    lag: 0,
                },
            ],
            offsets: vec![
                PartitionLag {
                    topic: "facts".into(),
                    partition: 0,
                    committed: Some(60),
                    high_watermark: Some(100),
                    lag: 40,
                    owner: Some("m-1".into()),
                },
                PartitionLag {
                    topic: "facts".into(),
                    partition: 1,
                    committed: None,
                    high_watermark: None,
                    lag: 0,
                    owner: None,
                },
            ],
        });
        roundtrip(&DescribeGroupResponse {
            group: String::new(),
            state: GroupState::Empty,
            epoch: 0,
            coordinator: 0,
            members: vec![],
            offsets: vec![],
        });
    }

    #[test]
    fn rejects_unknown_group_state() {
        let mut buf = BytesMut::new();
        DescribeGroupResponse {
            group: "g".into(),
            state: GroupState::Dead,
            epoch: 1,
            coordinator: 1,
            members: vec![],
            offsets: vec![],
        }
        .encode(&mut buf);
        buf[2 + 1] = 0xff;
        let err = DescribeGroupResponse::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::InvalidTag {
                what: "group state",
                tag: 255,
                offset: 3,
            }
        ));
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = DescribeGroupResponse {
            group: String::new(),
            state: GroupState::Empty,
            epoch: 0,
            coordinator: 0,
            members: vec![],
            offsets: vec![],
        };
        let member = DescribeGroupResponse {
            members: vec![MemberDescription {
                member_id: String::new(),
                instance_id: None,
                member_epoch: 0,
                subscription: vec![],
                assignment: vec![],
                lag: 0,
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&member) - encoded_len(&empty),
            MemberDescription::MIN_SIZE
        );
        let lag = DescribeGroupResponse {
            offsets: vec![PartitionLag {
                topic: String::new(),
                partition: 0,
                committed: None,
                high_watermark: None,
                lag: 0,
                owner: None,
            }],
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&lag) - encoded_len(&empty),
            PartitionLag::MIN_SIZE
        );
    }
}
