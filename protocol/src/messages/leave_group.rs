//! LeaveGroup: a member leaves its consumer group at once, instead of being dropped when its
//! session times out, so that its partitions are reassigned without waiting. Sent to the
//! group's coordinator.
//!
//! Request:
//!
//! ```text
//! +---------------+------------------+------------------+
//! | group: string | member_id string | member_epoch u32 |
//! +---------------+------------------+------------------+
//! ```
//!
//! Response (after the error code): empty.
//!
//! ```text
//! +--+
//! |  |   (no fields)
//! +--+
//! ```
//!
//! The member should commit its offsets before leaving; its partitions count as released as
//! soon as the leave is committed. A static member (one with an `instance_id`) that leaves
//! this way gives up its assignment too.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// A member leaves its group; its partitions move at once.
pub struct LeaveGroupRequest {
    /// The group id.
    pub group: String,
    /// The member id the coordinator gave.
    pub member_id: String,
    /// The member's epoch, as the coordinator last gave it.
    pub member_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The member has left.
pub struct LeaveGroupResponse {}

impl Body for LeaveGroupRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.group);
        put_string(buf, &self.member_id);
        buf.put_u32_le(self.member_epoch);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(LeaveGroupRequest {
            group: r.string()?,
            member_id: r.string()?,
            member_epoch: r.u32()?,
        })
    }
}

impl Body for LeaveGroupResponse {
    fn encode(&self, _: &mut BytesMut) {}

    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(LeaveGroupResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn roundtrip_request() {
        roundtrip(&LeaveGroupRequest {
            group: "indexers".into(),
            member_id: "m-3".into(),
            member_epoch: 8,
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&LeaveGroupResponse {});
    }
}
