//! The peer plane under attack, against real broker processes (D8, D11).
//!
//! Forged Raft RPCs and forwarded metadata commands — a vote with term `u64::MAX`, a vote
//! with a jump of 1,000 terms asking for a leadership transfer, an append from a phantom
//! leader carrying a membership `voters={99}`, leader reports naming node 99 at term MAX, a
//! registration of another broker's id at another address — are sent three ways:
//!
//! 1. on the client port, as any TCP client could;
//! 2. on the peer port without credentials (plain frames), and with a wrong secret;
//! 3. as an authenticated peer (the right secret) claiming a non-member id, and as a member
//!    carrying impossible terms or speaking for another node.
//!
//! Each must be refused. Afterwards every partition keeps its leader and epoch, the
//! metadata still serves, produce and verified consume work, and no broker log shows a
//! panic.

use std::time::Duration;

use anyhow::{Context, ensure};
use openraft::EntryPayload;
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use steme_broker::metadata::Command;
use steme_broker::peer::auth::ClusterSecret;
use steme_broker::raft::rpc::{Forwarded, RaftRpc};
use steme_broker::raft::types::{Entry, Membership, Proposal, Vote, log_id};
use steme_client::{ClientConfig, Producer, ProducerConfig};
use steme_protocol::ErrorCode;
use steme_tests::cluster::{Cluster, ClusterOptions, describe_replica};
use steme_tests::peer::{PeerSession, raft_on_client_port, raw_exchange};
use steme_tests::workload::{check_log, create_topic, produce_all, read_topic, signed};
use steme_tests::{unique, within};

/// The Raft group of the first partition of the first topic a new cluster creates.
const FIRST_PARTITION_GROUP: u64 = 1;
const METADATA_GROUP: u64 = 0;

/// A vote request from `candidate` at `term`.
fn vote(candidate: u64, term: u64, transfer: bool) -> RaftRpc {
    let mut req = VoteRequest::new(Vote::new(term, candidate), Some(log_id(term, 1 << 30)));
    req.leadership_transfer = transfer;
    RaftRpc::Vote(req)
}

/// An append from `leader` at `term` handing the group to a phantom voter 99.
fn phantom_membership(leader: u64, term: u64) -> RaftRpc {
    let m = Membership::new_with_defaults(vec![[99].into()], [99]);
    RaftRpc::Append(AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        leader_commit: Some(log_id(term, 0)),
        entries: vec![Entry {
            log_id: log_id(term, 0),
            payload: EntryPayload::Membership(m),
        }],
    })
}

/// An append from `leader` at `term` of an unsigned, unchecked batch.
fn forged_batch(leader: u64, term: u64) -> RaftRpc {
    RaftRpc::StreamAppend(AppendEntriesRequest {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        leader_commit: Some(log_id(term, 0)),
        entries: vec![Entry {
            log_id: log_id(term, 0),
            payload: EntryPayload::Normal(Proposal::new(bytes::Bytes::from_static(&[0xAB; 64]))),
        }],
    })
}

fn forward(cmd: &Command) -> RaftRpc {
    RaftRpc::Forward(cmd.encode().bytes)
}

/// Every forged RPC, with the group it targets, as broker `sender` would send it.
fn attacks(sender: u64) -> Vec<(&'static str, u64, RaftRpc)> {
    let max = u64::MAX;
    let victim = if sender == 1 { 2 } else { 1 };
    vec![
        (
            "vote term MAX",
            FIRST_PARTITION_GROUP,
            vote(sender, max, false),
        ),
        (
            "metadata vote term MAX",
            METADATA_GROUP,
            vote(sender, max, false),
        ),
        (
            "vote +1000 transfer",
            FIRST_PARTITION_GROUP,
            vote(99, 1000, true),
        ),
        (
            "phantom membership",
            FIRST_PARTITION_GROUP,
            phantom_membership(99, 1000),
        ),
        (
            "forged batch",
            FIRST_PARTITION_GROUP,
            forged_batch(99, 1000),
        ),
        (
            "transfer to 99",
            FIRST_PARTITION_GROUP,
            RaftRpc::TransferLeader(TransferLeaderRequest::new(
                Vote::new_committed(1000, 99),
                99,
                None,
            )),
        ),
        (
            "leader report 99 term MAX",
            METADATA_GROUP,
            forward(&Command::PartitionLeader {
                group: FIRST_PARTITION_GROUP,
                node: 99,
                term: max,
            }),
        ),
        (
            "register another broker elsewhere",
            METADATA_GROUP,
            forward(&Command::RegisterBroker {
                id: victim,
                addr: "203.0.113.1:9092".into(),
                peer_addr: None,
                signer: None,
            }),
        ),
    ]
}

/// Refused outright: by the guard, or (a forwarded command) as not confirmed or not for
/// this broker to propose.
fn refused(answer: &RaftRpc) -> bool {
    matches!(
        answer,
        RaftRpc::Refused(_)
            | RaftRpc::Forwarded(
                Forwarded::Refused(_) | Forwarded::Failed(_) | Forwarded::NotLeader(_)
            )
    )
}

/// (leader, epoch) of partition 0 as each broker's replica sees it.
async fn leadership(cluster: &Cluster, topic: &str) -> anyhow::Result<Vec<(Option<u64>, u64)>> {
    let mut out = Vec::new();
    for id in cluster.ids() {
        let d = describe_replica(&cluster.broker(id).bootstrap(), topic, 0).await?;
        out.push((d.leader, d.leader_epoch));
    }
    Ok(out)
}

struct Setup {
    cluster: Cluster,
    topic: String,
    before: Vec<(Option<u64>, u64)>,
    produced: usize,
}

async fn setup() -> anyhow::Result<Setup> {
    let cluster = Cluster::start(ClusterOptions::new(3)).await?;
    let topic = unique("planes");
    create_topic(&cluster.bootstrap(), &topic, 1).await?;
    cluster
        .wait_for_leader(&topic, 0, None, Duration::from_secs(30))
        .await?;
    let mut s = Setup {
        cluster,
        topic,
        before: Vec::new(),
        produced: 0,
    };
    produce_and_check(&mut s, "before").await?;
    s.before = leadership(&s.cluster, &s.topic).await?;
    Ok(s)
}

/// Produces 20 signed records and reads the whole topic back, verified.
async fn produce_and_check(s: &mut Setup, run: &str) -> anyhow::Result<()> {
    let producer = Producer::connect(
        &s.cluster.bootstrap(),
        &s.topic,
        ProducerConfig {
            client: ClientConfig::default(),
            ..ProducerConfig::default()
        },
    )
    .await?;
    let batch = signed(&format!("{}-{run}", s.topic), 20, 120)?;
    produce_all(&producer, &batch).await?;
    s.produced += batch.len();
    let log = read_topic(&s.cluster.bootstrap(), &s.topic, Duration::from_secs(30)).await?;
    let index = check_log(&log)?;
    ensure!(
        index.records == s.produced,
        "read {} records back, produced {}",
        index.records,
        s.produced
    );
    Ok(())
}

/// Leaders and epochs unchanged, metadata and data paths working, no panic.
async fn unharmed(s: &mut Setup) -> anyhow::Result<()> {
    let after = leadership(&s.cluster, &s.topic).await?;
    ensure!(
        after == s.before,
        "leadership changed: before {:?}, after {after:?}",
        s.before
    );
    let seen = s.cluster.leaders_seen_by(1, &s.topic).await?;
    ensure!(
        seen == vec![s.before[0].0],
        "metadata names leaders {seen:?}, expected {:?}",
        s.before[0].0
    );
    // The metadata group still commits: a topic can be created.
    create_topic(&s.cluster.bootstrap(), &unique("still-works"), 1).await?;
    produce_and_check(s, "after").await?;
    ensure!(
        s.cluster.any_panic().is_none(),
        "broker {:?} panicked",
        s.cluster.any_panic()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_port_refuses_every_peer_api() -> anyhow::Result<()> {
    within(Duration::from_secs(180), async {
        let mut s = setup().await?;
        for id in s.cluster.ids() {
            let addr = s.cluster.broker(id).bootstrap();
            for (what, group, rpc) in attacks(2) {
                let answer = raft_on_client_port(&addr, group, &rpc).await?;
                let err = answer
                    .err()
                    .with_context(|| format!("{what}: broker {id}'s client port served it"))?;
                ensure!(
                    err.code() == ErrorCode::InvalidRequest && err.to_string().contains("peer"),
                    "{what}: broker {id} answered {err}"
                );
            }
        }
        unharmed(&mut s).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_port_refuses_strangers_and_wrong_secrets() -> anyhow::Result<()> {
    within(Duration::from_secs(180), async {
        let mut s = setup().await?;
        let wrong = ClusterSecret::from_bytes(b"not the cluster secret, but long enough");
        for id in s.cluster.ids() {
            let peer_addr = s.cluster.broker(id).peer_addr().context("peer plane")?;
            // Plain protocol frames, no handshake: closed without an answer.
            for (what, group, rpc) in attacks(2) {
                let mut frame = bytes::BytesMut::new();
                steme_protocol::messages::request_frame(
                    1,
                    &steme_protocol::messages::raft::RaftRequest {
                        group_id: group,
                        payload: rpc.encode(),
                    },
                )
                .encode(&mut frame);
                let back = raw_exchange(peer_addr, &frame, Duration::from_secs(10)).await?;
                ensure!(
                    back.len() < 100,
                    "{what}: broker {id}'s peer port answered {} bytes to an unauthenticated frame",
                    back.len()
                );
            }
            // A wrong secret: the handshake fails, nothing is served.
            let session = PeerSession::connect(peer_addr, &wrong, 2, id).await?;
            ensure!(session.is_err(), "broker {id} accepted a wrong secret");
        }
        unharmed(&mut s).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_peers_cannot_speak_for_others_or_break_terms() -> anyhow::Result<()> {
    within(Duration::from_secs(180), async {
        let mut s = setup().await?;
        let secret = ClusterSecret::load(&s.cluster.secret_file())?;
        for id in s.cluster.ids() {
            let peer_addr = s.cluster.broker(id).peer_addr().context("peer plane")?;
            // A holder of the secret claiming to be broker 99, and a member (any broker but
            // this one) sending what a member may not.
            let member = if id == 1 { 2 } else { 1 };
            for claim in [99, member] {
                let mut peer = PeerSession::connect(peer_addr, &secret, claim, id)
                    .await?
                    .map_err(|e| anyhow::anyhow!("handshake as {claim} with {id}: {e}"))?;
                for (what, group, rpc) in attacks(claim) {
                    let answer = peer.call(group, &rpc).await?;
                    ensure!(
                        refused(&answer),
                        "{what} as broker {claim}: broker {id} answered {answer:?}"
                    );
                }
            }
        }
        unharmed(&mut s).await
    })
    .await
}

/// A small deterministic generator (xorshift64*), so a failing run is replayed by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A term: small, near the current ones, huge, or at the edges of u64.
    fn term(&mut self) -> u64 {
        match self.below(5) {
            0 => self.below(4),
            1 => 1 + self.below(50),
            2 => self.next() >> self.below(64),
            3 => u64::MAX - self.below(3),
            _ => (1 << 48) + self.below(3) - 1,
        }
    }

    /// A node id: a member, a phantom, or 0.
    fn node(&mut self) -> u64 {
        [0, 1, 2, 3, 4, 99, u64::MAX][self.below(7) as usize]
    }

    fn entries(&mut self, first: u64) -> Vec<Entry> {
        let n = self.below(4);
        (0..n)
            .map(|i| {
                let index = if self.below(4) == 0 {
                    self.next() >> 20
                } else {
                    first + i
                };
                let payload = match self.below(3) {
                    0 => EntryPayload::Blank,
                    1 => {
                        let voters: std::collections::BTreeSet<u64> =
                            (0..1 + self.below(3)).map(|_| self.node()).collect();
                        let all: Vec<u64> = voters.iter().copied().collect();
                        EntryPayload::Membership(Membership::new_with_defaults(vec![voters], all))
                    }
                    _ => {
                        let len = self.below(300) as usize;
                        let bytes: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
                        EntryPayload::Normal(Proposal::new(bytes.into()))
                    }
                };
                Entry {
                    log_id: log_id(self.term(), index),
                    payload,
                }
            })
            .collect()
    }

    /// One random Raft request, claiming to come from `leader`.
    fn rpc(&mut self, leader: u64) -> (u64, RaftRpc) {
        let group = [METADATA_GROUP, FIRST_PARTITION_GROUP, 2, u64::MAX][self.below(4) as usize];
        let term = self.term();
        let prev = (self.below(2) == 0).then(|| log_id(self.term(), self.below(100)));
        let first = prev.map_or(0, |p| p.index + 1);
        let rpc = match self.below(6) {
            0 => vote(leader, term, self.below(2) == 0),
            1 => RaftRpc::PreVote(VoteRequest::new(Vote::new(term, leader), prev)),
            2 => RaftRpc::Append(AppendEntriesRequest {
                vote: Vote::new_committed(term, leader),
                prev_log_id: prev,
                leader_commit: prev,
                entries: self.entries(first),
            }),
            3 => RaftRpc::StreamAppend(AppendEntriesRequest {
                vote: Vote::new_committed(term, leader),
                prev_log_id: prev,
                leader_commit: prev,
                entries: self.entries(first),
            }),
            4 => RaftRpc::TransferLeader(TransferLeaderRequest::new(
                Vote::new_committed(term, leader),
                self.node(),
                prev,
            )),
            _ => forward(&Command::PartitionLeader {
                group,
                node: self.node(),
                term,
            }),
        };
        (group, rpc)
    }
}

/// Random and adversarial RPCs from holders of the secret that are not members (or speak
/// for a node they are not): nothing may panic, commit, or move a term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_rpcs_from_non_members_change_nothing() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut s = setup().await?;
        let secret = ClusterSecret::load(&s.cluster.secret_file())?;
        let seed = std::env::var("STEME_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64 | 1)
            });
        let cases: u64 = std::env::var("STEME_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(600);
        eprintln!("[fuzz] seed {seed} ({cases} cases; STEME_FUZZ_SEED={seed} replays it)");
        let mut rng = Rng(seed);
        let hwm_before = describe_replica(&s.cluster.broker(1).bootstrap(), &s.topic, 0)
            .await?
            .high_watermark;
        let mut refusals = 0u64;
        for id in s.cluster.ids() {
            let peer_addr = s.cluster.broker(id).peer_addr().context("peer plane")?;
            let mut peer = PeerSession::connect(peer_addr, &secret, 99, id)
                .await?
                .map_err(|e| anyhow::anyhow!("handshake with {id}: {e}"))?;
            let member = if id == 1 { 2 } else { 1 };
            let mut impostor = PeerSession::connect(peer_addr, &secret, member, id)
                .await?
                .map_err(|e| anyhow::anyhow!("handshake with {id}: {e}"))?;
            for case in 0..cases / 3 {
                // As the non-member 99 claiming any node, or as a member claiming another.
                let (who, claim) = if case % 2 == 0 {
                    (&mut peer, rng.node())
                } else {
                    let mut other = rng.node();
                    if other == member {
                        other = 99;
                    }
                    (&mut impostor, other)
                };
                let (group, rpc) = rng.rpc(claim);
                let answer = who
                    .call(group, &rpc)
                    .await
                    .with_context(|| format!("seed {seed} case {case}: {rpc:?}"))?;
                // A Raft RPC must never reach openraft. A forwarded leader report may be
                // one the sender may make (its own, current leadership): what it changed,
                // if anything, is checked below.
                let reached_raft = !matches!(answer, RaftRpc::Refused(_) | RaftRpc::Forwarded(_));
                ensure!(
                    !reached_raft,
                    "seed {seed} case {case}: broker {id} served {rpc:?}: {answer:?}"
                );
                refusals += u64::from(refused(&answer));
            }
        }
        eprintln!("[fuzz] {refusals} of {cases} RPCs refused outright; none reached openraft");
        let hwm_after = describe_replica(&s.cluster.broker(1).bootstrap(), &s.topic, 0)
            .await?
            .high_watermark;
        ensure!(
            hwm_after == hwm_before,
            "seed {seed}: high watermark moved {hwm_before} -> {hwm_after}"
        );
        unharmed(&mut s).await
    })
    .await
}
