//! The node's side of fast failover (see [`crate::peer::liveness`]): beat the peers, and
//! stand for election in every group whose leader this broker holds dead.

use std::collections::{BTreeSet, HashMap};
use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use super::Broker;
use crate::metadata::METADATA_GROUP;
use crate::peer::liveness::{self, BEAT};
use crate::raft::group::GroupRaft;
use crate::raft::types::NodeId;

/// How often the groups are looked at while a peer is held dead.
const TICK: Duration = Duration::from_millis(25);
/// How often idle partition groups are quieted (see `crate::partition::quiet`).
const SETTLE_EVERY: Duration = Duration::from_millis(250);

/// A group whose leader is held dead, as this replica saw it first.
struct Suspicion {
    term: u64,
    since: Instant,
    stood: bool,
}

/// Beats every peer each [`BEAT`] and, while any is held dead, has this replica stand for
/// election (in its turn) in each group that dead peer leads.
pub(super) async fn watch_peers(weak: Weak<Broker>) {
    // A broker without a peer plane has no one to beat, and must not hold itself alive
    // (a strong reference every tick) past its owner's drop: its data-directory lock is
    // released only when the last reference goes.
    if weak.upgrade().is_none_or(|b| b.secret.is_none()) {
        return;
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_beat: Option<Instant> = None;
    let mut last_settle = Instant::now();
    let mut suspected: HashMap<u64, Suspicion> = HashMap::new();
    let mut alive: BTreeSet<NodeId> = BTreeSet::new();
    loop {
        tick.tick().await;
        let Some(broker) = weak.upgrade() else { return };
        let peers = broker.peer_ids();
        if peers.is_empty() {
            continue;
        }
        let now_alive: BTreeSet<NodeId> = peers
            .iter()
            .copied()
            .filter(|&id| broker.transport.peer_alive(id))
            .collect();
        for &back in now_alive.difference(&alive) {
            for p in broker.hosted() {
                p.wake_for_peer(back).await;
            }
        }
        alive = now_alive;
        if last_settle.elapsed() >= SETTLE_EVERY {
            last_settle = Instant::now();
            let meta = broker.metadata();
            for p in broker.hosted() {
                let known = meta.leaders.get(&p.group).map(|l| l.node);
                p.settle(|id| alive.contains(&id), known);
            }
        }
        if last_beat.is_none_or(|t| t.elapsed() >= BEAT) {
            let addrs = peers
                .iter()
                .filter_map(|&id| Some((id, (broker.ctx.peers)(id)?)));
            liveness::beat(&broker.transport, addrs);
            last_beat = Some(Instant::now());
        }
        let dead: Vec<NodeId> = peers
            .into_iter()
            .filter(|&id| broker.transport.peer_dead(id))
            .collect();
        if dead.is_empty() {
            suspected.clear();
            continue;
        }
        broker.stand_where_leader_dead(&dead, &mut suspected).await;
    }
}

impl Broker {
    /// The other brokers this one knows of: its `--peer` list and the metadata's.
    fn peer_ids(&self) -> BTreeSet<NodeId> {
        let me = self.cfg.node_id;
        let meta = self.metadata();
        self.cfg
            .peers
            .iter()
            .map(|p| p.id)
            .chain(meta.peers.keys().copied())
            .chain(meta.brokers.keys().copied())
            .filter(|&id| id != me)
            .collect()
    }

    async fn stand_where_leader_dead(
        &self,
        dead: &[NodeId],
        suspected: &mut HashMap<u64, Suspicion>,
    ) {
        let me = self.cfg.node_id;
        let groups = std::iter::once((METADATA_GROUP, GroupRaft::Meta(self.meta.clone()))).chain(
            self.hosted()
                .into_iter()
                .map(|p| (p.group, GroupRaft::Partition(p.raft().clone()))),
        );
        for (group, raft) in groups {
            let now = raft.leadership();
            let Some(leader) = now.leader.filter(|l| dead.contains(l)) else {
                suspected.remove(&group);
                continue;
            };
            let membership = raft.membership();
            let voters = membership.membership().voter_ids();
            let Some(turn) = liveness::turn(&self.transport, me, leader, voters) else {
                continue; // a learner here
            };
            let s = suspected.entry(group).or_insert(Suspicion {
                term: now.term,
                since: Instant::now(),
                stood: false,
            });
            if s.term != now.term {
                *s = Suspicion {
                    term: now.term,
                    since: Instant::now(),
                    stood: false,
                };
            }
            if s.stood || s.since.elapsed() < turn {
                continue;
            }
            s.stood = true;
            tracing::info!(
                group,
                leader,
                term = now.term,
                "leader held dead: standing for election"
            );
            let elected = match &raft {
                GroupRaft::Meta(r) => r.trigger().elect(false).await,
                GroupRaft::Partition(r) => r.trigger().elect(false).await,
            };
            if let Err(e) = elected {
                tracing::warn!(group, error = %e, "could not stand for election");
            }
        }
    }
}
