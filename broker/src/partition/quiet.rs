//! Quiescence: an idle partition group costs nothing (in the manner of CockroachDB's
//! quiesced ranges).
//!
//! A broker hosting hundreds of replicas spent a fifth of a core with nothing produced:
//! every leader heartbeating every follower four times a second. The broker-level beat of
//! the peer plane ([`crate::peer::liveness`], one per broker pair) tells a follower whether
//! its leader's broker lives, so an idle group needs no heartbeats of its own:
//!
//! - a **leader** quiets once nothing was proposed for [`LEADER_QUIET_AFTER`] and every
//!   follower holds its whole log: its ticker parks, so heartbeats stop;
//! - a **follower** quiets once no entries came for [`FOLLOWER_QUIET_AFTER`] (less than the
//!   leader's wait, so it is quiet before the heartbeats stop) while its leader's broker is
//!   alive: its ticker parks, and with it the election timer. If that broker dies, the detector stands this replica
//!   for election at once (`node::failover`), quiet or not;
//! - a follower that has just opened and knows (from the metadata) a live leader waits
//!   [`OPEN_GRACE`] for it before electing: the leader, quiet, wakes and heartbeats when it
//!   sees this broker come back ([`Partition::wake_for_peer`]).
//!
//! Any work wakes the group at once ([`Partition::stir`]): a proposal here, entries or a
//! vote from a peer. Safety does not depend on any of this: only when elections start.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;

use super::Partition;
use crate::peer::liveness::now_ms;
use crate::raft::types::NodeId;

/// Idle time after which a leader stops heartbeating.
pub const LEADER_QUIET_AFTER: Duration = Duration::from_secs(2);
/// Time without entries after which a follower stops its election timer.
pub const FOLLOWER_QUIET_AFTER: Duration = Duration::from_secs(1);
/// How long a just-opened follower waits for a live leader it knows of before electing.
pub const OPEN_GRACE: Duration = Duration::from_secs(3);

/// A group's quiescence state.
pub(crate) struct Quiet {
    /// When the group last did work, on the liveness clock.
    active_ms: AtomicU64,
    opened_ms: u64,
    /// Heartbeats and elections are off.
    quiet: AtomicBool,
}

impl Quiet {
    pub fn new() -> Quiet {
        let now = now_ms();
        Quiet {
            active_ms: AtomicU64::new(now),
            opened_ms: now,
            quiet: AtomicBool::new(false),
        }
    }

    fn idle_for(&self, now: u64) -> Duration {
        Duration::from_millis(now.saturating_sub(self.active_ms.load(Ordering::Acquire)))
    }
}

impl Partition {
    /// Work arrived: wakes the group if it was quiet.
    pub(crate) fn stir(&self) {
        self.quiet.active_ms.store(now_ms(), Ordering::Release);
        if self.quiet.quiet.swap(false, Ordering::AcqRel) {
            self.set_quiet(false);
        }
    }

    /// Broker `peer` has come (back) to life: a group this replica leads with a replica
    /// there wakes and heartbeats at once, so that replica learns its leader before its
    /// election timer runs out.
    pub(crate) async fn wake_for_peer(&self, peer: NodeId) {
        if !self.replicas().contains(&peer)
            || !self.raft.metrics().borrow_watched().state.is_leader()
        {
            return;
        }
        self.stir();
        let _ = self.raft.trigger().heartbeat().await;
    }

    /// Quiets the group if it is idle, or wakes it if it must not be quiet. `alive(id)`: the
    /// broker's detector positively hears broker `id`; `known_leader`: the leader the
    /// metadata names.
    pub(crate) fn settle(&self, alive: impl Fn(NodeId) -> bool, known_leader: Option<NodeId>) {
        let now = now_ms();
        let me = self.ctx.node_id;
        let quiet = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            match m.state {
                ServerState::Leader => {
                    let last = m.last_log_index;
                    let caught_up = m.last_applied.map(|l| l.index) == last
                        && m.replication.as_ref().is_some_and(|r| {
                            r.values().all(|matched| matched.map(|l| l.index) == last)
                        });
                    caught_up && self.quiet.idle_for(now) >= LEADER_QUIET_AFTER
                }
                ServerState::Follower => match m.current_leader {
                    Some(l) => {
                        l != me && alive(l) && self.quiet.idle_for(now) >= FOLLOWER_QUIET_AFTER
                    }
                    None => {
                        now.saturating_sub(self.quiet.opened_ms) < OPEN_GRACE.as_millis() as u64
                            && known_leader.is_some_and(|l| l != me && alive(l))
                    }
                },
                _ => false,
            }
        };
        if self.quiet.quiet.swap(quiet, Ordering::AcqRel) != quiet {
            self.set_quiet(quiet);
        }
    }

    fn set_quiet(&self, quiet: bool) {
        // The ticker drives heartbeats and election timers: a quiet group's is parked, so
        // it costs no wakeups at all.
        let rc = self.raft.runtime_config();
        rc.heartbeat(!quiet);
        rc.elect(!quiet);
        rc.tick(!quiet);
        tracing::debug!(topic = %self.topic, partition = self.partition, quiet, "quiescence");
    }
}
