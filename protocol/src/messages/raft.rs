//! Raft: one Raft RPC between two brokers (internal, never sent by clients).
//!
//! Request:
//!
//! ```text
//! +--------------+------------------+
//! | group_id u64 | payload: bytes32 |
//! +--------------+------------------+
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +------------------+
//! | payload: bytes32 |
//! +------------------+
//! ```
//!
//! `group_id` names the Raft group the RPC belongs to: group 0 is the cluster metadata group
//! (D9), every other id is one partition's group (D1). The payload is the broker's own
//! encoding of an openraft RPC or its reply (append entries, vote, snapshot); it is opaque to
//! this crate, which only frames it. It comes out of the decoder as a zero-copy slice of the
//! frame, so an append's record batches are not copied on the way to the log store. All
//! groups between two brokers share one connection (D8), so requests are pipelined and
//! answered by correlation id; keeping heartbeats from queueing behind bulk appends is the
//! broker's business.

use bytes::{BufMut, Bytes, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_bytes};

/// The id of the cluster metadata group.
pub const METADATA_GROUP: u64 = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
/// A Raft RPC between brokers (peer plane).
pub struct RaftRequest {
    /// [`METADATA_GROUP`] or a partition's group.
    pub group_id: u64,
    /// An openraft RPC in the broker's encoding.
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The answer to a [`RaftRequest`].
pub struct RaftResponse {
    /// The openraft reply in the broker's encoding.
    pub payload: Bytes,
}

impl Body for RaftRequest {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.group_id);
        put_bytes(buf, &self.payload);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(RaftRequest {
            group_id: r.u64()?,
            payload: r.bytes()?,
        })
    }
}

impl RaftRequest {
    /// Bytes of a request body before its payload: the group id and the payload's length.
    pub const HEAD_LEN: usize = 8 + 4;

    /// The body's head for a payload of `payload_len` bytes, so a sender can write the
    /// payload after it as it is (no copy into one buffer).
    pub fn encode_head(group_id: u64, payload_len: usize) -> [u8; Self::HEAD_LEN] {
        let mut head = [0u8; Self::HEAD_LEN];
        head[..8].copy_from_slice(&group_id.to_le_bytes());
        let len = u32::try_from(payload_len).expect("payloads are bounded by the frame size");
        head[8..].copy_from_slice(&len.to_le_bytes());
        head
    }
}

impl Body for RaftResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_bytes(buf, &self.payload);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(RaftResponse {
            payload: r.bytes()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn head_then_payload_is_the_encoded_request() {
        let req = RaftRequest {
            group_id: 7,
            payload: Bytes::from_static(b"an append"),
        };
        let mut whole = BytesMut::new();
        req.encode(&mut whole);
        let mut parts = BytesMut::new();
        parts.extend_from_slice(&RaftRequest::encode_head(7, req.payload.len()));
        parts.extend_from_slice(&req.payload);
        assert_eq!(whole, parts);
    }

    #[test]
    fn roundtrip_request() {
        roundtrip(&RaftRequest {
            group_id: METADATA_GROUP,
            payload: Bytes::from_static(b"vote"),
        });
        roundtrip(&RaftRequest {
            group_id: u64::MAX,
            payload: Bytes::new(),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&RaftResponse {
            payload: Bytes::from_static(b"ok"),
        });
    }

    #[test]
    fn decoded_payload_borrows_the_frame() {
        let req = RaftRequest {
            group_id: 7,
            payload: Bytes::from(vec![5u8; 4096]),
        };
        let mut buf = BytesMut::new();
        req.encode(&mut buf);
        let frame = buf.freeze();
        let back = RaftRequest::decode(&mut Reader::new(frame.clone())).unwrap();
        let base = frame.as_ptr() as usize;
        let payload = back.payload.as_ptr() as usize;
        assert!(
            payload >= base && payload < base + frame.len(),
            "payload not copied"
        );
    }

    #[test]
    fn rejects_payload_length_beyond_frame() {
        let mut buf = BytesMut::new();
        buf.put_u64_le(1);
        buf.put_u32_le(10);
        buf.put_slice(b"short");
        let err = RaftRequest::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(err, DecodeError::LengthOverrun { offset: 8, .. }));
    }
}
