//! DeleteGroup: remove a consumer group and its committed offsets. Sent to the group's
//! coordinator; refused with `GroupNotEmpty` while the group has members.
//!
//! Request:
//!
//! ```text
//! +---------------+
//! | group: string |
//! +---------------+
//! ```
//!
//! Response (after the error code): empty.

use bytes::BytesMut;

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Deletes a group without members, and its committed offsets.
pub struct DeleteGroupRequest {
    /// The group id.
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The group is deleted.
pub struct DeleteGroupResponse {}

impl Body for DeleteGroupRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.group);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DeleteGroupRequest { group: r.string()? })
    }
}

impl Body for DeleteGroupResponse {
    fn encode(&self, _: &mut BytesMut) {}

    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DeleteGroupResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn roundtrip_both() {
        roundtrip(&DeleteGroupRequest {
            group: "indexers".into(),
        });
        roundtrip(&DeleteGroupResponse {});
    }
}
