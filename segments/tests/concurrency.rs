//! Readers on other threads while the writer appends, rolls and purges: every batch a
//! reader gets is whole and valid, offsets are contiguous, and nothing faults.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use common::{ids_of, make_batch};
use steme_protocol::RecordBatch;
use steme_segments::{EntryKind, Error, FlushPolicy, Log, LogConfig, LogReader, Payload, RealIo};

fn reader_loop(r: LogReader, done: Arc<AtomicBool>, seed: u64) -> anyhow::Result<u64> {
    let mut checked = 0u64;
    let mut x = seed;
    while !done.load(Ordering::Relaxed) || checked == 0 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let (start, end) = (r.log_start_offset(), r.log_end_offset());
        if end == start {
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
            anyhow::ensure!(batch.base_offset() <= from || expect.is_some());
            if let Some(e) = expect {
                anyhow::ensure!(batch.base_offset() == e, "gap in offsets");
            }
            expect = Some(batch.end_offset());
            checked += 1;
        }
        // Entries by index: whole, in order.
        if let Some(last) = r.last_index() {
            let first = r.first_index();
            let lo = last.saturating_sub(3).max(first);
            match r.read_entries(lo..last + 1) {
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
        // Id lookups of a batch just read.
        let last: Bytes = got.batches[0].clone();
        let b = RecordBatch::new(last)?;
        if let Some(id) = ids_of(b.as_bytes()).first()
            && let Some(off) = r.lookup_id(id)
        {
            anyhow::ensure!(off == b.base_offset(), "id found at {off}, batch at {}", b.base_offset());
        }
    }
    Ok(checked)
}

#[test]
fn readers_see_whole_batches_while_writer_appends_rolls_and_purges() -> anyhow::Result<()> {
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
    let readers: Vec<_> = (0..2)
        .map(|i| {
            let (r, d) = (log.reader(), done.clone());
            std::thread::spawn(move || reader_loop(r, d, i))
        })
        .collect();
    let flusher = log.flusher();
    let syncer = {
        let d = done.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !d.load(Ordering::Relaxed) {
                flusher.flush()?;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(())
        })
    };
    let (mut hlc, mut index) = (1, 0u64);
    for i in 0..3000u64 {
        let count = 1 + (i % 5) as u32;
        let mut b = make_batch(i, count, hlc, 60);
        hlc += u64::from(count);
        let term = 1 + i / 500;
        log.append(index, term, Payload::Batch(&mut b))?;
        index += 1;
        if i % 97 == 0 {
            log.append(index, term, Payload::Control(b"blank"))?;
            index += 1;
        }
        if i % 400 == 399
            && let Some(plan) = log.retention_plan(u64::MAX / 2)
        {
            log.purge_upto(plan.upto_index)?;
        }
    }
    assert!(log.log_start_offset() > 0, "retention purged something");
    done.store(true, Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        total += r.join().expect("reader thread")?;
    }
    syncer.join().expect("syncer thread")?;
    assert!(total > 0);
    Ok(())
}
