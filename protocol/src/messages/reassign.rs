//! ReassignPartition and DecommissionBroker: change where replicas live, through the
//! metadata group (send them to any broker; it forwards to the metadata leader).
//!
//! ReassignPartition request:
//!
//! ```text
//! +---------------+---------------+----------------+
//! | topic: string | partition u32 | replicas [u64] |
//! +---------------+---------------+----------------+
//! ```
//!
//! Response (after the error code): the partition as the metadata now has it.
//!
//! ```text
//! +---------------+---------------+----------------+-------------------+
//! | topic: string | partition u32 | replicas [u64] | target opt<[u64]> |
//! +---------------+---------------+----------------+-------------------+
//! ```
//!
//! `replicas` is the new replica list, first the preferred leader: 1 to 16 distinct active
//! brokers. The response comes once the move is recorded, not once it is done: the
//! partition's leader then adds the new replicas as learners, lets them catch up (a snapshot
//! at the retention boundary, then the log), promotes them, hands leadership over if it
//! leaves, and removes the old replicas. Until then `target` is present. Asking for the
//! replicas a partition already has (or moves to) changes nothing; asking for other ones
//! while it moves is refused, as are unknown brokers, draining or removed ones, and
//! duplicates.
//!
//! DecommissionBroker request and response (after the error code):
//!
//! ```text
//! +-------------+              +-------------+----------+
//! | node_id u64 |              | node_id u64 | state u8 |
//! +-------------+              +-------------+----------+
//! ```
//!
//! The broker becomes *draining* (see [`super::metadata::BrokerState`]): every replica it
//! holds moves to other brokers, then it leaves the metadata group and becomes *removed*.
//! Refused when the other active brokers could not hold every topic's replication factor.
//! Asking again for a draining or removed broker changes nothing.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::messages::metadata::{BrokerState, put_ids};
use crate::wire::{DecodeError, Reader, put_option, put_string};

/// The most replicas a partition may have.
pub const MAX_REPLICAS: usize = 16;

/// Moves a partition to other replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignPartitionRequest {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The replicas to move to, the preferred leader first.
    pub replicas: Vec<u64>,
}

/// The partition once the move is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignPartitionResponse {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// Its replicas now.
    pub replicas: Vec<u64>,
    /// The replicas it moves to, while it moves.
    pub target: Option<Vec<u64>>,
}

/// Retires a broker: moves everything off it, then removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecommissionBrokerRequest {
    /// The broker to retire.
    pub node_id: u64,
}

/// The broker's state once the request is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecommissionBrokerResponse {
    /// The broker.
    pub node_id: u64,
    /// Its state: draining, or removed if it already is.
    pub state: BrokerState,
}

fn replicas(r: &mut Reader, what: &'static str) -> Result<Vec<u64>, DecodeError> {
    let offset = r.position();
    let ids = r.vec_of(what, 8, Reader::u64)?;
    if ids.len() > MAX_REPLICAS {
        return Err(DecodeError::InvalidValue { what, offset });
    }
    Ok(ids)
}

impl Body for ReassignPartitionRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u32_le(self.partition);
        put_ids(buf, &self.replicas);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ReassignPartitionRequest {
            topic: r.topic_name()?,
            partition: r.u32()?,
            replicas: replicas(r, "replicas")?,
        })
    }
}

impl Body for ReassignPartitionResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u32_le(self.partition);
        put_ids(buf, &self.replicas);
        put_option(buf, self.target.as_ref(), |b, ids| put_ids(b, ids));
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ReassignPartitionResponse {
            topic: r.string()?,
            partition: r.u32()?,
            replicas: replicas(r, "replicas")?,
            target: r.option(|r| replicas(r, "target replicas"))?,
        })
    }
}

impl Body for DecommissionBrokerRequest {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.node_id);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DecommissionBrokerRequest { node_id: r.u64()? })
    }
}

impl Body for DecommissionBrokerResponse {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.node_id);
        buf.put_u8(self.state.code());
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DecommissionBrokerResponse {
            node_id: r.u64()?,
            state: BrokerState::decode(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{decode_request, roundtrip};
    use crate::messages::{ApiKey, RequestError};

    #[test]
    fn roundtrip_reassign() {
        roundtrip(&ReassignPartitionRequest {
            topic: "facts".into(),
            partition: 3,
            replicas: vec![4, 2, 3],
        });
        roundtrip(&ReassignPartitionResponse {
            topic: "facts".into(),
            partition: 3,
            replicas: vec![1, 2, 3],
            target: Some(vec![4, 2, 3]),
        });
        roundtrip(&ReassignPartitionResponse {
            topic: "facts".into(),
            partition: 0,
            replicas: vec![1],
            target: None,
        });
    }

    #[test]
    fn roundtrip_decommission() {
        roundtrip(&DecommissionBrokerRequest { node_id: 7 });
        for state in [BrokerState::Draining, BrokerState::Removed] {
            roundtrip(&DecommissionBrokerResponse { node_id: 7, state });
        }
    }

    #[test]
    fn refuses_more_replicas_than_a_partition_may_have() {
        let mut body = BytesMut::new();
        ReassignPartitionRequest {
            topic: "facts".into(),
            partition: 0,
            replicas: (1..=MAX_REPLICAS as u64 + 1).collect(),
        }
        .encode(&mut body);
        let err = decode_request(ApiKey::ReassignPartition, body.to_vec()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::Decode(DecodeError::InvalidValue {
                    what: "replicas",
                    ..
                })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_an_unknown_broker_state() {
        let mut body = BytesMut::new();
        body.put_u64_le(7);
        body.put_u8(9);
        let mut r = Reader::new(body.freeze());
        assert!(matches!(
            DecommissionBrokerResponse::decode(&mut r),
            Err(DecodeError::InvalidTag {
                what: "broker state",
                tag: 9,
                ..
            })
        ));
    }
}
