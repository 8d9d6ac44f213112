//! ListGroups: the consumer groups a broker coordinates, with their state and size.
//!
//! Request: empty.
//!
//! ```text
//! +--+
//! |  |   (no fields)
//! +--+
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +---------------------+
//! | groups: [ listing ] |
//! +---------------------+
//!
//! listing = group: string | state u8 | members u32
//! state: 0 = empty, 1 = stable, 2 = reconciling, 3 = dead
//! ```
//!
//! As in Kafka, a broker lists the groups whose coordinator it is (D10: it leads the internal
//! partition the group id hashes to); a tool that wants every group asks every broker and
//! merges the answers.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_count, put_string};

/// Where a consumer group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GroupState {
    /// No members; committed offsets are kept.
    Empty = 0,
    /// Every member owns exactly its target assignment.
    Stable = 1,
    /// Partitions are moving between members.
    Reconciling = 2,
    /// The group is being removed.
    Dead = 3,
}

impl GroupState {
    pub(crate) fn encode(self, buf: &mut impl BufMut) {
        buf.put_u8(self as u8);
    }

    pub(crate) fn decode(r: &mut Reader) -> Result<GroupState, DecodeError> {
        let at = r.position();
        match r.u8()? {
            0 => Ok(GroupState::Empty),
            1 => Ok(GroupState::Stable),
            2 => Ok(GroupState::Reconciling),
            3 => Ok(GroupState::Dead),
            tag => Err(DecodeError::InvalidTag {
                what: "group state",
                tag: tag.into(),
                offset: at,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Asks a broker for the groups it coordinates.
pub struct ListGroupsRequest {}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The groups a broker coordinates.
pub struct ListGroupsResponse {
    /// The groups.
    pub groups: Vec<GroupListing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A group and its state.
pub struct GroupListing {
    /// The group id.
    pub group: String,
    /// The group's state.
    pub state: GroupState,
    /// How many members the group has.
    pub members: u32,
}

impl GroupListing {
    /// The fewest bytes one entry takes: empty name, state, member count.
    const MIN_SIZE: usize = 2 + 1 + 4;
}

impl Body for ListGroupsRequest {
    fn encode(&self, _: &mut BytesMut) {}

    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListGroupsRequest {})
    }
}

impl Body for ListGroupsResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_count(buf, self.groups.len());
        for g in &self.groups {
            put_string(buf, &g.group);
            g.state.encode(buf);
            buf.put_u32_le(g.members);
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListGroupsResponse {
            groups: r.vec_of("group listings", GroupListing::MIN_SIZE, |r| {
                Ok(GroupListing {
                    group: r.string()?,
                    state: GroupState::decode(r)?,
                    members: r.u32()?,
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
        roundtrip(&ListGroupsRequest {});
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&ListGroupsResponse {
            groups: vec![
                GroupListing {
                    group: "indexers".into(),
                    state: GroupState::Stable,
                    members: 3,
                },
                GroupListing {
                    group: "audit".into(),
                    state: GroupState::Empty,
                    members: 0,
                },
                GroupListing {
                    group: "moving".into(),
                    state: GroupState::Reconciling,
                    members: 2,
                },
                GroupListing {
                    group: String::new(),
                    state: GroupState::Dead,
                    members: 0,
                },
            ],
        });
        roundtrip(&ListGroupsResponse { groups: vec![] });
    }

    #[test]
    fn rejects_unknown_group_state() {
        let mut buf = BytesMut::new();
        ListGroupsResponse {
            groups: vec![GroupListing {
                group: "g".into(),
                state: GroupState::Stable,
                members: 1,
            }],
        }
        .encode(&mut buf);
        buf[4 + 2 + 1] = 4;
        let err = ListGroupsResponse::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::InvalidTag {
                what: "group state",
                tag: 4,
                offset: 7,
            }
        ));
    }

    #[test]
    fn min_sizes_are_the_smallest_encodings() {
        let empty = ListGroupsResponse { groups: vec![] };
        let one = ListGroupsResponse {
            groups: vec![GroupListing {
                group: String::new(),
                state: GroupState::Empty,
                members: 0,
            }],
        };
        assert_eq!(
            encoded_len(&one) - encoded_len(&empty),
            GroupListing::MIN_SIZE
        );
    }
}
