//! The pace at which a leader copies to the replicas a move adds (`reassign_bytes_per_sec`),
//! so that moving a partition does not starve the clients and replicas already serving.
//!
//! One budget per broker, shared by every move it leads: each append or snapshot sent to
//! a replica being added waits until the budget has covered its bytes, `bytes / rate`
//! after the previous one was covered (a sender may batch a whole catch-up into one
//! request, so a request waits for its own bytes, not only for those before it). Nothing
//! else is paced: appends to the other replicas, heartbeats, votes, client traffic.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::raft::types::NodeId;

/// A wait shorter than this is not worth a timer: the budget lends it.
const SLACK: Duration = Duration::from_millis(5);
/// How often a paced send checks whether its move is still copying.
const SLICE: Duration = Duration::from_millis(100);

/// Gives a reservation's time back to the budget unless disarmed.
struct Refund<'a> {
    throttle: &'a MoveThrottle,
    cost: Duration,
    armed: bool,
}

impl Drop for Refund<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut next = self.throttle.next.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = next.as_mut() {
                *n = n.checked_sub(self.cost).unwrap_or(*n).max(Instant::now());
            }
        }
    }
}

/// The shared budget of a broker's moves.
#[derive(Debug)]
pub struct MoveThrottle {
    /// Bytes per second; 0 paces nothing.
    rate: u64,
    /// When the budget is next free.
    next: Mutex<Option<Instant>>,
    /// `(group, replica)` pairs being copied to by a move.
    copying: RwLock<HashSet<(u64, NodeId)>>,
}

impl MoveThrottle {
    pub fn new(rate: u64) -> MoveThrottle {
        MoveThrottle {
            rate,
            next: Mutex::new(None),
            copying: RwLock::new(HashSet::new()),
        }
    }

    /// Paces what group `group` sends to `replicas` (a move adds them), until
    /// [`Self::done`].
    pub fn copying(&self, group: u64, replicas: &[NodeId]) {
        let mut set = self.copying.write().unwrap_or_else(|p| p.into_inner());
        for &r in replicas {
            set.insert((group, r));
        }
    }

    /// Stops pacing what group `group` sends (its move is done, or it stopped leading).
    pub fn done(&self, group: u64) {
        self.copying
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(g, _)| *g != group);
    }

    /// How long sending `bytes` of group `group` to `target` must wait, if it must: only
    /// for a replica being copied to by a move, with a rate set.
    pub fn delay(&self, group: u64, target: NodeId, bytes: usize) -> Option<Duration> {
        if self.rate == 0
            || !self
                .copying
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&(group, target))
        {
            return None;
        }
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let start = next.map_or(now, |n| n.max(now));
        let covered = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        *next = Some(covered);
        let wait = covered - now;
        (wait > SLACK).then_some(wait)
    }

    /// Waits as [`Self::delay`] says, in slices: the wait ends early once the move is done.
    /// A wait given up (the send was dropped: openraft restarted the stream) gives its
    /// bytes back, so that retries do not run the budget into debt.
    pub async fn pace(&self, group: u64, target: NodeId, bytes: usize) {
        let Some(wait) = self.delay(group, target, bytes) else {
            return;
        };
        let mut refund = Refund {
            throttle: self,
            cost: Duration::from_secs_f64(bytes as f64 / self.rate as f64),
            armed: true,
        };
        let until = Instant::now() + wait;
        while Instant::now() < until && self.is_copying(group, target) {
            tokio::time::sleep_until(until.min(Instant::now() + SLICE)).await;
        }
        refund.armed = false;
    }

    fn is_copying(&self, group: u64, target: NodeId) -> bool {
        self.copying
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(group, target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_replicas_being_added_are_paced_at_the_rate() {
        let t = MoveThrottle::new(1 << 20);
        // Not being copied to: never waits.
        assert_eq!(t.delay(7, 4, 10 << 20), None);
        t.copying(7, &[4]);
        assert_eq!(t.delay(7, 2, 10 << 20), None, "another replica");
        assert_eq!(t.delay(8, 4, 10 << 20), None, "another group");
        // Each send waits until the budget covers it and everything before it.
        let secs = |d: Option<Duration>| d.unwrap().as_secs_f64();
        assert!((secs(t.delay(7, 4, 1 << 20)) - 1.0).abs() < 0.01);
        assert!((secs(t.delay(7, 4, 1 << 20)) - 2.0).abs() < 0.01);
        assert!((secs(t.delay(7, 4, 512 << 10)) - 2.5).abs() < 0.01);
        // Small sends within the slack go at once once the budget is idle; time passing
        // saves up no burst.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(t.delay(7, 4, 1 << 10), None);
        assert!((secs(t.delay(7, 4, 1 << 20)) - 1.0).abs() < 0.01);
        t.done(7);
        assert_eq!(t.delay(7, 4, 100 << 20), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_wait_gives_its_bytes_back_and_done_ends_waits() {
        let t = MoveThrottle::new(1 << 20);
        t.copying(7, &[4]);
        // A 10 s send is given up after 1 s: the next small send does not wait 10 s.
        let given_up = tokio::time::timeout(Duration::from_secs(1), t.pace(7, 4, 10 << 20)).await;
        assert!(given_up.is_err());
        let next = t.delay(7, 4, 1 << 10).unwrap_or_default();
        assert!(next < Duration::from_millis(10), "{next:?}");
        // A long wait ends soon after the move is done.
        let started = Instant::now();
        let waiting = t.pace(7, 4, 10 << 20);
        let finish = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            t.done(7);
        };
        tokio::join!(waiting, finish);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_zero_rate_paces_nothing() {
        let t = MoveThrottle::new(0);
        t.copying(1, &[2]);
        assert_eq!(t.delay(1, 2, usize::MAX), None);
    }
}
