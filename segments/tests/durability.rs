//! The durability contract, with a fault-injecting file layer: an append whose flush
//! failed is never reported durable, and the log refuses writes afterwards.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Model, make_batch, small_config};
use steme_segments::{
    Error, Fault, FaultyIo, FileIo, FlushPolicy, Log, LogConfig, Payload, RealIo,
};

fn every_append() -> LogConfig {
    LogConfig {
        flush: FlushPolicy::EveryAppend,
        ..small_config()
    }
}

fn open_faulty(dir: &std::path::Path, cfg: LogConfig) -> anyhow::Result<(Log, Arc<FaultyIo>)> {
    let io = Arc::new(FaultyIo::new());
    let (log, _) = Log::open(dir, cfg, io.clone() as Arc<dyn FileIo>)?;
    Ok((log, io))
}

#[test]
fn failed_fsync_is_never_durable_and_poisons_the_log() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut log, io) = open_faulty(dir.path(), every_append())?;
    let mut model = Model::default();
    for i in 0..5 {
        model.append(&mut log, 1, Some(make_batch(i, 2, 100 + 2 * i, 40)), &[])?;
    }
    assert_eq!(log.durable_index(), Some(4));
    let (_, syncs) = io.counts();
    io.inject(Fault::FailSync(syncs + 1));
    let mut b = make_batch(99, 3, 1000, 40);
    let err = log.append(5, 1, Payload::Batch(&mut b)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: "fdatasync",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        log.durable_index(),
        Some(4),
        "a failed flush must not advance durability"
    );
    let flusher = log.flusher();
    assert!(matches!(flusher.flush(), Err(Error::Poisoned { .. })));
    assert_eq!(flusher.durable_index(), Some(4));
    assert!(matches!(
        flusher.wait_durable(5, Duration::from_millis(10)),
        Err(Error::Poisoned { .. })
    ));
    let mut b = make_batch(100, 1, 2000, 40);
    match log.append(6, 1, Payload::Batch(&mut b)) {
        Err(Error::Poisoned { reason }) => assert!(reason.contains("fdatasync"), "{reason}"),
        other => panic!("expected poisoned, got {other:?}"),
    }
    assert!(matches!(log.truncate_after(2), Err(Error::Poisoned { .. })));
    assert!(matches!(
        log.set_meta(&[("k", Some(b"v"))]),
        Err(Error::Poisoned { .. })
    ));
    // Reopening recovers: the acknowledged prefix is there.
    drop(log);
    let (log, _) = Log::open(dir.path(), small_config(), Arc::new(RealIo))?;
    assert!(log.next_index() >= 5);
    let got = log.reader().read_entries(0..5)?;
    for (g, m) in got.iter().zip(&model.entries) {
        assert_eq!(g.payload[..], m.payload[..]);
    }
    Ok(())
}

#[test]
fn torn_write_poisons_and_recovery_cuts_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut log, io) = open_faulty(dir.path(), every_append())?;
    let mut model = Model::default();
    for i in 0..4 {
        model.append(&mut log, 1, Some(make_batch(i, 2, 100 + 2 * i, 40)), &[])?;
    }
    let (writes, _) = io.counts();
    io.inject(Fault::TearWrite {
        nth: writes + 1,
        keep: 100,
    });
    let mut b = make_batch(50, 3, 500, 40);
    assert!(log.append(4, 1, Payload::Batch(&mut b)).is_err());
    assert_eq!(log.durable_index(), Some(3));
    assert!(matches!(
        log.append(4, 1, Payload::Control(b"x")),
        Err(Error::Poisoned { .. })
    ));
    drop(log);
    let (log, report) = Log::open(dir.path(), small_config(), Arc::new(RealIo))?;
    let cut = report.cut.expect("the torn frame is cut");
    assert_eq!(cut.first_lost_index, 4);
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn flipped_bit_on_the_way_to_disk_is_damage_not_a_cut() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut log, io) = open_faulty(dir.path(), every_append())?;
    let mut model = Model::default();
    for i in 0..3 {
        model.append(&mut log, 1, Some(make_batch(i, 2, 100 + 2 * i, 40)), &[])?;
    }
    let (writes, _) = io.counts();
    io.inject(Fault::FlipBit {
        nth: writes + 1,
        byte: 90,
        bit: 3,
    });
    let mut b = make_batch(50, 3, 500, 40);
    log.append(3, 1, Payload::Batch(&mut b))?; // silent corruption, synced and acknowledged
    drop(log);
    let (log, report) = Log::open(dir.path(), small_config(), Arc::new(RealIo))?;
    assert_eq!(report.cut, None, "an acknowledged entry is never cut");
    let [d] = &report.damaged[..] else {
        anyhow::bail!("one damaged range expected: {report:?}");
    };
    assert_eq!((d.indexes.clone(), d.offsets.clone()), (3..4, 6..9), "{d}");
    let r = log.reader();
    assert_eq!((r.next_index(), r.log_end_offset()), (4, 9));
    assert!(matches!(r.read_entries(3..4), Err(Error::Damaged { .. })));
    let before = r.read_from_offset(0, u64::MAX, u64::MAX)?;
    assert_eq!((before.batches.len(), before.next_offset), (3, 6));
    Ok(())
}

#[test]
fn group_commit_from_another_thread_covers_every_append() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        flush: FlushPolicy::Never,
        ..small_config()
    };
    let (mut log, _) = Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    let flusher = log.flusher();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (f2, s2) = (flusher.clone(), stop.clone());
    let syncer = std::thread::spawn(move || -> anyhow::Result<u64> {
        let mut flushes = 0;
        let mut last = None;
        loop {
            let d = f2.flush()?;
            anyhow::ensure!(d >= last, "durable index went backwards");
            last = d;
            flushes += 1;
            if s2.load(std::sync::atomic::Ordering::Relaxed) {
                return Ok(flushes);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    });
    let mut model = Model::default();
    for i in 0..300u64 {
        model.append(&mut log, 1, Some(make_batch(i, 3, 10 + 3 * i, 40)), &[])?;
        assert!(log.durable_index().is_none_or(|d| d <= i));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flushes = syncer.join().expect("syncer thread")?;
    assert!(flushes > 0);
    assert_eq!(flusher.flush()?, Some(299));
    assert!(flusher.wait_durable(299, Duration::ZERO)?);
    Ok(())
}

#[test]
fn interval_policy_makes_appends_durable_soon() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        flush: FlushPolicy::Interval {
            ms: 2,
            bytes: 1 << 20,
        },
        ..small_config()
    };
    let (mut log, _) = Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    let flusher = log.flusher();
    let mut model = Model::default();
    for i in 0..20u64 {
        model.append(&mut log, 1, Some(make_batch(i, 1, 10 + i, 40)), &[])?;
    }
    assert!(flusher.wait_durable(19, Duration::from_secs(5))?);
    Ok(())
}

#[test]
fn truncation_lowers_the_durable_index_and_a_racing_flush_cannot_raise_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        flush: FlushPolicy::Never,
        ..small_config()
    };
    let (mut log, _) = Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    let mut model = Model::default();
    for i in 0..10u64 {
        model.append(&mut log, 1, Some(make_batch(i, 1, 10 + i, 40)), &[])?;
    }
    log.flush()?;
    assert_eq!(log.durable_index(), Some(9));
    log.truncate_after(5)?;
    model.truncate_after(5);
    assert_eq!(log.durable_index(), Some(5));
    model.append(&mut log, 2, Some(make_batch(77, 1, 100, 40)), &[])?;
    assert_eq!(
        log.durable_index(),
        Some(5),
        "new entry 6 is not durable yet"
    );
    log.flush()?;
    assert_eq!(log.durable_index(), Some(6));
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn appends_are_checked_before_anything_is_written() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut log, _) = Log::open(dir.path(), every_append(), Arc::new(RealIo))?;
    let mut model = Model::default();
    model.append(&mut log, 3, Some(make_batch(1, 1, 10, 40)), &[])?;
    let mut b = make_batch(2, 1, 11, 40);
    assert!(matches!(
        log.append(5, 3, Payload::Batch(&mut b)),
        Err(Error::NonConsecutiveIndex {
            expected: 1,
            got: 5
        })
    ));
    assert!(matches!(
        log.append(1, 2, Payload::Batch(&mut b)),
        Err(Error::TermRegression { .. })
    ));
    let mut bad = b.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert!(matches!(
        log.append(1, 3, Payload::Batch(&mut bad)),
        Err(Error::InvalidBatch { .. })
    ));
    // A batch of entries where the last is bad appends nothing.
    let mut good = make_batch(3, 1, 12, 40);
    let mut entries = [
        steme_segments::NewEntry {
            index: 1,
            term: 3,
            payload: Payload::Batch(&mut good),
        },
        steme_segments::NewEntry {
            index: 2,
            term: 3,
            payload: Payload::Batch(&mut bad),
        },
    ];
    assert!(log.append_many(&mut entries).is_err());
    model.check(&log.reader())?;
    // Metadata survives reopen, atomically.
    log.set_meta(&[
        ("vote", Some(b"t3-n1")),
        ("applied", Some(&7u64.to_le_bytes())),
    ])?;
    log.set_meta(&[("applied", None)])?;
    drop(log);
    let (log, _) = Log::open(dir.path(), small_config(), Arc::new(RealIo))?;
    assert_eq!(log.meta_get("vote"), Some(&b"t3-n1"[..]));
    assert_eq!(log.meta_get("applied"), None);
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn background_flusher_failure_poisons_the_writer() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        flush: FlushPolicy::Interval {
            ms: 1,
            bytes: 1 << 20,
        },
        ..small_config()
    };
    let (mut log, io) = open_faulty(dir.path(), cfg)?;
    let mut model = Model::default();
    model.append(&mut log, 1, Some(make_batch(1, 2, 10, 40)), &[])?;
    let flusher = log.flusher();
    assert!(flusher.wait_durable(0, Duration::from_secs(5))?);
    let (_, syncs) = io.counts();
    io.inject(Fault::FailSync(syncs + 1));
    model.append(&mut log, 1, Some(make_batch(2, 2, 20, 40)), &[])?;
    // The background sync of entry 1 fails: it never becomes durable.
    assert!(matches!(
        flusher.wait_durable(1, Duration::from_secs(5)),
        Err(Error::Poisoned { .. })
    ));
    assert_eq!(log.durable_index(), Some(0));
    let mut b = make_batch(3, 1, 30, 40);
    assert!(matches!(
        log.append(2, 1, Payload::Batch(&mut b)),
        Err(Error::Poisoned { .. })
    ));
    Ok(())
}

#[test]
fn failed_metadata_sync_poisons() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut log, io) = open_faulty(dir.path(), every_append())?;
    let (_, syncs) = io.counts();
    io.inject(Fault::FailSync(syncs + 1));
    assert!(log.set_meta(&[("vote", Some(b"x"))]).is_err());
    assert!(matches!(
        log.append(0, 1, Payload::Control(b"m")),
        Err(Error::Poisoned { .. })
    ));
    drop(log);
    // The old metadata (none) is intact.
    let (log, _) = Log::open(dir.path(), small_config(), Arc::new(RealIo))?;
    assert_eq!(log.meta_get("vote"), None);
    Ok(())
}
