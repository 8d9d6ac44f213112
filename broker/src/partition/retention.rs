//! Retention: whole sealed segments beyond the topic's limits are deleted through Raft
//! (D2) — a snapshot covering the boundary first, then a purge up to it. A segment with a
//! damaged range is never deleted (the segment log stops its plan there). The limits are
//! the topic's as the metadata has them now: an altered `retention.bytes` or
//! `retention.ms` reaches an open partition through [`Partition::set_retention`] and
//! counts from the next check.

use std::time::Duration;

use openraft::type_config::async_runtime::WatchReceiver;

use super::Partition;

/// Deletes whole sealed segments beyond the topic's retention, through Raft (D2): a
/// snapshot covering the boundary first, then a purge up to it.
pub(super) async fn retention_loop(weak: std::sync::Weak<Partition>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = weak.upgrade() else { return };
        if let Err(e) = p.enforce_retention().await {
            tracing::warn!(topic = %p.topic, partition = p.partition, error = %e, "retention");
        }
    }
}

impl Partition {
    /// Plans retention by these limits from the next check on (the topic's retention was
    /// altered); a no-op when they are the limits in force already.
    pub(crate) fn set_retention(&self, bytes: Option<u64>, age: Option<Duration>) {
        let mut log = self.log.lock();
        let now = log.config();
        if now.retention_bytes == bytes && now.retention_age == age {
            return;
        }
        tracing::info!(
            topic = %self.topic,
            partition = self.partition,
            retention_bytes = ?bytes,
            retention_age = ?age,
            "retention limits changed"
        );
        log.set_retention(bytes, age);
    }

    async fn enforce_retention(&self) -> Result<(), String> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let Some(plan) = self.log.lock().retention_plan(now_ms) else {
            return Ok(());
        };
        self.purge(plan, "retention deleted old segments").await
    }

    /// Deletes every whole sealed segment below `offset`, through Raft as retention does
    /// (a compacted topic whose records before `offset` are superseded: the groups topic
    /// below its last snapshot).
    pub(crate) async fn compact_below(&self, offset: u64) -> Result<(), String> {
        let Some(plan) = self.log.lock().plan_below(offset) else {
            return Ok(());
        };
        self.purge(plan, "compaction deleted superseded segments")
            .await
    }

    async fn purge(&self, plan: steme_segments::PurgePlan, what: &str) -> Result<(), String> {
        let (applied, snapshot) = {
            let m = self.raft.metrics();
            let m = m.borrow_watched();
            (
                m.last_applied.map(|id| id.index),
                m.snapshot.map(|id| id.index),
            )
        };
        if applied.is_none_or(|a| a < plan.upto_index) {
            return Ok(()); // not applied that far yet; next round
        }
        if snapshot.is_none_or(|s| s < plan.upto_index) {
            // The snapshot is built at the boundary, and openraft then purges the log up to
            // it (max_in_snapshot_log_to_keep = 0): exactly the segments retention deletes.
            *self
                .state
                .retention_boundary
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                Some((plan.upto_index, plan.new_log_start_offset));
            self.raft
                .trigger()
                .snapshot()
                .await
                .map_err(|e| e.to_string())?;
            let mut rx = self.raft.metrics();
            let upto = plan.upto_index;
            let wait = rx.wait_until(|m| m.snapshot.is_some_and(|s| s.index >= upto));
            if tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .is_err()
            {
                return Err("snapshot at the retention boundary not built in time".into());
            }
        }
        self.raft
            .trigger()
            .purge_log(plan.upto_index)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            topic = %self.topic,
            partition = self.partition,
            segments = plan.segments,
            bytes = plan.bytes,
            log_start_offset = plan.new_log_start_offset,
            "{what}"
        );
        Ok(())
    }
}
