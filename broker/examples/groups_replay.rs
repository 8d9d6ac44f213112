//! How long a coordinator takes to load a groups partition that holds 1,000,000 commits
//! of one group, replaying it whole (the load before snapshots) and from its last snapshot
//! (the load now).
//!
//! The partition is a real segment log on disk, written as a coordinator writes it: one
//! signed commit record per entry, over 16 partitions of a topic, with a snapshot whenever
//! the default policy calls for one. Both loads go through the coordinator's replay
//! (`steme_broker::groups::load`): decode, check the signer, verify signatures by batch,
//! fold.
//!
//! ```text
//! cargo run --release -p steme-broker --example groups_replay [-- COMMITS]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use steme_broker::groups::load::{self, Fetched, Source};
use steme_broker::groups::replay::Trusted;
use steme_broker::groups::snapshot::{Fold, Policy, SUBJECT, entries, snapshot_records};
use steme_broker::groups::{CommitRecord, GroupRecord, RecordMeta, sign_record};
use steme_protocol::{ApiError, BatchBuilder, ErrorCode, SigningKey};
use steme_segments::{FlushPolicy, LogConfig, LogReader, Payload, RealIo};

const PARTITIONS: u64 = 16;
/// The most commits the program writes, and how long it may take writing them.
const MAX_COMMITS: u64 = 10_000_000;
const WRITE_BUDGET: Duration = Duration::from_secs(600);

/// A segment log read as a coordinator reads its partition.
struct SegmentSource {
    reader: LogReader,
    high_watermark: u64,
}

impl Source for SegmentSource {
    fn log_start_offset(&self) -> u64 {
        self.reader.log_start_offset()
    }

    fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    async fn fetch(&self, offset: u64, max_bytes: u32) -> Result<Fetched, ApiError> {
        let read = self
            .reader
            .read_from_offset(offset, u64::from(max_bytes), self.high_watermark)
            .map_err(|e| ApiError::other(ErrorCode::Storage, e.to_string()))?;
        Ok(Fetched::Batches(read.batches))
    }
}

fn commit(i: u64) -> GroupRecord {
    GroupRecord::Commit {
        offsets: vec![CommitRecord {
            topic: "facts".into(),
            partition: (i % PARTITIONS) as u32,
            offset: i,
            metadata: String::new(),
        }],
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let commits: u64 = match std::env::args().nth(1) {
        Some(n) => n.parse().context("COMMITS must be a number")?,
        None => 1_000_000,
    };
    anyhow::ensure!(commits <= MAX_COMMITS, "at most {MAX_COMMITS} commits");
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        segment_bytes: 128 << 20,
        // Built once and synced at the end: the figures are about reading it back.
        flush: FlushPolicy::Never,
        ..LogConfig::default()
    };
    let (mut log, _) = steme_segments::Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    let key = SigningKey::from_bytes(&[3; 32]);
    let policy = Policy::default();

    // Write the partition as the coordinator does: a record per entry, a snapshot (one
    // batch) when due, every record pointing at the last snapshot.
    let started = Instant::now();
    let mut fold = Fold::default();
    let (mut index, mut last_snapshot, mut since, mut snapshots) = (0u64, None, 0u64, 0u64);
    let mut seq = 0u64;
    let mut append = |log: &mut steme_segments::Log,
                      records: Vec<(String, GroupRecord)>,
                      last_snapshot: Option<u64>|
     -> anyhow::Result<u64> {
        let mut b = BatchBuilder::with_capacity(512);
        for (group, record) in records {
            let meta = RecordMeta {
                partition: 0,
                term: 1,
                seq,
                last_snapshot,
            };
            seq += 1;
            b.push(&sign_record(&key, meta, group, record)?);
        }
        let mut bytes = b.finish().to_vec();
        let at = log.append(index, 1, Payload::Batch(&mut bytes))?;
        index += 1;
        Ok(at.base_offset)
    };
    for i in 0..commits {
        anyhow::ensure!(
            started.elapsed() < WRITE_BUDGET,
            "writing took over {WRITE_BUDGET:?}"
        );
        let at = append(&mut log, vec![("bench".into(), commit(i))], last_snapshot)?;
        fold.apply(at, "bench".into(), commit(i), Instant::now());
        since += 1;
        if policy.due(since, entries(&fold.groups)) {
            let parts = snapshot_records(&fold.groups, policy.part_bytes)
                .into_iter()
                .map(|p| (SUBJECT.to_owned(), p))
                .collect();
            last_snapshot = Some(append(&mut log, parts, last_snapshot)?);
            since = 0;
            snapshots += 1;
        }
    }
    log.flush()?;
    let reader = log.reader();
    let source = SegmentSource {
        high_watermark: reader.log_end_offset(),
        reader,
    };
    println!(
        "wrote {commits} commits and {snapshots} snapshots ({} records, {:.1} MB) in {:.1} s",
        source.high_watermark,
        source.reader.size_bytes() as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let trusted = Arc::new(Trusted::from([*key.verifying_key().as_bytes()]));
    let t = Instant::now();
    let whole = load::replay_from(&source, 0, &trusted, Instant::now()).await?;
    report("whole partition (before)", whole.records, t.elapsed());
    let whole_offsets = whole.into_groups();

    let t = Instant::now();
    let loaded = load::load(&source, trusted.clone()).await?;
    anyhow::ensure!(loaded.from_snapshot, "the load did not start at a snapshot");
    report("last snapshot on (after)", loaded.fold.records, t.elapsed());
    let offsets = loaded.fold.into_groups();
    anyhow::ensure!(
        offsets["bench"].offsets == whole_offsets["bench"].offsets,
        "the two loads disagree"
    );
    println!(
        "both loads agree: {} committed partitions, last offset {}",
        offsets["bench"].offsets.len(),
        offsets["bench"]
            .offsets
            .values()
            .map(|c| c.offset)
            .max()
            .unwrap_or(0)
    );
    Ok(())
}

fn report(what: &str, records: u64, took: Duration) {
    println!(
        "RESULT load={what:<26} records_read={records:>9} seconds={:>9.4} records_per_s={:>10.0}",
        took.as_secs_f64(),
        records as f64 / took.as_secs_f64().max(1e-9)
    );
}
