//! Our own encodings of the Raft state we persist (D1: never openraft's serde forms).
//!
//! ```text
//! vote        term u64 | node_id u64 | committed u8
//! log id      term u64 | index u64
//! control     tag u8 | body
//!   tag 0 blank       (no body)
//!   tag 1 membership  configs: [ [node_id u64] ], nodes: [ node_id u64, addr string ]
//!   tag 2 app data    the proposal bytes (metadata commands; partition batches are stored
//!                     as record batches, not control entries)
//! ```

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use openraft::BasicNode;
use steme_protocol::wire::{DecodeError, Reader, put_count, put_string};

use super::types::{LogId, Membership, NodeId, Vote, log_id, term_of};

pub const TAG_BLANK: u8 = 0;
pub const TAG_MEMBERSHIP: u8 = 1;
pub const TAG_APP: u8 = 2;

pub fn encode_vote(v: &Vote) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.put_u64_le(v.leader_id.term);
    out.put_u64_le(v.leader_id.voted_for);
    out.put_u8(u8::from(v.committed));
    out
}

pub fn decode_vote(b: &[u8]) -> Result<Vote, DecodeError> {
    let mut r = Reader::new(Bytes::copy_from_slice(b));
    let term = r.u64()?;
    let node = r.u64()?;
    let committed = r.bool()?;
    r.finish()?;
    let mut v = Vote::new(term, node);
    v.committed = committed;
    Ok(v)
}

pub fn encode_log_id(id: &LogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.put_u64_le(term_of(id));
    out.put_u64_le(id.index);
    out
}

pub fn decode_log_id(b: &[u8]) -> Result<LogId, DecodeError> {
    let mut r = Reader::new(Bytes::copy_from_slice(b));
    let id = log_id(r.u64()?, r.u64()?);
    r.finish()?;
    Ok(id)
}

pub fn encode_membership(m: &Membership, out: &mut BytesMut) {
    let configs = m.get_joint_config();
    put_count(out, configs.len());
    for c in configs {
        put_count(out, c.len());
        for id in c {
            out.put_u64_le(*id);
        }
    }
    let nodes: Vec<_> = m.nodes().collect();
    put_count(out, nodes.len());
    for (id, node) in nodes {
        out.put_u64_le(*id);
        put_string(out, &node.addr);
    }
}

pub fn decode_membership(r: &mut Reader) -> Result<Membership, DecodeError> {
    let configs: Vec<BTreeSet<NodeId>> =
        r.vec(4, |r| Ok(r.vec(8, Reader::u64)?.into_iter().collect()))?;
    let at = r.position();
    let nodes: BTreeMap<NodeId, BasicNode> = r
        .vec(10, |r| Ok((r.u64()?, BasicNode { addr: r.string()? })))?
        .into_iter()
        .collect();
    Membership::new(configs, nodes).map_err(|_| DecodeError::InvalidValue {
        what: "membership (a voter without a node)",
        offset: at,
    })
}

/// A control entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    Blank,
    Membership(Membership),
    App(Bytes),
}

pub fn encode_control(c: &Control) -> Vec<u8> {
    let mut out = BytesMut::new();
    match c {
        Control::Blank => out.put_u8(TAG_BLANK),
        Control::Membership(m) => {
            out.put_u8(TAG_MEMBERSHIP);
            encode_membership(m, &mut out);
        }
        Control::App(b) => {
            out.put_u8(TAG_APP);
            out.put_slice(b);
        }
    }
    out.to_vec()
}

pub fn decode_control(b: Bytes) -> Result<Control, DecodeError> {
    let mut r = Reader::new(b);
    let tag_at = r.position();
    match r.u8()? {
        TAG_BLANK => {
            r.finish()?;
            Ok(Control::Blank)
        }
        TAG_MEMBERSHIP => {
            let m = decode_membership(&mut r)?;
            r.finish()?;
            Ok(Control::Membership(m))
        }
        TAG_APP => {
            let n = r.remaining();
            Ok(Control::App(r.slice(n)?))
        }
        tag => Err(DecodeError::InvalidTag {
            what: "control entry",
            tag: tag.into(),
            offset: tag_at,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_vote_and_log_id() {
        let mut v = Vote::new(7, 3);
        v.committed = true;
        assert_eq!(decode_vote(&encode_vote(&v)).unwrap(), v);
        let id = log_id(4, 99);
        assert_eq!(decode_log_id(&encode_log_id(&id)).unwrap(), id);
        assert!(decode_vote(&[1, 2, 3]).is_err());
    }

    #[test]
    fn roundtrip_control_entries() {
        let nodes = BTreeMap::from([
            (
                1,
                BasicNode {
                    addr: "127.0.0.1:1".into(),
                },
            ),
            (
                2,
                BasicNode {
                    addr: "127.0.0.1:2".into(),
                },
            ),
            (
                3,
                BasicNode {
                    addr: "127.0.0.1:3".into(),
                },
            ),
        ]);
        let m = Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap();
        for c in [
            Control::Blank,
            Control::Membership(m),
            Control::App(Bytes::from_static(b"{\"cmd\":1}")),
        ] {
            let enc = encode_control(&c);
            assert_eq!(decode_control(Bytes::from(enc)).unwrap(), c);
        }
        assert!(decode_control(Bytes::from_static(&[9])).is_err());
        assert!(decode_control(Bytes::from_static(&[TAG_MEMBERSHIP, 1])).is_err());
    }
}
