//! SkipDamage: an operator gives up a quarantined damaged range of one replica — damaged
//! there, with no healthy copy on any other replica — so that consumers move past it.
//! Sent to each broker whose replica lists the range (see [`super::describe_topic`]).
//!
//! Request:
//!
//! ```text
//! +--------------+---------------+------------------+---------------+
//! | topic string | partition u32 | first_offset u64 | reason string |
//! +--------------+---------------+------------------+---------------+
//! ```
//!
//! Response (after the error code): the range as now recorded, its `skipped` set.
//!
//! ```text
//! +-----------------------------------------+
//! | damage (as in DescribeTopic's response) |
//! +-----------------------------------------+
//! ```
//!
//! `first_offset` must be where one of the replica's damaged ranges starts, and that range
//! must be quarantined (the last repair round found no healthy copy): a range a replica
//! could still repair is refused with `InvalidRequest`, as is an empty reason. The skip is
//! written to the replica's `damage` file before the answer; nothing is deleted: fetches of
//! the range then answer `SkippedData` with the record of the skip, and a repair still
//! replaces the range if a healthy copy turns up.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::messages::describe_topic::DamagedRange;
use crate::wire::{DecodeError, Reader, put_string};

/// The longest reason a skip may carry.
pub const MAX_REASON_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
/// Gives up a damaged range of a partition that no replica can repair (an operator's decision, recorded).
pub struct SkipDamageRequest {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The first offset of the range.
    pub first_offset: u64,
    /// Why (kept with the record of the skip).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The range skipped.
pub struct SkipDamageResponse {
    /// The range.
    pub range: DamagedRange,
}

impl Body for SkipDamageRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u32_le(self.partition);
        buf.put_u64_le(self.first_offset);
        put_string(buf, &self.reason);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SkipDamageRequest {
            topic: r.string()?,
            partition: r.u32()?,
            first_offset: r.u64()?,
            reason: r.string()?,
        })
    }
}

impl Body for SkipDamageResponse {
    fn encode(&self, buf: &mut BytesMut) {
        self.range.encode(buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(SkipDamageResponse {
            range: DamagedRange::decode(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::describe_topic::SkipRecord;
    use crate::messages::testing::roundtrip;

    #[test]
    fn roundtrip_request() {
        roundtrip(&SkipDamageRequest {
            topic: "facts".into(),
            partition: 3,
            first_offset: 826,
            reason: "lost on every replica; INC-42".into(),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&SkipDamageResponse {
            range: DamagedRange {
                first_offset: 826,
                end_offset: 970,
                first_index: 40,
                end_index: 47,
                quarantined: Some("no other replica holds the partition".into()),
                reason: "batch crc mismatch".into(),
                skipped: Some(SkipRecord {
                    at_ms: 1_764_000_000_000,
                    reason: "lost on every replica; INC-42".into(),
                }),
            },
        });
    }
}
