//! Loading a groups partition into group state: find where the last snapshot starts by
//! reading the last committed record only, replay from there (`super::snapshot`), and fall
//! back to the whole partition when there is no snapshot to trust.
//!
//! The reading goes through [`Source`], so the same replay runs over a partition
//! ([`Partition`]) and over batches in memory (the `groups_replay` example, tests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use steme_protocol::{ApiError, ErrorCode};

use super::replay::{self, Read, Trusted};
use super::snapshot::Fold;
use super::state::GroupRecord;
use crate::partition::Partition;

/// How long one replay may take before the coordinator gives up loading (and a client
/// retries): far above a bounded replay, a guard against a stuck read.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(300);
/// Bytes read per fetch.
const FETCH_BYTES: u32 = 4 << 20;

/// What a fetch of a groups partition returned.
#[derive(Debug)]
pub enum Fetched {
    /// Whole batches from the asked offset (the first may begin before it).
    Batches(Vec<Bytes>),
    /// The records up to `end_offset` were given up by an operator: they are lost.
    Skipped { end_offset: u64 },
}

/// The committed log of one groups partition, as a coordinator reads it.
pub trait Source {
    fn log_start_offset(&self) -> u64;
    fn high_watermark(&self) -> u64;
    fn fetch(
        &self,
        offset: u64,
        max_bytes: u32,
    ) -> impl std::future::Future<Output = Result<Fetched, ApiError>> + Send;
}

impl Source for Partition {
    fn log_start_offset(&self) -> u64 {
        Partition::log_start_offset(self)
    }

    fn high_watermark(&self) -> u64 {
        Partition::high_watermark(self)
    }

    async fn fetch(&self, offset: u64, max_bytes: u32) -> Result<Fetched, ApiError> {
        match Partition::fetch(self, offset, max_bytes, Duration::ZERO).await {
            Ok(f) => Ok(Fetched::Batches(f.batches)),
            Err(ApiError::SkippedData {
                end_offset,
                message,
                ..
            }) if end_offset > offset => {
                tracing::warn!(partition = self.partition, %message, "skipping group records an operator gave up");
                Ok(Fetched::Skipped { end_offset })
            }
            Err(e) => Err(e),
        }
    }
}

/// A loaded partition: its groups and how the load went.
#[derive(Debug)]
pub struct Loaded {
    pub fold: Fold,
    /// Where the replay started.
    pub from: u64,
    /// Whether it started at a snapshot (false: at the log start).
    pub from_snapshot: bool,
}

/// The last committed record of the partition, if it is a trusted group record.
async fn last_record<S: Source>(src: &S, trusted: &Arc<Trusted>) -> Result<Option<Read>, ApiError> {
    let (start, hwm) = (src.log_start_offset(), src.high_watermark());
    if hwm <= start {
        return Ok(None);
    }
    let last = hwm - 1;
    let Fetched::Batches(batches) = src.fetch(last, 1).await? else {
        return Ok(None);
    };
    let keys = trusted.clone();
    let chunk = tokio::task::spawn_blocking(move || replay::read_chunk(&batches, last, hwm, &keys))
        .await
        .map_err(|e| ApiError::other(ErrorCode::Internal, e.to_string()))?;
    Ok(chunk.records.into_iter().find(|r| r.offset == last))
}

/// Where the last snapshot starts, as the last committed record says, if it is in the
/// retained log.
pub async fn last_snapshot<S: Source>(
    src: &S,
    trusted: &Arc<Trusted>,
) -> Result<Option<u64>, ApiError> {
    let Some(last) = last_record(src, trusted).await? else {
        return Ok(None);
    };
    let at = match last.record {
        GroupRecord::Snapshot { part, .. } => last.offset.checked_sub(u64::from(part)),
        _ => last.last_snapshot,
    };
    Ok(at.filter(|&s| s >= src.log_start_offset() && s <= last.offset))
}

/// Replays the partition: from its last snapshot when there is one to trust, else from
/// its log start.
pub async fn load<S: Source>(src: &S, trusted: Arc<Trusted>) -> Result<Loaded, ApiError> {
    let now = Instant::now();
    if let Some(at) = last_snapshot(src, &trusted).await? {
        let fold = replay_from(src, at, &trusted, now).await?;
        if fold.snapshot_at.is_some() {
            return Ok(Loaded {
                fold,
                from: at,
                from_snapshot: true,
            });
        }
        tracing::warn!(
            offset = at,
            "no whole snapshot where the last group record points; replaying the whole partition"
        );
    }
    let from = src.log_start_offset();
    let fold = replay_from(src, from, &trusted, now).await?;
    Ok(Loaded {
        fold,
        from,
        from_snapshot: false,
    })
}

/// Folds every trusted record in `[from, high watermark)`.
pub async fn replay_from<S: Source>(
    src: &S,
    from: u64,
    trusted: &Arc<Trusted>,
    now: Instant,
) -> Result<Fold, ApiError> {
    let hwm = src.high_watermark();
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    let mut fold = Fold::default();
    let mut offset = from;
    // Each round advances at least one offset, or ends.
    for _ in 0..=hwm.saturating_sub(from) {
        if offset >= hwm {
            break;
        }
        if Instant::now() >= deadline {
            return Err(ApiError::other(
                ErrorCode::NotCoordinator,
                format!("replaying groups took over {REPLAY_TIMEOUT:?}; still loading"),
            ));
        }
        let batches = match src.fetch(offset, FETCH_BYTES).await? {
            Fetched::Batches(b) => b,
            Fetched::Skipped { end_offset } => {
                offset = end_offset;
                continue;
            }
        };
        let keys = trusted.clone();
        let chunk =
            tokio::task::spawn_blocking(move || replay::read_chunk(&batches, offset, hwm, &keys))
                .await
                .map_err(|e| ApiError::other(ErrorCode::Internal, e.to_string()))?;
        for (at, why) in &chunk.skipped {
            tracing::warn!(offset = at, ?why, "skipping a group record no broker wrote");
        }
        for r in chunk.records {
            fold.apply(r.offset, r.group, r.record, now);
        }
        if chunk.next <= offset {
            break;
        }
        offset = chunk.next;
    }
    Ok(fold)
}

/// A groups log in memory: batches at consecutive offsets (tests, the `groups_replay`
/// example).
#[derive(Debug, Default)]
pub struct MemoryLog {
    /// `(base_offset, end_offset, batch)`, in offset order.
    batches: Vec<(u64, u64, Bytes)>,
    log_start: u64,
    /// Batches handed out by fetches.
    fetched: std::sync::atomic::AtomicU64,
}

impl MemoryLog {
    /// Appends `records` as one batch; returns its base offset.
    pub fn append(&mut self, records: &[steme_protocol::SignedAssertion]) -> u64 {
        let base = self.batches.last().map_or(self.log_start, |b| b.1);
        let mut b = steme_protocol::BatchBuilder::with_capacity(records.len() * 320);
        for r in records {
            b.push(r);
        }
        let mut bytes = b.finish().to_vec();
        steme_protocol::batch::patch_header(&mut bytes, base, 0, 0);
        self.batches
            .push((base, base + records.len() as u64, Bytes::from(bytes)));
        base
    }

    /// Drops whole batches that end at or before `offset`, as retention would.
    pub fn delete_before(&mut self, offset: u64) {
        self.batches.retain(|b| b.1 > offset);
        self.log_start = self.batches.first().map_or(offset, |b| b.0);
    }

    /// Batches handed out by fetches so far.
    pub fn batches_fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Source for MemoryLog {
    fn log_start_offset(&self) -> u64 {
        self.log_start
    }

    fn high_watermark(&self) -> u64 {
        self.batches.last().map_or(self.log_start, |b| b.1)
    }

    async fn fetch(&self, offset: u64, max_bytes: u32) -> Result<Fetched, ApiError> {
        let first = self.batches.partition_point(|b| b.1 <= offset);
        let mut out = Vec::new();
        let mut size = 0usize;
        for (_, _, b) in &self.batches[first..] {
            if !out.is_empty() && size + b.len() > max_bytes as usize {
                break;
            }
            size += b.len();
            out.push(b.clone());
        }
        self.fetched
            .fetch_add(out.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Fetched::Batches(out))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use steme_protocol::SigningKey;

    use super::*;
    use crate::groups::snapshot::{SUBJECT, snapshot_records};
    use crate::groups::state::CommitRecord;
    use crate::groups::{RecordMeta, sign_record};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    fn trusted() -> Arc<Trusted> {
        Arc::new(Trusted::from([*key().verifying_key().as_bytes()]))
    }

    fn commit(partition: u32, offset: u64) -> GroupRecord {
        GroupRecord::Commit {
            offsets: vec![CommitRecord {
                topic: "facts".into(),
                partition,
                offset,
                metadata: String::new(),
            }],
        }
    }

    /// A log as a coordinator writes it: `n` commits in `groups` groups over 4 partitions,
    /// with a snapshot after every `every` records; returns the last offset per group and
    /// partition.
    fn write(
        log: &mut MemoryLog,
        n: u64,
        every: Option<u64>,
    ) -> Result<HashMap<(String, u32), u64>, ApiError> {
        let mut fold = Fold::default();
        let mut last_snapshot = None;
        let mut expected = HashMap::new();
        let now = Instant::now();
        for i in 0..n {
            let (group, partition) = (format!("g{}", i % 3), (i % 4) as u32);
            let meta = RecordMeta {
                partition: 0,
                term: 1,
                seq: i,
                last_snapshot,
            };
            let r = sign_record(&key(), meta, group.clone(), commit(partition, i))?;
            let at = log.append(&[r]);
            fold.apply(at, group.clone(), commit(partition, i), now);
            expected.insert((group, partition), i);
            if every.is_some_and(|e| (i + 1) % e == 0) {
                let parts: Vec<_> = snapshot_records(&fold.groups, 64)
                    .into_iter()
                    .map(|p| sign_record(&key(), meta, SUBJECT.into(), p))
                    .collect::<Result<_, _>>()?;
                last_snapshot = Some(log.append(&parts));
            }
        }
        Ok(expected)
    }

    fn committed(fold: Fold) -> HashMap<(String, u32), u64> {
        fold.into_groups()
            .into_iter()
            .flat_map(|(g, s)| {
                s.offsets
                    .into_iter()
                    .map(move |((_, p), c)| ((g.clone(), p), c.offset))
            })
            .collect()
    }

    #[tokio::test]
    async fn load_starts_at_the_last_snapshot_and_reads_only_what_follows() -> TestResult {
        let mut log = MemoryLog::default();
        let expected = write(&mut log, 1_005, Some(100))?;
        let loaded = load(&log, trusted()).await?;
        assert!(loaded.from_snapshot);
        // The snapshot's parts (12 entries, small parts) and the 5 commits after it.
        assert!(loaded.fold.records < 20, "{} records", loaded.fold.records);
        assert_eq!(loaded.fold.since_snapshot, 5);
        assert_eq!(committed(loaded.fold), expected);
        Ok(())
    }

    #[tokio::test]
    async fn a_snapshot_as_the_last_record_is_found_by_its_own_parts() -> TestResult {
        // The coordinator wrote a snapshot and crashed before storing anything else.
        let mut log = MemoryLog::default();
        let expected = write(&mut log, 300, Some(100))?;
        let loaded = load(&log, trusted()).await?;
        assert!(loaded.from_snapshot);
        assert_eq!(loaded.fold.since_snapshot, 0);
        assert_eq!(committed(loaded.fold), expected);
        Ok(())
    }

    #[tokio::test]
    async fn without_snapshots_the_whole_partition_is_replayed() -> TestResult {
        let mut log = MemoryLog::default();
        let expected = write(&mut log, 250, None)?;
        let loaded = load(&log, trusted()).await?;
        assert!(!loaded.from_snapshot);
        assert_eq!(loaded.fold.records, 250);
        assert_eq!(committed(loaded.fold), expected);
        Ok(())
    }

    #[tokio::test]
    async fn records_before_the_last_snapshot_may_be_deleted() -> TestResult {
        let mut log = MemoryLog::default();
        let expected = write(&mut log, 1_050, Some(100))?;
        let floor = last_snapshot(&log, &trusted()).await?.ok_or("a snapshot")?;
        log.delete_before(floor);
        assert_eq!(log.log_start_offset(), floor);
        let loaded = load(&log, trusted()).await?;
        assert!(loaded.from_snapshot);
        assert_eq!(committed(loaded.fold), expected);
        Ok(())
    }

    #[tokio::test]
    async fn a_pointer_to_no_snapshot_falls_back_to_the_whole_partition() -> TestResult {
        let mut log = MemoryLog::default();
        let expected = write(&mut log, 40, None)?;
        // A record pointing at an offset where no snapshot is.
        let meta = RecordMeta {
            partition: 0,
            term: 2,
            seq: 0,
            last_snapshot: Some(10),
        };
        log.append(&[sign_record(&key(), meta, "g0".into(), commit(0, 99))?]);
        let loaded = load(&log, trusted()).await?;
        assert!(!loaded.from_snapshot);
        let mut expected = expected;
        expected.insert(("g0".into(), 0), 99);
        assert_eq!(committed(loaded.fold), expected);
        Ok(())
    }

    #[tokio::test]
    async fn an_untrusted_snapshot_is_not_replayed() -> TestResult {
        let mut log = MemoryLog::default();
        let expected = write(&mut log, 40, None)?;
        // A stranger's "snapshot" that would wipe every group.
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let meta = RecordMeta {
            partition: 0,
            term: 9,
            seq: 0,
            last_snapshot: None,
        };
        let empty = snapshot_records(&HashMap::new(), 64).remove(0);
        log.append(&[sign_record(&stranger, meta, SUBJECT.into(), empty)?]);
        let loaded = load(&log, trusted()).await?;
        assert!(!loaded.from_snapshot);
        assert_eq!(committed(loaded.fold), expected);
        Ok(())
    }
}
