//! Checks on what authenticated peers say (D8, D11: defence in depth).
//!
//! Authentication proves a connection comes from a holder of the cluster secret; it does
//! not make everything such a peer says true. Before a Raft RPC reaches openraft, and
//! before a forwarded metadata command is proposed, it is checked against its sender (the
//! id the handshake proved) and against what this broker knows of the group:
//!
//! - A vote, pre-vote, append, snapshot or leadership transfer speaks for the node in its
//!   vote; that node must be the sender, and a voter of the group (or, while this replica
//!   has no membership yet, one of the nodes it expects: the partition's replicas, the
//!   cluster's brokers).
//! - No term may come near overflow: [`MAX_TERM`] is far beyond any real election count, and
//!   openraft increments terms unchecked.
//! - An append's entries continue its `prev` in index order, with terms that never decrease
//!   and never exceed the leader's; membership entries name only expected nodes.
//! - A forwarded metadata command speaks only for its sender: a broker registers only itself
//!   and reports only its own leaderships, for a term within reach; unknown commands never
//!   decode.

use openraft::EntryPayload;

use crate::metadata::{Command, MetadataState};
use crate::raft::rpc::{MAX_LOOKUP_IDS, RaftRpc};
use crate::raft::types::{Entry, LogId, Membership, NodeId, Vote, term_of};

/// The largest term any group may reach: 2^48, an election every millisecond for 8,900
/// years. Terms beyond it are refused, so `term + 1` never overflows.
pub const MAX_TERM: u64 = 1 << 48;

/// Why a peer's input was refused. Sent back as the refusal's text and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("term {term} is beyond the largest term a group may reach ({MAX_TERM})")]
    TermTooLarge { term: u64 },
    #[error("broker {sender} speaks for node {claimed}")]
    Impersonation { sender: NodeId, claimed: NodeId },
    #[error("broker {sender} is not a voter of group {group}")]
    NotMember { sender: NodeId, group: u64 },
    #[error(
        "group {group}: entry {index} does not continue the append (expected index {expected})"
    )]
    Gap {
        group: u64,
        index: u64,
        expected: u64,
    },
    #[error("group {group}: entry {index} has term {term}, not within {min}..={max}")]
    EntryTerm {
        group: u64,
        index: u64,
        term: u64,
        min: u64,
        max: u64,
    },
    #[error("group {group}: a membership names node {node}, which is not expected in it")]
    UnexpectedNode { group: u64, node: NodeId },
    #[error("a leadership transfer to node {to} reached node {me}")]
    WrongTarget { to: NodeId, me: NodeId },
    #[error("{0} is not a request a peer may send")]
    NotARequest(&'static str),
    #[error("forwarded metadata command does not decode: {0}")]
    BadCommand(String),
    #[error("group {group} is not a partition of any topic")]
    UnknownGroup { group: u64 },
    #[error("broker {node} is not a replica of group {group}")]
    NotReplica { node: NodeId, group: u64 },
    #[error("group {group}: entries {from}..{to} are not a range a repair may read")]
    BadRange { group: u64, from: u64, to: u64 },
    #[error("leader report for group {group} term {term} is beyond reach (recorded term {known})")]
    TermOutOfReach { group: u64, term: u64, known: u64 },
    #[error(
        "leader report for group {group}: broker {node} at term {term}, but the replica here \
         sees {leader:?} at term {local_term}"
    )]
    NotConfirmed {
        group: u64,
        node: NodeId,
        term: u64,
        leader: Option<NodeId>,
        local_term: u64,
    },
}

impl Refusal {
    /// Whether the sender may try again (the replica here has not caught up yet).
    pub fn is_retriable(&self) -> bool {
        matches!(self, Refusal::NotConfirmed { .. })
    }
}

/// What this broker's own replica of a group says: its term and the leader it follows.
pub use crate::raft::group::Leadership as LocalLeader;

/// What this broker knows of one group, to check RPCs for it against.
pub struct GroupView<'a> {
    pub group: u64,
    pub me: NodeId,
    /// The membership this replica has applied (empty before its first membership).
    pub membership: &'a Membership,
    /// Whether a node may appear in this group at all: one of a partition's replicas, or
    /// of the cluster's brokers for the metadata group. Asked only when a membership must be
    /// checked, or this replica has none yet.
    pub expected: &'a dyn Fn(NodeId) -> bool,
}

impl GroupView<'_> {
    fn is_voter(&self, node: NodeId) -> bool {
        let mut voters = self.membership.voter_ids().peekable();
        if voters.peek().is_none() {
            // Not initialised here yet: the first leader reaches us before any membership.
            return (self.expected)(node);
        }
        voters.any(|v| v == node)
    }

    /// The vote's node must be the sender, a voter, at a term that cannot overflow.
    fn check_vote(&self, sender: NodeId, vote: &Vote) -> Result<(), Refusal> {
        let term = vote.leader_id.term;
        if term > MAX_TERM {
            return Err(Refusal::TermTooLarge { term });
        }
        let claimed = vote.leader_id.voted_for;
        if claimed != sender {
            return Err(Refusal::Impersonation { sender, claimed });
        }
        if !self.is_voter(sender) {
            return Err(Refusal::NotMember {
                sender,
                group: self.group,
            });
        }
        Ok(())
    }

    fn check_membership(&self, m: &Membership) -> Result<(), Refusal> {
        match m
            .nodes()
            .map(|(id, _)| *id)
            .find(|id| !(self.expected)(*id))
        {
            Some(node) => Err(Refusal::UnexpectedNode {
                group: self.group,
                node,
            }),
            None => Ok(()),
        }
    }

    /// Entries continue `prev` one index at a time, terms within `prev`'s..=the leader's.
    fn check_entries(
        &self,
        vote_term: u64,
        prev: Option<&LogId>,
        entries: &[Entry],
    ) -> Result<(), Refusal> {
        let mut expected = prev.map_or(0, |p| p.index + 1);
        let mut min = prev.map_or(0, term_of);
        if min > vote_term {
            return Err(Refusal::EntryTerm {
                group: self.group,
                index: prev.map_or(0, |p| p.index),
                term: min,
                min: 0,
                max: vote_term,
            });
        }
        for e in entries {
            let (index, term) = (e.log_id.index, term_of(&e.log_id));
            if index != expected {
                return Err(Refusal::Gap {
                    group: self.group,
                    index,
                    expected,
                });
            }
            if term < min || term > vote_term {
                return Err(Refusal::EntryTerm {
                    group: self.group,
                    index,
                    term,
                    min,
                    max: vote_term,
                });
            }
            if let EntryPayload::Membership(m) = &e.payload {
                self.check_membership(m)?;
            }
            min = term;
            expected = index.saturating_add(1);
        }
        Ok(())
    }

    /// Checks one Raft request from `sender` before it reaches openraft.
    pub fn check(&self, sender: NodeId, rpc: &RaftRpc) -> Result<(), Refusal> {
        match rpc {
            RaftRpc::Vote(req) | RaftRpc::PreVote(req) => {
                self.check_vote(sender, &req.vote)?;
                if let Some(last) = &req.last_log_id
                    && term_of(last) > req.vote.leader_id.term
                {
                    return Err(Refusal::EntryTerm {
                        group: self.group,
                        index: last.index,
                        term: term_of(last),
                        min: 0,
                        max: req.vote.leader_id.term,
                    });
                }
                Ok(())
            }
            RaftRpc::Append(req) | RaftRpc::StreamAppend(req) => {
                self.check_vote(sender, &req.vote)?;
                self.check_entries(
                    req.vote.leader_id.term,
                    req.prev_log_id.as_ref(),
                    &req.entries,
                )
            }
            RaftRpc::Snapshot { vote, meta, .. } => {
                self.check_vote(sender, vote)?;
                self.check_membership(meta.last_membership.membership())?;
                self.check_entries(vote.leader_id.term, meta.last_log_id.as_ref(), &[])
            }
            RaftRpc::TransferLeader(req) => {
                self.check_vote(sender, req.from_leader())?;
                let to = *req.to_node_id();
                if to != self.me {
                    return Err(Refusal::WrongTarget { to, me: self.me });
                }
                Ok(())
            }
            RaftRpc::Forward(_) | RaftRpc::Beat => Ok(()),
            RaftRpc::ReadFrames { from, to, .. } => {
                // Only another replica of the group may read its log, and only a range
                // a damaged range can span.
                if !(self.expected)(sender) || sender == self.me {
                    return Err(Refusal::NotReplica {
                        node: sender,
                        group: self.group,
                    });
                }
                if from >= to || to - from > MAX_READ_FRAMES {
                    return Err(Refusal::BadRange {
                        group: self.group,
                        from: *from,
                        to: *to,
                    });
                }
                Ok(())
            }
            RaftRpc::LookupIds { ids, .. } => {
                // Any member of the cluster (the peer plane authenticated it) may ask: the
                // leader of a new partition need not host the old one. Bounded like a batch.
                if ids.len() > MAX_LOOKUP_IDS {
                    return Err(Refusal::NotARequest("an id lookup of too many ids"));
                }
                Ok(())
            }
            RaftRpc::FoundIds(_) => Err(Refusal::NotARequest("ids found")),
            RaftRpc::Frames(_) => Err(Refusal::NotARequest("frames")),
            RaftRpc::Appended(_) => Err(Refusal::NotARequest("an append result")),
            RaftRpc::Voted(_) => Err(Refusal::NotARequest("a vote result")),
            RaftRpc::Installed(_) => Err(Refusal::NotARequest("a snapshot result")),
            RaftRpc::StreamAppended(_) => Err(Refusal::NotARequest("a stream append result")),
            RaftRpc::Transferred(_) => Err(Refusal::NotARequest("a transfer result")),
            RaftRpc::Forwarded(_) => Err(Refusal::NotARequest("a forward result")),
            RaftRpc::Refused(_) => Err(Refusal::NotARequest("a refusal")),
        }
    }
}

/// The most entries one frame read may name (a repair reads a damaged range in pieces).
pub const MAX_READ_FRAMES: u64 = 1 << 24;

/// How far a leader report's term may run ahead of the recorded one when the metadata
/// leader cannot see the group itself (each election adds one).
pub const MAX_TERM_JUMP: u64 = 1 << 20;

/// Checks a metadata command forwarded by broker `sender`, against the current metadata.
/// `local` is what this broker's replica of the reported group says, when it hosts one: a
/// leader report must then match it exactly (the sender leads at exactly that term).
/// Without one, the report's term may run at most [`MAX_TERM_JUMP`] past the recorded one.
pub fn check_forwarded(
    sender: NodeId,
    cmd: &Command,
    state: &MetadataState,
    local: Option<LocalLeader>,
) -> Result<(), Refusal> {
    match cmd {
        Command::RegisterBroker { id, .. } if *id != sender => Err(Refusal::Impersonation {
            sender,
            claimed: *id,
        }),
        Command::PartitionLeader { group, node, term } => {
            if *node != sender {
                return Err(Refusal::Impersonation {
                    sender,
                    claimed: *node,
                });
            }
            if *term > MAX_TERM {
                return Err(Refusal::TermTooLarge { term: *term });
            }
            let placement = state
                .topics
                .values()
                .flat_map(|t| &t.partitions)
                .find(|p| p.group == *group)
                .ok_or(Refusal::UnknownGroup { group: *group })?;
            if !placement.hosted_on(*node) {
                return Err(Refusal::NotReplica {
                    node: *node,
                    group: *group,
                });
            }
            if let Some(l) = local {
                if l.term != *term || l.leader != Some(*node) {
                    return Err(Refusal::NotConfirmed {
                        group: *group,
                        node: *node,
                        term: *term,
                        leader: l.leader,
                        local_term: l.term,
                    });
                }
                return Ok(());
            }
            let known = state.leaders.get(group).map_or(0, |l| l.term);
            if *term > known.saturating_add(MAX_TERM_JUMP) {
                return Err(Refusal::TermOutOfReach {
                    group: *group,
                    term: *term,
                    known,
                });
            }
            Ok(())
        }
        Command::RecordSplit {
            topic, partition, ..
        } if !state
            .group_of(topic, *partition)
            .is_some_and(|p| p.hosted_on(sender)) =>
        {
            // Only a replica of the partition applied its marker, and can say where it is.
            Err(Refusal::NotReplica {
                node: sender,
                group: state.group_of(topic, *partition).map_or(0, |p| p.group),
            })
        }
        Command::CompleteReassignment { group, replicas } if !replicas.contains(&sender) => {
            // Only the group's leader completes a move, and it is one of the new replicas.
            Err(Refusal::NotReplica {
                node: sender,
                group: *group,
            })
        }
        _ => Ok(()),
    }
}

/// Decodes a forwarded command; anything that is not a known command is refused.
pub fn decode_forwarded(bytes: &[u8]) -> Result<Command, Refusal> {
    serde_json::from_slice(bytes).map_err(|e| Refusal::BadCommand(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};

    use super::*;
    use crate::metadata::{PartitionMeta, TopicMeta};
    use crate::raft::types::{Proposal, log_id};

    fn membership(voters: &[NodeId]) -> Membership {
        Membership::new_with_defaults(vec![voters.iter().copied().collect()], voters.to_vec())
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Proposal::new(bytes::Bytes::from_static(b"x"))),
        }
    }

    fn append(leader: NodeId, term: u64, prev: Option<(u64, u64)>, entries: Vec<Entry>) -> RaftRpc {
        RaftRpc::Append(AppendEntriesRequest {
            vote: Vote::new_committed(term, leader),
            prev_log_id: prev.map(|(t, i)| log_id(t, i)),
            leader_commit: None,
            entries,
        })
    }

    fn check(view: &GroupView, sender: NodeId, rpc: RaftRpc) -> Result<(), Refusal> {
        view.check(sender, &rpc)
    }

    /// Runs `test` on broker 2's view of group 7, whose voters are `voters` (and whose
    /// placement is brokers 1 to 3).
    fn on_group_7(voters: &[NodeId], test: impl FnOnce(&GroupView)) {
        let m = if voters.is_empty() {
            Membership::default()
        } else {
            membership(voters)
        };
        let expected = |n: NodeId| (1..=3).contains(&n);
        test(&GroupView {
            group: 7,
            me: 2,
            membership: &m,
            expected: &expected,
        });
    }

    #[test]
    fn members_speaking_for_themselves_pass() {
        on_group_7(&[1, 2, 3], |view| {
            let vote = VoteRequest::new(Vote::new(5, 1), Some(log_id(4, 10)));
            assert_eq!(check(view, 1, RaftRpc::Vote(vote.clone())), Ok(()));
            assert_eq!(check(view, 1, RaftRpc::PreVote(vote)), Ok(()));
            let ok = append(3, 5, Some((4, 10)), vec![entry(4, 11), entry(5, 12)]);
            assert_eq!(check(view, 3, ok), Ok(()));
            let transfer = TransferLeaderRequest::new(Vote::new_committed(5, 3), 2, None);
            assert_eq!(check(view, 3, RaftRpc::TransferLeader(transfer)), Ok(()));
        });
    }

    #[test]
    fn rejects_impossible_terms_impersonation_and_non_members() {
        on_group_7(&[1, 2, 3], |view| {
            let max = RaftRpc::Vote(VoteRequest::new(Vote::new(u64::MAX, 1), None));
            assert_eq!(
                check(view, 1, max),
                Err(Refusal::TermTooLarge { term: u64::MAX })
            );
            let forged = RaftRpc::Vote(VoteRequest::new(Vote::new(9, 3), None));
            assert_eq!(
                check(view, 1, forged),
                Err(Refusal::Impersonation {
                    sender: 1,
                    claimed: 3
                })
            );
            let phantom = append(99, 9, None, vec![]);
            assert_eq!(
                check(view, 99, phantom),
                Err(Refusal::NotMember {
                    sender: 99,
                    group: 7
                })
            );
            let elsewhere = TransferLeaderRequest::new(Vote::new_committed(5, 3), 1, None);
            assert_eq!(
                check(view, 3, RaftRpc::TransferLeader(elsewhere)),
                Err(Refusal::WrongTarget { to: 1, me: 2 })
            );
            assert!(matches!(
                check(view, 1, RaftRpc::Refused("x".into())),
                Err(Refusal::NotARequest(_))
            ));
        });
    }

    #[test]
    fn rejects_gaps_term_regressions_and_phantom_memberships() {
        on_group_7(&[1, 2, 3], |view| {
            let gap = append(1, 5, Some((4, 10)), vec![entry(5, 12)]);
            assert!(matches!(check(view, 1, gap), Err(Refusal::Gap { .. })));
            let ahead = append(1, 5, Some((4, 10)), vec![entry(6, 11)]);
            assert!(matches!(
                check(view, 1, ahead),
                Err(Refusal::EntryTerm { term: 6, .. })
            ));
            let back = append(1, 5, Some((4, 10)), vec![entry(3, 11)]);
            assert!(matches!(
                check(view, 1, back),
                Err(Refusal::EntryTerm { term: 3, .. })
            ));
            let phantom = Entry {
                log_id: log_id(5, 11),
                payload: EntryPayload::Membership(membership(&[99])),
            };
            let hand_over = append(1, 5, Some((4, 10)), vec![phantom]);
            assert_eq!(
                check(view, 1, hand_over),
                Err(Refusal::UnexpectedNode { group: 7, node: 99 })
            );
        });
    }

    #[test]
    fn an_uninitialised_replica_expects_the_placement() {
        on_group_7(&[], |view| {
            let first = append(1, 1, None, vec![entry(1, 0)]);
            assert_eq!(check(view, 1, first), Ok(()));
            let outsider = append(4, 1, None, vec![entry(1, 0)]);
            assert!(matches!(
                check(view, 4, outsider),
                Err(Refusal::NotMember { sender: 4, .. })
            ));
        });
    }

    #[test]
    fn forwarded_commands_speak_only_for_their_sender() {
        let mut state = MetadataState::default();
        state.brokers.insert(1, "a".into());
        state.brokers.insert(2, "b".into());
        state.topics.insert(
            "t".into(),
            TopicMeta {
                name: "t".into(),
                replication_factor: 2,
                configs: BTreeMap::new(),
                partitions: vec![PartitionMeta {
                    group: 5,
                    replicas: vec![1, 2],
                    target: None,
                }],
                map_epoch: 0,
                splits: Vec::new(),
                parsed: Default::default(),
            },
        );
        let register = |id| Command::RegisterBroker {
            id,
            addr: "x".into(),
            peer_addr: None,
            signer: None,
        };
        assert_eq!(check_forwarded(2, &register(2), &state, None), Ok(()));
        // A move is reported done only by one of the replicas it moves to (their leader).
        let done = |replicas: Vec<NodeId>| Command::CompleteReassignment { group: 5, replicas };
        assert_eq!(check_forwarded(2, &done(vec![2, 3]), &state, None), Ok(()));
        assert!(matches!(
            check_forwarded(1, &done(vec![2, 3]), &state, None),
            Err(Refusal::NotReplica { node: 1, group: 5 })
        ));
        assert!(check_forwarded(2, &register(1), &state, None).is_err());
        let report = |node, term| Command::PartitionLeader {
            group: 5,
            node,
            term,
        };
        assert_eq!(check_forwarded(2, &report(2, 3), &state, None), Ok(()));
        let here = |term, leader| {
            Some(LocalLeader {
                term,
                leader: Some(leader),
            })
        };
        assert_eq!(
            check_forwarded(2, &report(2, 3), &state, here(3, 2)),
            Ok(())
        );
        // The replica here sees another leader, or another term: not confirmed.
        for local in [here(3, 1), here(4, 2), here(2, 2)] {
            let r = check_forwarded(2, &report(2, 3), &state, local);
            assert!(r.as_ref().is_err_and(Refusal::is_retriable), "{r:?}");
        }
        assert!(matches!(
            check_forwarded(2, &report(99, 3), &state, None),
            Err(Refusal::Impersonation { .. })
        ));
        assert!(matches!(
            check_forwarded(2, &report(2, u64::MAX), &state, None),
            Err(Refusal::TermTooLarge { .. })
        ));
        assert!(matches!(
            check_forwarded(2, &report(2, 1 << 30), &state, None),
            Err(Refusal::TermOutOfReach { .. })
        ));
        let elsewhere = Command::PartitionLeader {
            group: 6,
            node: 2,
            term: 1,
        };
        assert!(matches!(
            check_forwarded(2, &elsewhere, &state, None),
            Err(Refusal::UnknownGroup { group: 6 })
        ));
        assert!(decode_forwarded(br#"{"cmd":"drop_everything"}"#).is_err());
        assert!(decode_forwarded(br#"{"cmd":"delete_topic","name":"t"}"#).is_ok());
    }
}
