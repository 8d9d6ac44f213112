//! Leadership of a partition replica: who leads, whether this replica serves as leader
//! (it has applied an entry of its own term, so its high watermark covers every
//! acknowledged record), the `NotLeader` answer with its hint, and what a replica does each
//! time it becomes leader.

use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;
use steme_protocol::{ApiError, LeaderHint};

use super::Partition;
use crate::raft::types::NodeId;

/// Entries a follower's log may trail its leader's by and still count as in sync: a few
/// seconds of batches under load, so a live follower does not flap in and out.
pub const MAX_IN_SYNC_LAG: u64 = 1_000;

impl Partition {
    /// If this replica leads but is not the preferred one (the first replica), and the
    /// preferred replica has every entry, hands leadership to it.
    pub async fn hand_back_leadership(&self) {
        if self.target().is_some() {
            // Moving: the move decides where leadership goes.
            return;
        }
        let Some(&preferred) = self.replicas().first() else {
            return;
        };
        if preferred == self.ctx.node_id {
            return;
        }
        let caught_up = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            m.state == ServerState::Leader
                && m.replication.as_ref().is_some_and(|r| {
                    r.get(&preferred)
                        .is_some_and(|matched| matched.map(|l| l.index) == m.last_log_index)
                })
        };
        if caught_up {
            tracing::info!(topic = %self.topic, partition = self.partition, to = preferred, "handing leadership back to the preferred replica");
            self.stir();
            if let Err(e) = self.raft.trigger().transfer_leader(preferred).await {
                tracing::debug!(error = %e, "leader transfer");
            }
        }
    }

    /// The leader this replica knows of, and the current term (the leader epoch).
    pub fn leader(&self) -> (Option<NodeId>, u64) {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        // A replica that stepped down may still name itself; never send a client back here.
        let leader = m
            .current_leader
            .filter(|&id| id != self.ctx.node_id || m.state == ServerState::Leader);
        (leader, m.current_term)
    }

    /// Given by the leader only: the replicas in sync with it, itself included. A follower
    /// is in sync while its broker's detector positively hears it and its log trails the
    /// leader's by at most [`MAX_IN_SYNC_LAG`] entries. Fewer than the replicas means the
    /// partition is under-replicated (Kafka's ISR, judged by Raft's matched index).
    pub fn in_sync_replicas(&self) -> Option<Vec<NodeId>> {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        if m.state != ServerState::Leader {
            return None;
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.as_ref()?;
        let in_sync = |id: NodeId| {
            id == self.ctx.node_id
                || (self.ctx.transport.peer_alive(id)
                    && matched
                        .get(&id)
                        .copied()
                        .flatten()
                        .is_some_and(|l| l.index.saturating_add(MAX_IN_SYNC_LAG) >= last))
        };
        Some(
            self.replicas()
                .iter()
                .copied()
                .filter(|&id| in_sync(id))
                .collect(),
        )
    }

    /// Whether this replica leads the partition and has applied an entry of its own term, so
    /// that its high watermark covers every acknowledged record. A replica just elected, or
    /// just restarted, starts from its last persisted applied state, which may lag.
    pub(super) fn serving(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow_watched();
        m.state == ServerState::Leader
            && self.state.serving_term.load(Ordering::Acquire) == m.current_term
    }

    /// Fails unless [`Self::serving`]: asked for the latest offsets, or for offsets past what
    /// it has applied, a replica that is not yet the serving leader cannot answer truthfully.
    pub(super) fn check_serving(&self) -> Result<(), ApiError> {
        if self.serving() {
            return Ok(());
        }
        let mut e = self.not_leader();
        if let ApiError::NotLeader { message, leader } = &mut e
            && leader
                .as_ref()
                .is_some_and(|l| l.node_id == self.ctx.node_id)
        {
            *message = format!(
                "broker {} leads {}-{} but has not yet applied its log; try again",
                self.ctx.node_id, self.topic, self.partition
            );
        }
        Err(e)
    }

    pub(super) fn not_leader(&self) -> ApiError {
        let (leader, _) = self.leader();
        ApiError::NotLeader {
            leader: leader
                .and_then(|id| (self.ctx.brokers)(id).map(|addr| LeaderHint { node_id: id, addr })),
            message: format!(
                "broker {} does not lead {}-{}",
                self.ctx.node_id, self.topic, self.partition
            ),
        }
    }
}

/// Each time this replica becomes leader: commit a blank entry, so that everything in its log
/// is applied and visible to consumers without waiting for the next produce (a restarted
/// single voter can resume its term with its log committed only up to what it had applied),
/// then report the leadership to the cluster metadata.
pub(super) async fn on_lead(weak: std::sync::Weak<Partition>) {
    let Some(mut metrics) = weak.upgrade().map(|p| p.raft.metrics()) else {
        return;
    };
    let mut reported = None;
    loop {
        let led = metrics
            .wait_until(|m| m.state == ServerState::Leader && Some(m.current_term) != reported);
        let Ok(term) = led.await.map(|m| m.current_term) else {
            return; // the group stopped
        };
        let Some(p) = weak.upgrade() else { return };
        p.stir();
        match p.raft.write_blank().await {
            Ok(_) => {
                // Applied: everything acknowledged before this term is below the watermark.
                p.state.serving_term.store(term, Ordering::Release);
                reported = Some(term);
                tracing::info!(topic = %p.topic, partition = p.partition, term, "leading");
                let _ = p.ctx.leaders.send((p.group, term));
                p.ctx.metrics.leader_changes.inc();
            }
            Err(e) => {
                tracing::debug!(topic = %p.topic, partition = p.partition, error = %e, "blank entry on lead");
                drop(p);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
