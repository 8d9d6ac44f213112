//! Durability: group commit and the durable index.
//!
//! The writer appends with `write` (into the page cache) and records, under the small
//! `sync` lock, the last appended index and the files that hold unsynced bytes. A flush —
//! from the writer itself, the interval thread, or any thread holding a [`Flusher`] —
//! captures that list and index, runs `fdatasync` on each file *without* holding any lock
//! the writer needs, and then publishes the captured index as durable. So one sync covers
//! every append made before it, and appends continue while it runs.
//!
//! A failed sync poisons the log (the kernel may have dropped the dirty pages: retrying
//! would report data durable that is not). Every later write and flush returns
//! [`Error::Poisoned`] naming the first failure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{DURABLE_SLOT_POS, DurablePoint};
use crate::state::{Shared, SyncTarget, lock};

impl Shared {
    pub(crate) fn poisoned(&self) -> Option<String> {
        lock(&self.durable).poisoned.clone()
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        match self.poisoned() {
            Some(reason) => Err(Error::Poisoned { reason }),
            None => Ok(()),
        }
    }

    pub(crate) fn poison(&self, reason: String) {
        let mut d = lock(&self.durable);
        if d.poisoned.is_none() {
            d.poisoned = Some(reason);
        }
        self.durable_cond.notify_all();
    }

    pub(crate) fn durable_next(&self) -> u64 {
        lock(&self.durable).next
    }

    /// One group commit: see the module docs. Before syncing, it writes the durable point
    /// published by the previous flush into the active segment's slot, so the same sync
    /// records it (a slot never names a point that was not already synced).
    pub(crate) fn flush(&self) -> Result<u64> {
        let _one_at_a_time = lock(&self.flush_lock);
        self.check_writable()?;
        let (targets, target, epoch, point, record) = {
            let mut s = lock(&self.sync);
            let record = {
                let d = lock(&self.durable);
                d.point.filter(|p| Some(*p) != d.recorded)
            };
            if s.pending.is_empty() && s.appended_next <= self.durable_next() && record.is_none() {
                return Ok(self.durable_next());
            }
            // Everything the state shows was written before this point: the syncs below
            // cover it, provided it lies in the active file they sync.
            let point = {
                let st = self.read();
                (st.active().log_path() == s.active.path).then(|| st.end_point())
            };
            let mut targets = std::mem::take(&mut s.pending);
            targets.push(s.active.clone());
            s.unflushed_bytes = 0;
            s.first_unflushed = None;
            (targets, s.appended_next, s.epoch, point, record)
        };
        if let Some(p) = record {
            let active = targets.last().expect("the active segment is a target");
            self.write_slot(active, &p)?;
        }
        for t in &targets {
            if let Err(e) = self.io.sync_data(&t.file) {
                let reason = format!("fdatasync of {} failed: {e}", t.path.display());
                self.poison(reason);
                return Err(Error::Io {
                    op: "fdatasync",
                    path: t.path.clone(),
                    source: e,
                });
            }
        }
        let s = lock(&self.sync);
        let mut d = lock(&self.durable);
        if s.epoch == epoch {
            if target > d.next {
                d.next = target;
                self.durable_cond.notify_all();
            }
            if point.is_some_and(|p| Some(p) > d.point) {
                d.point = point;
            }
            if record.is_some() {
                d.recorded = record;
            }
        }
        Ok(d.next)
    }

    /// Writes a durable point into a segment's slot (one positioned write of the slot's
    /// bytes, so it never disturbs the writer's appends).
    pub(crate) fn write_slot(&self, t: &SyncTarget, p: &DurablePoint) -> Result<()> {
        if let Err(e) = self
            .io
            .write_at(&t.file, DURABLE_SLOT_POS as u64, &[&p.encode()])
        {
            self.poison(format!(
                "writing the durable point of {} failed: {e}",
                t.path.display()
            ));
            return Err(Error::io("write", &t.path)(e));
        }
        Ok(())
    }

    /// Records the latest durable point if the slot lags behind it (a flush records the
    /// point of the flush before it): a second sync, for when no next flush is coming.
    pub(crate) fn record_durable(&self) -> Result<()> {
        let behind = {
            let d = lock(&self.durable);
            d.point.is_some_and(|p| Some(p) != d.recorded)
        };
        if behind {
            self.flush()?;
        }
        Ok(())
    }

    /// The interval flusher's loop: sync when the oldest unsynced append is `ms` old or
    /// `bytes` have piled up.
    pub(crate) fn run_interval_flusher(&self, ms: u64, bytes: u64) {
        let period = Duration::from_millis(ms);
        loop {
            {
                let mut s = lock(&self.sync);
                loop {
                    if s.stop {
                        return;
                    }
                    match s.first_unflushed {
                        Some(t0) => {
                            let due = t0 + period;
                            let now = Instant::now();
                            if s.unflushed_bytes >= bytes || now >= due {
                                break;
                            }
                            s = self
                                .sync_cond
                                .wait_timeout(s, due - now)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        None => {
                            s = self.sync_cond.wait(s).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                }
            }
            if self.flush().is_err() {
                // Poisoned: the writer reports it on its next call.
                return;
            }
        }
    }
}

/// A cloneable handle that syncs the log from any thread and tells which index is durable.
#[derive(Clone)]
pub struct Flusher {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("durable_index", &self.durable_index())
            .finish()
    }
}

impl Flusher {
    /// Syncs every append made before this call and returns the durable index (`None` if
    /// the log holds no entry). Runs concurrently with appends; concurrent flushes queue.
    pub fn flush(&self) -> Result<Option<u64>> {
        let next = self.shared.flush()?;
        Ok(self.shared.index_before(next))
    }

    /// Writes the latest durable point into the active segment and syncs it, if a flush
    /// has moved it since it was last recorded. Each flush records the point of the one
    /// before it for free; call this when the log goes idle, so that on open every synced
    /// entry is known durable (damage there is repaired, never cut as a torn tail).
    pub fn record_durable(&self) -> Result<()> {
        self.shared.record_durable()
    }

    /// The last index known durable.
    pub fn durable_index(&self) -> Option<u64> {
        self.shared.index_before(self.shared.durable_next())
    }

    /// Waits until `index` is durable (true), the timeout passes (false) or the log is
    /// poisoned (error).
    pub fn wait_durable(&self, index: u64, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut d = lock(&self.shared.durable);
        loop {
            if let Some(reason) = &d.poisoned {
                return Err(Error::Poisoned {
                    reason: reason.clone(),
                });
            }
            if d.next > index {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            d = self
                .shared
                .durable_cond
                .wait_timeout(d, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
