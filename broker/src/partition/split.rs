//! The partition's side of a topic growth (`metadata::split`): its writer puts a split
//! marker into the log before the first batch checked against the new partition count,
//! and stamps a new partition's first records above every split point.
//!
//! The marker is written by whichever leader first sees the new map — on a produce
//! request, or, for a partition nobody writes to, when the controller asks
//! ([`Partition::mark_split`]). Because the marker is an entry of the partition's own
//! log, the split point is where it landed in that log, whatever happened to leadership
//! meanwhile: a new leader applies its log before serving (D5), so it knows of every
//! marker before it, and a leader whose copy of the metadata is behind the log refuses
//! requests checked against the older map (`StaleMap`, retriable) instead of writing
//! them after the marker.

use steme_protocol::{ApiError, AssertionId, ErrorCode};

use super::{Fate, Partition, ProduceJob, Proposed, RecordChecks, Writer, propose};
use crate::metadata::PartitionMap;
use crate::raft::marker;
use crate::raft::state_machine::SplitMark;
use crate::raft::types::Proposal;

/// What the partition's writer takes, in order.
pub enum WriterJob {
    /// A checked produce request.
    Produce(ProduceJob),
    /// Write the marker of this map if the log does not have it yet.
    Mark(PartitionMap),
}

impl Partition {
    /// Asks the writer, if this replica leads, to write the marker of `map` (a partition
    /// that takes no records must still split). A full queue is left alone: the requests
    /// in it write the marker, and the controller asks again.
    pub fn mark_split(&self, map: PartitionMap) {
        let _ = self.writer.try_send(WriterJob::Mark(map));
    }

    /// What the topic's records must pass now.
    pub fn checks(&self) -> RecordChecks {
        self.checks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Updates what the topic's records must pass (it grew).
    pub fn set_checks(&self, checks: RecordChecks) {
        *self.checks.write().unwrap_or_else(|p| p.into_inner()) = checks;
    }

    /// Which of `ids` this replica holds below offset `below` (an old partition's split
    /// point, below which its log never changes): `(index in ids, offset, hlc)` of each.
    /// Refused while this replica has not applied its log up to `below`.
    pub fn lookup_below(
        &self,
        below: u64,
        ids: &[[u8; 32]],
    ) -> Result<Vec<(u32, u64, u64)>, String> {
        let hwm = self.high_watermark();
        if hwm < below {
            return Err(format!(
                "{}-{} has applied up to offset {hwm}, not yet {below}",
                self.topic, self.partition
            ));
        }
        let mut found = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if let Some(offset) = self.log.reader.lookup_id(&AssertionId(*id))
                && offset < below
            {
                found.push((i as u32, offset, self.hlc_at(offset).unwrap_or(0)));
            }
        }
        Ok(found)
    }

    /// The last split marker this replica applied.
    pub fn split_mark(&self) -> Option<SplitMark> {
        self.state.split()
    }
}

impl Writer {
    /// Brings the log to `map` before a request checked against it is written: the marker
    /// first if the map is newer than the log's, a refusal if it is older.
    pub(super) async fn follow_map(&mut self, map: &PartitionMap) -> Result<(), ApiError> {
        let in_force = self.map_epoch.max(map.born);
        if map.epoch < in_force {
            return Err(ApiError::other(
                ErrorCode::StaleMap,
                format!(
                    "{}-{} is at map epoch {in_force}, and this broker's metadata still at {}; \
                     retry once it has caught up",
                    self.p.topic, self.p.partition, map.epoch
                ),
            ));
        }
        if map.epoch > in_force {
            let proposed = propose(&self.p, Proposal::new(marker::encode(map.epoch))).await;
            if let Proposed::Failed(e) = proposed {
                return Err(e);
            }
            tracing::info!(topic = %self.p.topic, partition = self.p.partition, epoch = map.epoch, partitions = map.partitions, "split marker written");
            self.map_epoch = map.epoch;
        }
        if let Some(floor) = map.hlc_floor {
            self.last_hlc = self.last_hlc.max(floor);
        }
        Ok(())
    }
}

/// Refuses a request that would write a record whose subject moved away from this
/// partition: such a record is taken only if it is already here (a producer's retry of a
/// record stored before the split, whose ack was lost), and then answered as the duplicate
/// it is, so that it is not stored a second time in its new partition.
pub(super) fn only_duplicates_moved(
    p: &Partition,
    moved: &[u32],
    fates: &[Fate],
) -> Result<(), ApiError> {
    let new = moved.iter().find(|&&i| {
        matches!(
            fates.get(i as usize),
            Some(Fate::New(_) | Fate::RepeatOf(_)) | None
        )
    });
    match new {
        None => Ok(()),
        Some(i) => Err(ApiError::other(
            ErrorCode::StaleMap,
            format!(
                "record {i}: its subject moved to a new partition when {} grew; refresh the \
                 metadata and send it there",
                p.topic
            ),
        )),
    }
}
