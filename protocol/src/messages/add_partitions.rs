//! AddPartitions: grows a topic to a new partition count, keeping every subject's order
//! (send it to any broker; it forwards to the metadata leader).
//!
//! Request:
//!
//! ```text
//! +---------------+-----------+
//! | topic: string | count u32 |
//! +---------------+-----------+
//! ```
//!
//! Response (after the error code): the topic's map as the metadata now has it.
//!
//! ```text
//! +---------------+---------------+----------------+
//! | topic: string | map_epoch u64 | partitions u32 |
//! +---------------+---------------+----------------+
//! ```
//!
//! `count` is the new total, more than the topic has now and at most 10000. The answer
//! comes once the new map is recorded: the map epoch grows by one, and each old partition
//! then records its split point (see [`super::metadata`]); the new partitions take records
//! once every split point is recorded. Asking for the count a topic already has changes
//! nothing; asking for fewer is refused (partitions are never removed), as is a growth
//! while the previous one is still recording its split points.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_string};

/// Grows a topic to `count` partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitionsRequest {
    /// The topic.
    pub topic: String,
    /// The new total number of partitions.
    pub count: u32,
}

/// The topic's map once the growth is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddPartitionsResponse {
    /// The topic.
    pub topic: String,
    /// Its map epoch now.
    pub map_epoch: u64,
    /// Its partition count now.
    pub partitions: u32,
}

impl Body for AddPartitionsRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u32_le(self.count);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AddPartitionsRequest {
            topic: r.topic_name()?,
            count: r.u32()?,
        })
    }
}

impl Body for AddPartitionsResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u64_le(self.map_epoch);
        buf.put_u32_le(self.partitions);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AddPartitionsResponse {
            topic: r.string()?,
            map_epoch: r.u64()?,
            partitions: r.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::{decode_request, roundtrip};
    use crate::messages::{ApiKey, RequestError};

    #[test]
    fn roundtrip_add_partitions() {
        roundtrip(&AddPartitionsRequest {
            topic: "facts".into(),
            count: 6,
        });
        roundtrip(&AddPartitionsResponse {
            topic: "facts".into(),
            map_epoch: 1,
            partitions: 6,
        });
    }

    #[test]
    fn refuses_a_bad_topic_name() {
        let mut body = BytesMut::new();
        put_string(&mut body, "");
        body.put_u32_le(6);
        let err = decode_request(ApiKey::AddPartitions, body.to_vec()).unwrap_err();
        assert!(matches!(err, RequestError::Decode(_)), "{err:?}");
    }
}
