//! Our own encoding of openraft's RPCs (D1: never openraft's serde forms), carried as the
//! opaque payload of the protocol's `Raft` frame (group id + payload, D8). Record batches
//! travel as they are stored: an append carries each batch's bytes unchanged.
//!
//! ```text
//! rpc            kind u8 | body
//!   0 append     vote | opt<log id> prev | opt<log id> leader_commit | [entry]
//!   1 appended   tag u8: 0 success | 1 partial, opt<log id> | 2 conflict | 3 higher vote, vote
//!   2 vote       vote | opt<log id> last | bool leadership_transfer
//!   3 voted      vote | bool granted | opt<log id> last
//!   4 snapshot   vote | opt<log id> last | opt<log id> membership_at | membership | bytes32 data
//!   5 installed  vote
//!   6 pre-vote   as 2
//!   7 stream-append   as 0, but part of an ordered stream (see `network`)
//!   8 stream-appended tag u8: 0 ok, opt<log id> | 1 conflict, log id | 2 higher vote, vote
//!   9 transfer   vote from | node_id u64 to | opt<log id> last
//!  10 transferred tag u8: 0 ok | 1 vote changed, vote, vote | 2 not flushed, opt<log id> x2
//!  11 forward    bytes32 metadata command (to the metadata leader)
//!  12 forwarded  tag u8: 0 applied | 1 refused, string | 2 not leader, opt<u64> | 3 failed, string
//!  13 refused    string: the receiver cannot serve the RPC (group not here, stopped)
//!  14 read-frames u64 from | u64 to | u32 max_bytes: a repairing replica asks for the stored
//!                 frames of entries [from, to) (at least one, then whole frames up to max_bytes)
//!  15 frames     bytes32: the frames, back to back, exactly as stored
//!  16 beat       (empty): a broker-level liveness beat, answered with a beat (group 0;
//!                 see `crate::peer::liveness`)
//!
//! vote           term u64 | node_id u64 | committed u8
//! log id         term u64 | index u64
//! entry          term u64 | index u64 | tag u8 (0 blank, 1 membership, 2 normal,
//!                  3 normal with ids) | body
//!                  normal: bytes32 proposal; membership: the membership encoding;
//!                  normal with ids: bytes32 proposal | [u64] its records' id prefixes, the
//!                  leader's hint so that a follower indexes them without hashing again
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use openraft::EntryPayload;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderError, TransferLeaderRequest, TransferLeaderResponse,
    VoteRequest, VoteResponse,
};
use steme_protocol::wire::{DecodeError, Reader, put_bytes, put_count, put_option, put_string};

use super::codec::{decode_membership, encode_membership};
use super::types::{
    Entry, LogId, Proposal, SnapshotMeta, StoredMembership, TypeConfig, Vote, log_id, term_of,
};

/// One Raft RPC or its answer.
#[derive(Debug)]
pub enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Appended(AppendEntriesResponse<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    Voted(VoteResponse<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Bytes,
    },
    Installed(SnapshotResponse<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    /// An append that belongs to a pipelined stream: the receiver hands it to the group in
    /// arrival order.
    StreamAppend(AppendEntriesRequest<TypeConfig>),
    StreamAppended(StreamAppendResult<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    Transferred(TransferLeaderResponse<TypeConfig>),
    /// A metadata command for the metadata leader to propose.
    Forward(Bytes),
    Forwarded(Forwarded),
    /// The receiver cannot serve the RPC (the group is not open there, or stopped).
    Refused(String),
    /// A replica repairing a damaged range asks for the stored frames of entries
    /// `[from, to)`: at least one, then whole frames up to `max_bytes`.
    ReadFrames {
        from: u64,
        to: u64,
        max_bytes: u32,
    },
    /// The frames asked for, back to back, exactly as stored (each checked).
    Frames(Bytes),
    /// A broker-level liveness beat, and its answer: one per broker pair, whatever the
    /// number of groups they share.
    Beat,
    /// The leader of a partition a topic's growth created asks a replica of an old
    /// partition which of these content ids it holds below offset `below` (its split
    /// point): a record produced again after the split is then acknowledged where it
    /// already is instead of being stored twice (`partition::split`).
    LookupIds {
        below: u64,
        ids: Vec<[u8; 32]>,
    },
    /// The answer: for each id found, its index in the question, offset and HLC.
    FoundIds(Vec<(u32, u64, u64)>),
}

/// The most ids one [`RaftRpc::LookupIds`] may ask about (a produce batch's records).
pub const MAX_LOOKUP_IDS: usize = 1 << 16;

/// What became of a forwarded metadata command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    Applied,
    /// Applied, and refused by the state machine (e.g. the topic exists).
    Refused(String),
    /// The receiver does not lead the metadata group; the leader it knows of.
    NotLeader(Option<u64>),
    Failed(String),
}

fn put_vote(b: &mut BytesMut, v: &Vote) {
    b.put_u64_le(v.leader_id.term);
    b.put_u64_le(v.leader_id.voted_for);
    b.put_u8(u8::from(v.committed));
}

fn get_vote(r: &mut Reader) -> Result<Vote, DecodeError> {
    let mut v = Vote::new(r.u64()?, r.u64()?);
    v.committed = r.bool()?;
    Ok(v)
}

fn put_log_id(b: &mut BytesMut, id: &LogId) {
    b.put_u64_le(term_of(id));
    b.put_u64_le(id.index);
}

fn get_log_id(r: &mut Reader) -> Result<LogId, DecodeError> {
    Ok(log_id(r.u64()?, r.u64()?))
}

fn put_opt_log_id(b: &mut BytesMut, id: Option<&LogId>) {
    put_option(b, id, put_log_id);
}

fn put_entry(b: &mut BytesMut, e: &Entry) {
    put_log_id(b, &e.log_id);
    match &e.payload {
        EntryPayload::Blank => b.put_u8(0),
        EntryPayload::Membership(m) => {
            b.put_u8(1);
            encode_membership(m, b);
        }
        EntryPayload::Normal(Proposal {
            bytes, ids: None, ..
        }) => {
            b.put_u8(2);
            put_bytes(b, bytes);
        }
        EntryPayload::Normal(Proposal {
            bytes,
            ids: Some(ids),
            ..
        }) => {
            // With the records' id prefixes, so that the follower need not hash them.
            b.put_u8(3);
            put_bytes(b, bytes);
            put_count(b, ids.len());
            for &p in ids.iter() {
                b.put_u64_le(p);
            }
        }
    }
}

fn get_entry(r: &mut Reader) -> Result<Entry, DecodeError> {
    let id = get_log_id(r)?;
    let at = r.position();
    let payload = match r.u8()? {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Membership(decode_membership(r)?),
        2 => EntryPayload::Normal(Proposal::new(r.bytes()?)),
        3 => {
            let bytes = r.bytes()?;
            let ids = r.vec_of("record id prefix", 8, Reader::u64)?;
            EntryPayload::Normal(Proposal::hinted(bytes, Some(ids.into())))
        }
        tag => {
            return Err(DecodeError::InvalidTag {
                what: "raft entry",
                tag: tag.into(),
                offset: at,
            });
        }
    };
    Ok(Entry {
        log_id: id,
        payload,
    })
}

fn put_append(b: &mut BytesMut, a: &AppendEntriesRequest<TypeConfig>) {
    put_vote(b, &a.vote);
    put_opt_log_id(b, a.prev_log_id.as_ref());
    put_opt_log_id(b, a.leader_commit.as_ref());
    put_count(b, a.entries.len());
    for e in &a.entries {
        put_entry(b, e);
    }
}

fn get_append(r: &mut Reader) -> Result<AppendEntriesRequest<TypeConfig>, DecodeError> {
    Ok(AppendEntriesRequest {
        vote: get_vote(r)?,
        prev_log_id: r.option(get_log_id)?,
        leader_commit: r.option(get_log_id)?,
        // The smallest entry: log id and a blank tag.
        entries: r.vec(17, get_entry)?,
    })
}

/// An error message, cut to fit a `string` (at a char boundary).
fn put_message(b: &mut BytesMut, m: &str) {
    let mut end = m.len().min(4096);
    while !m.is_char_boundary(end) {
        end -= 1;
    }
    put_string(b, &m[..end]);
}

fn bad_tag(what: &'static str, tag: u8, offset: usize) -> DecodeError {
    DecodeError::InvalidTag {
        what,
        tag: tag.into(),
        offset,
    }
}

fn put_vote_request(b: &mut BytesMut, v: &VoteRequest<TypeConfig>) {
    put_vote(b, &v.vote);
    put_opt_log_id(b, v.last_log_id.as_ref());
    b.put_u8(u8::from(v.leadership_transfer));
}

fn get_vote_request(r: &mut Reader) -> Result<VoteRequest<TypeConfig>, DecodeError> {
    Ok(VoteRequest {
        vote: get_vote(r)?,
        last_log_id: r.option(get_log_id)?,
        leadership_transfer: r.bool()?,
    })
}

impl RaftRpc {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            RaftRpc::Append(a) => {
                b.put_u8(0);
                put_append(&mut b, a);
            }
            RaftRpc::Appended(resp) => {
                b.put_u8(1);
                match resp {
                    AppendEntriesResponse::Success => b.put_u8(0),
                    AppendEntriesResponse::PartialSuccess(id) => {
                        b.put_u8(1);
                        put_opt_log_id(&mut b, id.as_ref());
                    }
                    AppendEntriesResponse::Conflict => b.put_u8(2),
                    AppendEntriesResponse::HigherVote(v) => {
                        b.put_u8(3);
                        put_vote(&mut b, v);
                    }
                }
            }
            RaftRpc::Vote(v) => {
                b.put_u8(2);
                put_vote_request(&mut b, v);
            }
            RaftRpc::Voted(v) => {
                b.put_u8(3);
                put_vote(&mut b, &v.vote);
                b.put_u8(u8::from(v.vote_granted));
                put_opt_log_id(&mut b, v.last_log_id.as_ref());
            }
            RaftRpc::Snapshot { vote, meta, data } => {
                b.put_u8(4);
                put_vote(&mut b, vote);
                put_opt_log_id(&mut b, meta.last_log_id.as_ref());
                put_opt_log_id(&mut b, meta.last_membership.log_id().as_ref());
                encode_membership(meta.last_membership.membership(), &mut b);
                put_bytes(&mut b, data);
            }
            RaftRpc::Installed(s) => {
                b.put_u8(5);
                put_vote(&mut b, &s.vote);
            }
            RaftRpc::PreVote(v) => {
                b.put_u8(6);
                put_vote_request(&mut b, v);
            }
            RaftRpc::StreamAppend(a) => {
                b.put_u8(7);
                put_append(&mut b, a);
            }
            RaftRpc::StreamAppended(res) => {
                b.put_u8(8);
                match res {
                    Ok(id) => {
                        b.put_u8(0);
                        put_opt_log_id(&mut b, id.as_ref());
                    }
                    Err(StreamAppendError::Conflict(id)) => {
                        b.put_u8(1);
                        put_log_id(&mut b, id);
                    }
                    Err(StreamAppendError::HigherVote(v)) => {
                        b.put_u8(2);
                        put_vote(&mut b, v);
                    }
                }
            }
            RaftRpc::TransferLeader(t) => {
                b.put_u8(9);
                put_vote(&mut b, t.from_leader());
                b.put_u64_le(*t.to_node_id());
                put_opt_log_id(&mut b, t.last_log_id());
            }
            RaftRpc::Transferred(res) => {
                b.put_u8(10);
                match res {
                    Ok(()) => b.put_u8(0),
                    Err(TransferLeaderError::VoteChanged { expected, actual }) => {
                        b.put_u8(1);
                        put_vote(&mut b, expected);
                        put_vote(&mut b, actual);
                    }
                    Err(TransferLeaderError::LogNotFlushed { expected, actual }) => {
                        b.put_u8(2);
                        put_opt_log_id(&mut b, expected.as_ref());
                        put_opt_log_id(&mut b, actual.as_ref());
                    }
                }
            }
            RaftRpc::Forward(cmd) => {
                b.put_u8(11);
                put_bytes(&mut b, cmd);
            }
            RaftRpc::Forwarded(f) => {
                b.put_u8(12);
                match f {
                    Forwarded::Applied => b.put_u8(0),
                    Forwarded::Refused(m) => {
                        b.put_u8(1);
                        put_message(&mut b, m);
                    }
                    Forwarded::NotLeader(l) => {
                        b.put_u8(2);
                        put_option(&mut b, l.as_ref(), |b, id| b.put_u64_le(*id));
                    }
                    Forwarded::Failed(m) => {
                        b.put_u8(3);
                        put_message(&mut b, m);
                    }
                }
            }
            RaftRpc::Refused(m) => {
                b.put_u8(13);
                put_message(&mut b, m);
            }
            RaftRpc::ReadFrames {
                from,
                to,
                max_bytes,
            } => {
                b.put_u8(14);
                b.put_u64_le(*from);
                b.put_u64_le(*to);
                b.put_u32_le(*max_bytes);
            }
            RaftRpc::Frames(frames) => {
                b.put_u8(15);
                put_bytes(&mut b, frames);
            }
            RaftRpc::Beat => b.put_u8(16),
            RaftRpc::LookupIds { below, ids } => {
                b.put_u8(17);
                b.put_u64_le(*below);
                b.put_u32_le(ids.len() as u32);
                for id in ids {
                    b.put_slice(id);
                }
            }
            RaftRpc::FoundIds(found) => {
                b.put_u8(18);
                b.put_u32_le(found.len() as u32);
                for (index, offset, hlc) in found {
                    b.put_u32_le(*index);
                    b.put_u64_le(*offset);
                    b.put_u64_le(*hlc);
                }
            }
        }
        b.freeze()
    }

    /// Decodes a payload; batch bytes in appends are zero-copy slices of it.
    pub fn decode(payload: Bytes) -> Result<RaftRpc, DecodeError> {
        let mut r = Reader::new(payload);
        let at = r.position();
        let rpc = match r.u8()? {
            0 => RaftRpc::Append(get_append(&mut r)?),
            1 => {
                let tag_at = r.position();
                RaftRpc::Appended(match r.u8()? {
                    0 => AppendEntriesResponse::Success,
                    1 => AppendEntriesResponse::PartialSuccess(r.option(get_log_id)?),
                    2 => AppendEntriesResponse::Conflict,
                    3 => AppendEntriesResponse::HigherVote(get_vote(&mut r)?),
                    tag => {
                        return Err(DecodeError::InvalidTag {
                            what: "append response",
                            tag: tag.into(),
                            offset: tag_at,
                        });
                    }
                })
            }
            2 => RaftRpc::Vote(get_vote_request(&mut r)?),
            3 => RaftRpc::Voted(VoteResponse {
                vote: get_vote(&mut r)?,
                vote_granted: r.bool()?,
                last_log_id: r.option(get_log_id)?,
            }),
            4 => {
                let vote = get_vote(&mut r)?;
                let last_log_id = r.option(get_log_id)?;
                let membership_at = r.option(get_log_id)?;
                let membership = decode_membership(&mut r)?;
                RaftRpc::Snapshot {
                    vote,
                    meta: SnapshotMeta {
                        last_log_id,
                        last_membership: StoredMembership::new(membership_at, membership),
                    },
                    data: r.bytes()?,
                }
            }
            5 => RaftRpc::Installed(SnapshotResponse::new(get_vote(&mut r)?)),
            6 => RaftRpc::PreVote(get_vote_request(&mut r)?),
            7 => RaftRpc::StreamAppend(get_append(&mut r)?),
            8 => {
                let tag_at = r.position();
                RaftRpc::StreamAppended(match r.u8()? {
                    0 => Ok(r.option(get_log_id)?),
                    1 => Err(StreamAppendError::Conflict(get_log_id(&mut r)?)),
                    2 => Err(StreamAppendError::HigherVote(get_vote(&mut r)?)),
                    tag => return Err(bad_tag("stream append result", tag, tag_at)),
                })
            }
            9 => RaftRpc::TransferLeader(TransferLeaderRequest::new(
                get_vote(&mut r)?,
                r.u64()?,
                r.option(get_log_id)?,
            )),
            10 => {
                let tag_at = r.position();
                RaftRpc::Transferred(match r.u8()? {
                    0 => Ok(()),
                    1 => Err(TransferLeaderError::VoteChanged {
                        expected: get_vote(&mut r)?,
                        actual: get_vote(&mut r)?,
                    }),
                    2 => Err(TransferLeaderError::LogNotFlushed {
                        expected: r.option(get_log_id)?,
                        actual: r.option(get_log_id)?,
                    }),
                    tag => return Err(bad_tag("transfer result", tag, tag_at)),
                })
            }
            11 => RaftRpc::Forward(r.bytes()?),
            12 => {
                let tag_at = r.position();
                RaftRpc::Forwarded(match r.u8()? {
                    0 => Forwarded::Applied,
                    1 => Forwarded::Refused(r.string()?),
                    2 => Forwarded::NotLeader(r.option(|r| r.u64())?),
                    3 => Forwarded::Failed(r.string()?),
                    tag => return Err(bad_tag("forward result", tag, tag_at)),
                })
            }
            13 => RaftRpc::Refused(r.string()?),
            14 => RaftRpc::ReadFrames {
                from: r.u64()?,
                to: r.u64()?,
                max_bytes: r.u32()?,
            },
            15 => RaftRpc::Frames(r.bytes()?),
            16 => RaftRpc::Beat,
            17 => {
                let below = r.u64()?;
                let ids = r.vec_of("looked-up ids", 32, |r| {
                    let mut id = [0u8; 32];
                    id.copy_from_slice(&r.slice(32)?);
                    Ok(id)
                })?;
                RaftRpc::LookupIds { below, ids }
            }
            18 => RaftRpc::FoundIds(
                r.vec_of("found ids", 20, |r| Ok((r.u32()?, r.u64()?, r.u64()?)))?,
            ),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "raft rpc",
                    tag: tag.into(),
                    offset: at,
                });
            }
        };
        r.finish()?;
        Ok(rpc)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::BasicNode;

    use super::*;
    use crate::raft::types::Membership;

    fn membership() -> Membership {
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
        ]);
        Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap()
    }

    fn samples() -> Vec<RaftRpc> {
        let mut vote = Vote::new(3, 1);
        vote.committed = true;
        vec![
            RaftRpc::Append(AppendEntriesRequest {
                vote,
                prev_log_id: Some(log_id(2, 9)),
                leader_commit: Some(log_id(3, 8)),
                entries: vec![
                    Entry {
                        log_id: log_id(3, 10),
                        payload: EntryPayload::Blank,
                    },
                    Entry {
                        log_id: log_id(3, 11),
                        payload: EntryPayload::Membership(membership()),
                    },
                    Entry {
                        log_id: log_id(3, 12),
                        payload: EntryPayload::Normal(Proposal::new(Bytes::from_static(b"batch"))),
                    },
                    Entry {
                        log_id: log_id(3, 13),
                        payload: EntryPayload::Normal(Proposal::hinted(
                            Bytes::from_static(b"batch with ids"),
                            Some([7u64, u64::MAX, 0].into()),
                        )),
                    },
                ],
            }),
            RaftRpc::Append(AppendEntriesRequest {
                vote,
                prev_log_id: None,
                leader_commit: None,
                entries: vec![],
            }),
            RaftRpc::Appended(AppendEntriesResponse::Success),
            RaftRpc::Appended(AppendEntriesResponse::PartialSuccess(Some(log_id(1, 2)))),
            RaftRpc::Appended(AppendEntriesResponse::Conflict),
            RaftRpc::Appended(AppendEntriesResponse::HigherVote(Vote::new(9, 2))),
            RaftRpc::Vote(VoteRequest {
                vote: Vote::new(4, 2),
                last_log_id: Some(log_id(3, 12)),
                leadership_transfer: true,
            }),
            RaftRpc::Voted(VoteResponse {
                vote: Vote::new(4, 2),
                vote_granted: true,
                last_log_id: None,
            }),
            RaftRpc::Snapshot {
                vote,
                meta: SnapshotMeta {
                    last_log_id: Some(log_id(3, 40)),
                    last_membership: StoredMembership::new(Some(log_id(1, 0)), membership()),
                },
                data: Bytes::from_static(b"snapshot state"),
            },
            RaftRpc::Installed(SnapshotResponse::new(vote)),
            RaftRpc::PreVote(VoteRequest {
                vote: Vote::new(5, 3),
                last_log_id: None,
                leadership_transfer: false,
            }),
            RaftRpc::StreamAppend(AppendEntriesRequest {
                vote,
                prev_log_id: Some(log_id(3, 12)),
                leader_commit: Some(log_id(3, 12)),
                entries: vec![Entry {
                    log_id: log_id(3, 13),
                    payload: EntryPayload::Normal(Proposal::new(Bytes::from_static(b"b2"))),
                }],
            }),
            RaftRpc::StreamAppended(Ok(Some(log_id(3, 13)))),
            RaftRpc::StreamAppended(Ok(None)),
            RaftRpc::StreamAppended(Err(StreamAppendError::Conflict(log_id(2, 4)))),
            RaftRpc::StreamAppended(Err(StreamAppendError::HigherVote(Vote::new(7, 3)))),
            RaftRpc::TransferLeader(TransferLeaderRequest::new(vote, 2, Some(log_id(3, 13)))),
            RaftRpc::Transferred(Ok(())),
            RaftRpc::Transferred(Err(TransferLeaderError::VoteChanged {
                expected: vote,
                actual: Vote::new(4, 2),
            })),
            RaftRpc::Transferred(Err(TransferLeaderError::LogNotFlushed {
                expected: Some(log_id(3, 13)),
                actual: None,
            })),
            RaftRpc::Forward(Bytes::from_static(b"{\"cmd\":\"x\"}")),
            RaftRpc::Forwarded(Forwarded::Applied),
            RaftRpc::Forwarded(Forwarded::Refused("topic exists".into())),
            RaftRpc::Forwarded(Forwarded::NotLeader(Some(2))),
            RaftRpc::Forwarded(Forwarded::NotLeader(None)),
            RaftRpc::Forwarded(Forwarded::Failed("timeout".into())),
            RaftRpc::Refused("group 9 is not open here".into()),
            RaftRpc::ReadFrames {
                from: 10,
                to: 20,
                max_bytes: 1 << 20,
            },
            RaftRpc::Frames(Bytes::from_static(b"STMF frames")),
            RaftRpc::LookupIds {
                below: 42,
                ids: vec![[7; 32], [9; 32]],
            },
            RaftRpc::FoundIds(vec![(1, 40, 400)]),
        ]
    }

    #[test]
    fn roundtrip_every_rpc_and_reject_every_truncation() {
        for rpc in samples() {
            let enc = rpc.encode();
            let back = RaftRpc::decode(enc.clone()).expect("decodes");
            // openraft's messages do not all implement PartialEq; compare re-encodings.
            assert_eq!(back.encode(), enc, "{rpc:?}");
            for cut in 0..enc.len() {
                assert!(
                    RaftRpc::decode(enc.slice(..cut)).is_err(),
                    "{rpc:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn append_batches_are_zero_copy() {
        let rpc = &samples()[0];
        let enc = rpc.encode();
        let RaftRpc::Append(a) = RaftRpc::decode(enc.clone()).unwrap() else {
            panic!("append");
        };
        let EntryPayload::Normal(Proposal { bytes: b, .. }) = &a.entries[2].payload else {
            panic!("normal entry");
        };
        let base = enc.as_ptr() as usize;
        assert!((base..base + enc.len()).contains(&(b.as_ptr() as usize)));
    }

    #[test]
    fn rejects_unknown_kinds_and_lying_counts() {
        assert!(RaftRpc::decode(Bytes::from_static(&[99])).is_err());
        let mut b = BytesMut::new();
        b.put_u8(0);
        put_vote(&mut b, &Vote::new(1, 1));
        b.put_u8(0);
        b.put_u8(0);
        b.put_u32_le(u32::MAX);
        assert!(matches!(
            RaftRpc::decode(b.freeze()),
            Err(DecodeError::LengthOverrun { .. })
        ));
    }
}
