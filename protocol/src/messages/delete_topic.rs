//! DeleteTopic: delete a topic and all its partitions, through the metadata group (send it
//! to the metadata leader, see [`super::metadata`]).
//!
//! Request:
//!
//! ```text
//! +--------------+
//! | name: string |
//! +--------------+
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
//! The response is sent once the deletion is committed in the metadata group; the brokers
//! then stop serving the topic's partitions and remove their data. An unknown topic is
//! answered with `UnknownTopic`.

use bytes::BytesMut;

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Deletes a topic and all its data.
pub struct DeleteTopicRequest {
    /// The topic's name.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The topic is deleted.
pub struct DeleteTopicResponse {}

impl Body for DeleteTopicRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.name);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DeleteTopicRequest { name: r.string()? })
    }
}

impl Body for DeleteTopicResponse {
    fn encode(&self, _: &mut BytesMut) {}

    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(DeleteTopicResponse {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn roundtrip_request() {
        roundtrip(&DeleteTopicRequest {
            name: "facts".into(),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&DeleteTopicResponse {});
    }
}
