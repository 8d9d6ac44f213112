//! Readers on other threads while the writer appends, rolls, truncates its uncommitted
//! tail and purges: every batch a reader gets is whole and valid, offsets are contiguous,
//! id lookups agree with offsets, and nothing faults.

mod common;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{ids_of, make_batch};
use steme_protocol::RecordBatch;
use steme_segments::{EntryKind, Error, FlushPolicy, Log, LogConfig, LogReader, Payload, RealIo};

/// Readers stay below the high watermark the writer publishes, as consumers do; the
/// writer only truncates entries above it.
fn reader_loop(
    r: LogReader,
    done: Arc<AtomicBool>,
    hw: Arc<AtomicU64>,
    seed: u64,
) -> anyhow::Result<u64> {
    let mut checked = 0u64;
    let mut x = seed;
    while !done.load(Ordering::Relaxed) || checked == 0 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (start, end) = (r.log_start_offset(), hw.load(Ordering::Acquire));
        if end <= start {
            std::thread::yield_now();
            continue;
        }
        let from = start + (x >> 33) % (end - start);
        let got = match r.read_from_offset(from, 4096, end) {
            Ok(g) => g,
            // Purged between the two calls.
            Err(Error::OffsetOutOfRange { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        anyhow::ensure!(!got.batches.is_empty(), "no batch at {from} below {end}");
        let mut expect = None;
        for b in &got.batches {
            let batch = RecordBatch::new(b.clone())?;
            anyhow::ensure!(batch.end_offset() <= end, "batch above the watermark");
            match expect {
                None => anyhow::ensure!(batch.base_offset() <= from && from < batch.end_offset()),
                Some(e) => anyhow::ensure!(batch.base_offset() == e, "gap in offsets"),
            }
            expect = Some(batch.end_offset());
            checked += 1;
        }
        // The first record's id leads back to the same offset.
        let b = RecordBatch::new(got.batches[0].clone())?;
        if let Some(id) = ids_of(b.as_bytes()).first() {
            match r.lookup_id(id) {
                Some(off) => anyhow::ensure!(
                    off == b.base_offset(),
                    "id at {off}, batch at {}",
                    b.base_offset()
                ),
                // Purged meanwhile.
                None => anyhow::ensure!(r.log_start_offset() > b.base_offset(), "id not found"),
            }
        }
        // Entries by index near the start of the log: whole, in order.
        let first = r.first_index();
        match r.read_entries(first..first + 4) {
            Ok(es) => {
                for w in es.windows(2) {
                    anyhow::ensure!(w[1].index == w[0].index + 1);
                }
                for e in es.iter().filter(|e| e.kind == EntryKind::Batch) {
                    RecordBatch::new(e.payload.clone())?;
                }
            }
            Err(Error::IndexOutOfRange { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(checked)
}

#[test]
fn readers_see_whole_batches_while_writer_appends_rolls_truncates_and_purges() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        flush: FlushPolicy::Never,
        retention_bytes: Some(64 * 1024),
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    let done = Arc::new(AtomicBool::new(false));
    let hw = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let (r, d, h) = (log.reader(), done.clone(), hw.clone());
            std::thread::spawn(move || reader_loop(r, d, h, i))
        })
        .collect();
    let flusher = log.flusher();
    let indexer = log.reader();
    let background = {
        let d = done.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !d.load(Ordering::Relaxed) {
                flusher.flush()?;
                indexer.index_ids();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(())
        })
    };
    let (mut hlc, mut index, mut term) = (1, 0u64, 1u64);
    // (index, end offset) of the latest entries; the watermark trails them by 3.
    let mut recent: VecDeque<(u64, u64)> = VecDeque::new();
    let mut truncations = 0;
    for i in 0..3000u64 {
        let count = 1 + (i % 5) as u32;
        let mut b = make_batch(i, count, hlc, 60);
        hlc += u64::from(count);
        let a = log.append(index, term, Payload::Batch(&mut b))?;
        recent.push_back((index, a.end_offset));
        index += 1;
        if i % 97 == 0 {
            let a = log.append(index, term, Payload::Control(b"blank"))?;
            recent.push_back((index, a.end_offset));
            index += 1;
        }
        while recent.len() > 3 {
            let (_, end) = recent.pop_front().expect("non-empty");
            hw.store(end, Ordering::Release);
        }
        // A new leader overwrites the uncommitted tail (above the watermark).
        if i % 37 == 36 && recent.len() == 3 {
            let keep = recent[0].0;
            log.truncate_after(keep)?;
            recent.truncate(1);
            index = keep + 1;
            term += 1;
            truncations += 1;
        }
        if i % 400 == 399
            && let Some(plan) = log.retention_plan(u64::MAX / 2)
        {
            let committed = hw.load(Ordering::Acquire);
            if plan.new_log_start_offset <= committed {
                log.purge_upto(plan.upto_index)?;
            }
        }
    }
    assert!(truncations > 10);
    assert!(log.log_start_offset() > 0, "retention purged something");
    done.store(true, Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        total += r.join().expect("reader thread")?;
    }
    background.join().expect("background thread")?;
    assert!(total > 0, "readers checked no batch");
    Ok(())
}
