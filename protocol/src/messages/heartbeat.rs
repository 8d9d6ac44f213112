//! Heartbeat: a consumer group member's one periodic call. It joins the group, keeps the
//! membership alive, reports which partitions the member owns and receives the partitions it
//! should own (D10; the incremental protocol of Kafka's KIP-848).
//!
//! Request:
//!
//! ```text
//! +---------------+------------------+-------------------+------------------+
//! | group: string | member_id string | instance_id       | member_epoch u32 |
//! |               | ("" to join)     | opt<string>       | (0 to join)      |
//! +---------------+------------------+-------------------+------------------+
//! +------------------------+------------------------+-----------------------------+
//! | session_timeout_ms u32 | subscription: [string] | owned: [ topic_partitions ] |
//! +------------------------+------------------------+-----------------------------+
//!
//! topic_partitions = topic: string | partitions: [u32]
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +------------------+------------------+---------------------------+---------------------------+
//! | member_id string | member_epoch u32 | heartbeat_interval_ms u32 | assignment:               |
//! |                  |                  |                           | opt<[ topic_partitions ]> |
//! +------------------+------------------+---------------------------+---------------------------+
//! absent assignment = unchanged
//! ```
//!
//! A member joins with an empty `member_id` and epoch 0; the coordinator answers with the
//! member id and epoch to use from then on. With an `instance_id` (static membership), a
//! member that comes back within its session timeout takes over its previous id and
//! assignment instead of causing a rebalance. A member that does not heartbeat within
//! `session_timeout_ms` is removed and its partitions are reassigned.
//!
//! `subscription` and `owned` are sent in full on every heartbeat. `assignment` is absent
//! when it has not changed since the last response, and otherwise is the whole set of
//! partitions the member should own now. The member releases every owned partition that is
//! not in it (stops fetching, commits its offset) and reports the release in `owned` on its
//! next heartbeat, which it sends early for that purpose. A partition is only ever assigned
//! once its previous owner has released it, so new partitions can be consumed at once and
//! partitions that stay with a member are never paused. The coordinator raises
//! `member_epoch` with each new assignment; a request carrying a stale epoch is answered with
//! `FencedMember`, after which the member drops its partitions and joins again.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_count, put_option, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// A member's heartbeat: joins, reports what it owns, and receives its assignment.
pub struct HeartbeatRequest {
    /// The group id.
    pub group: String,
    /// Empty to join.
    pub member_id: String,
    /// A stable name for this consumer instance (static membership).
    pub instance_id: Option<String>,
    /// 0 to join, then the epoch of the last response.
    pub member_epoch: u32,
    /// Without a heartbeat for this long, the member is removed.
    pub session_timeout_ms: u32,
    /// The topics the member consumes.
    pub subscription: Vec<String>,
    /// The partitions the member currently owns.
    pub owned: Vec<TopicPartitions>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The member's identity and, when it changed, its assignment.
pub struct HeartbeatResponse {
    /// The member id the coordinator gave.
    pub member_id: String,
    /// The member's epoch, as the coordinator last gave it.
    pub member_epoch: u32,
    /// When to send the next heartbeat.
    pub heartbeat_interval_ms: u32,
    /// `None` = unchanged; otherwise every partition the member should own now.
    pub assignment: Option<Vec<TopicPartitions>>,
}

/// Some partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    /// The topic.
    pub topic: String,
    /// The partitions.
    pub partitions: Vec<u32>,
}

impl TopicPartitions {
    /// The fewest bytes one entry takes: a one-byte topic name and no partitions.
    pub(crate) const MIN_SIZE: usize = 2 + 1 + 4;

    pub(crate) fn encode_all(all: &[TopicPartitions], buf: &mut impl BufMut) {
        put_count(buf, all.len());
        for tp in all {
            put_string(buf, &tp.topic);
            put_count(buf, tp.partitions.len());
            for p in &tp.partitions {
                buf.put_u32_le(*p);
            }
        }
    }

    pub(crate) fn decode_all(r: &mut Reader) -> Result<Vec<TopicPartitions>, DecodeError> {
        r.vec_of("topic partitions", TopicPartitions::MIN_SIZE, |r| {
            Ok(TopicPartitions {
                topic: r.topic_name()?,
                partitions: r.vec_of("partitions", 4, Reader::u32)?,
            })
        })
    }
}

impl Body for HeartbeatRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.group);
        put_string(buf, &self.member_id);
        put_option(buf, self.instance_id.as_ref(), |b, id| put_string(b, id));
        buf.put_u32_le(self.member_epoch);
        buf.put_u32_le(self.session_timeout_ms);
        put_count(buf, self.subscription.len());
        for t in &self.subscription {
            put_string(buf, t);
        }
        TopicPartitions::encode_all(&self.owned, buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(HeartbeatRequest {
            group: r.string()?,
            member_id: r.string()?,
            instance_id: r.option(Reader::string)?,
            member_epoch: r.u32()?,
            session_timeout_ms: r.u32()?,
            subscription: r.vec_of("subscribed topics", 3, Reader::topic_name)?,
            owned: TopicPartitions::decode_all(r)?,
        })
    }
}

impl Body for HeartbeatResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.member_id);
        buf.put_u32_le(self.member_epoch);
        buf.put_u32_le(self.heartbeat_interval_ms);
        put_option(buf, self.assignment.as_ref(), |b, a| {
            TopicPartitions::encode_all(a, b)
        });
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(HeartbeatResponse {
            member_id: r.string()?,
            member_epoch: r.u32()?,
            heartbeat_interval_ms: r.u32()?,
            assignment: r.option(TopicPartitions::decode_all)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{budget_exceeded, decode_request, encoded_len, roundtrip};
    use crate::messages::{ApiKey, RequestError};

    fn request(subscription: Vec<String>, owned: Vec<TopicPartitions>) -> Vec<u8> {
        let mut b = BytesMut::new();
        HeartbeatRequest {
            group: "g".into(),
            member_id: String::new(),
            instance_id: None,
            member_epoch: 0,
            session_timeout_ms: 1,
            subscription,
            owned,
        }
        .encode(&mut b);
        b.to_vec()
    }

    #[test]
    fn rejects_heartbeat_subscribing_to_empty_topic_name() {
        let err = decode_request(ApiKey::Heartbeat, request(vec![String::new()], vec![]));
        assert!(matches!(
            err,
            Err(RequestError::Decode(DecodeError::InvalidName {
                what: "topic name",
                ..
            }))
        ));
    }

    #[test]
    fn rejects_heartbeat_owning_many_empty_topic_partitions() {
        let empty = TopicPartitions {
            topic: "t".into(),
            partitions: vec![],
        };
        let res = decode_request(ApiKey::Heartbeat, request(vec![], vec![empty; 10_000]));
        assert_eq!(budget_exceeded(res), Some(("topic partitions", 10_000)));
    }

    #[test]
    fn rejects_heartbeat_of_many_one_byte_subscriptions() {
        let res = decode_request(ApiKey::Heartbeat, request(vec!["t".into(); 10_000], vec![]));
        assert_eq!(budget_exceeded(res), Some(("subscribed topics", 10_000)));
    }

    #[test]
    fn roundtrip_request() {
        roundtrip(&HeartbeatRequest {
            group: "indexers".into(),
            member_id: String::new(),
            instance_id: None,
            member_epoch: 0,
            session_timeout_ms: 45_000,
            subscription: vec!["facts".into()],
            owned: vec![],
        });
        roundtrip(&HeartbeatRequest {
            group: "indexers".into(),
            member_id: "m-7".into(),
            instance_id: Some("host-a".into()),
            member_epoch: 12,
            session_timeout_ms: 10_000,
            subscription: vec!["facts".into(), "people".into()],
            owned: vec![
                TopicPartitions {
                    topic: "facts".into(),
                    partitions: vec![0, 3, 5],
                },
                TopicPartitions {
                    topic: "people".into(),
                    partitions: vec![],
                },
            ],
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&HeartbeatResponse {
            member_id: "m-7".into(),
            member_epoch: 13,
            heartbeat_interval_ms: 3000,
            assignment: None,
        });
        roundtrip(&HeartbeatResponse {
            member_id: "m-7".into(),
            member_epoch: 14,
            heartbeat_interval_ms: 3000,
            assignment: Some(vec![TopicPartitions {
                topic: "facts".into(),
                partitions: vec![1, 2],
            }]),
        });
        roundtrip(&HeartbeatResponse {
            member_id: "m-7".into(),
            member_epoch: 15,
            heartbeat_interval_ms: 3000,
            assignment: Some(vec![]),
        });
    }

    #[test]
    fn rejects_bad_assignment_flag() {
        let mut buf = BytesMut::new();
        HeartbeatResponse {
            member_id: String::new(),
            member_epoch: 1,
            heartbeat_interval_ms: 1,
            assignment: None,
        }
        .encode(&mut buf);
        let flag = buf.len() - 1;
        buf[flag] = 2;
        let err = HeartbeatResponse::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::InvalidTag {
                what: "bool",
                offset: 10,
                ..
            }
        ));
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = HeartbeatResponse {
            member_id: String::new(),
            member_epoch: 0,
            heartbeat_interval_ms: 0,
            assignment: Some(vec![]),
        };
        let one = HeartbeatResponse {
            assignment: Some(vec![TopicPartitions {
                topic: "t".into(),
                partitions: vec![],
            }]),
            ..empty.clone()
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            TopicPartitions::MIN_SIZE
        );
    }
}
