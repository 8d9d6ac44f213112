//! Crash recovery: torn tails at every byte, flipped bits, lost index files, and restart
//! work that does not grow with the log.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Model, copy_dir, frames, make_batch, open, segment_files, small_config};
use steme_segments::format::FRAME_HEADER_LEN;
use steme_segments::{Log, LogConfig, RealIo, RecoveryPolicy, segment_path};

/// Builds a log of `n` entries (every fourth a control entry) and returns its model.
/// After a restart (which records the whole log as durable), the last `unsynced` entries
/// are appended without a sync and the log is dropped as in a crash: only they can be a
/// torn tail.
fn build(dir: &Path, cfg: &LogConfig, n: u64, unsynced: u64) -> anyhow::Result<Model> {
    let mut log = open(dir, cfg.clone())?;
    let mut model = Model::default();
    let mut hlc = 10;
    for i in 0..n {
        if i + unsynced == n {
            drop(log);
            // One recovery moves the checkpoint to the active segment (as after any
            // restart) and records everything so far as durable.
            log = open(dir, cfg.clone())?;
        }
        if i % 4 == 3 {
            model.append(&mut log, 1 + i / 10, None, b"membership")?;
        } else {
            let count = 1 + (i % 3) as u32;
            model.append(
                &mut log,
                1 + i / 10,
                Some(make_batch(i, count, hlc, 40)),
                &[],
            )?;
            hlc += u64::from(count);
        }
    }
    drop(log);
    if unsynced == 0 {
        drop(open(dir, cfg.clone())?);
    }
    Ok(model)
}

fn last_segment(dir: &Path) -> anyhow::Result<PathBuf> {
    segment_files(dir)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no segment"))
}

/// Reopens `dir` and checks it holds exactly `model` cut to indexes below `keep_below`.
fn reopen_expect(
    dir: &Path,
    cfg: &LogConfig,
    model: &Model,
    keep_below: u64,
) -> anyhow::Result<()> {
    let (log, report) = Log::open(dir, cfg.clone(), Arc::new(common::NoSyncIo))?;
    let mut want = model.clone();
    want.truncate_after(keep_below.wrapping_sub(1));
    let r = log.reader();
    anyhow::ensure!(
        r.next_index() == want.next_index(),
        "kept up to {} but expected {} ({report:?})",
        r.next_index(),
        want.next_index()
    );
    let got = r.read_entries(0..u64::MAX)?;
    anyhow::ensure!(got.len() == want.entries.len());
    for (g, m) in got.iter().zip(&want.entries) {
        anyhow::ensure!(
            g.payload[..] == m.payload[..] && g.term == m.term,
            "entry {} differs",
            m.index
        );
    }
    let all = r.read_from_offset(0, u64::MAX, u64::MAX)?;
    anyhow::ensure!(all.next_offset == want.end_offset());
    for e in want.entries.iter().rev().take(2) {
        for id in &e.ids {
            anyhow::ensure!(r.lookup_id(id) == want.lookup(id));
        }
    }
    // Lost records are not found by id either.
    for e in &model.entries[want.entries.len()..] {
        for id in &e.ids {
            anyhow::ensure!(r.lookup_id(id).is_none(), "lost id still indexed");
        }
    }
    // And the log accepts the next entry where it now ends.
    drop(r);
    let mut log = log;
    let mut b = make_batch(999, 2, 1 << 40, 40);
    let a = log.append(
        want.next_index(),
        want.last_term().max(1),
        steme_segments::Payload::Batch(&mut b),
    )?;
    anyhow::ensure!(a.base_offset == want.end_offset());
    Ok(())
}

#[test]
fn recover_truncates_torn_tail_at_every_byte() -> anyhow::Result<()> {
    let src = tempfile::tempdir()?;
    let cfg = small_config();
    let model = build(src.path(), &cfg, 40, 3)?;
    let seg = last_segment(src.path())?;
    let name = seg.file_name().unwrap().to_owned();
    let fr = frames(&seg)?;
    anyhow::ensure!(fr.len() >= 3, "last segment too small for the test");
    let (span_start, _, _) = fr[fr.len() - 3];
    let (_, span_end, _) = fr[fr.len() - 1];
    let dir = tempfile::tempdir()?;
    for cut in span_start..=span_end {
        copy_dir(src.path(), dir.path())?;
        File::options()
            .write(true)
            .open(dir.path().join(&name))?
            .set_len(cut as u64)?;
        let keep_below = fr
            .iter()
            .filter(|(_, end, _)| *end <= cut)
            .map(|&(_, _, i)| i + 1)
            .max()
            .unwrap_or(fr[0].2);
        reopen_expect(dir.path(), &cfg, &model, keep_below)
            .map_err(|e| e.context(format!("cut at byte {cut}")))?;
    }
    Ok(())
}

#[test]
fn recover_stops_at_flipped_bit() -> anyhow::Result<()> {
    let src = tempfile::tempdir()?;
    let cfg = small_config();
    let model = build(src.path(), &cfg, 40, 3)?;
    let seg = last_segment(src.path())?;
    let name = seg.file_name().unwrap().to_owned();
    let fr = frames(&seg)?;
    let (span_start, _, _) = fr[fr.len() - 3];
    let (_, span_end, _) = fr[fr.len() - 1];
    let original = fs::read(&seg)?;
    let dir = tempfile::tempdir()?;
    for at in span_start..span_end {
        let (frame_start, _, _) = *fr.iter().find(|(s, e, _)| (*s..*e).contains(&at)).unwrap();
        // Every byte of the frame and batch headers, a sample of the records.
        if at - frame_start >= FRAME_HEADER_LEN + 48 && at % 7 != 0 {
            continue;
        }
        copy_dir(src.path(), dir.path())?;
        let mut bytes = original.clone();
        bytes[at] ^= 1 << (at % 8);
        fs::write(dir.path().join(&name), &bytes)?;
        let damaged = fr
            .iter()
            .find(|(s, e, _)| (*s..*e).contains(&at))
            .unwrap()
            .2;
        reopen_expect(dir.path(), &cfg, &model, damaged)
            .map_err(|e| e.context(format!("flip at byte {at}")))?;
    }
    Ok(())
}

#[test]
fn fail_on_corruption_policy_refuses_to_open() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = small_config();
    build(dir.path(), &cfg, 10, 1)?;
    let seg = last_segment(dir.path())?;
    let fr = frames(&seg)?;
    let mut bytes = fs::read(&seg)?;
    bytes[fr.last().unwrap().0 + 40] ^= 1;
    fs::write(&seg, &bytes)?;
    let strict = LogConfig {
        recovery: RecoveryPolicy::FailOnCorruption,
        ..cfg.clone()
    };
    let err = Log::open(dir.path(), strict, Arc::new(RealIo)).unwrap_err();
    assert!(
        matches!(err, steme_segments::Error::Corrupt { .. }),
        "{err}"
    );
    let (_, report) = Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    let cut = report.cut.expect("tolerant open cuts");
    assert_eq!(cut.first_lost_index, fr.last().unwrap().2);
    Ok(())
}

#[test]
fn torn_segment_creation_is_removed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = small_config();
    let model = build(dir.path(), &cfg, 30, 0)?;
    // A crash right after creating the next segment file, before its header was written.
    let stray = segment_path(dir.path(), model.end_offset());
    File::create(&stray)?.set_len(8192)?;
    let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    assert!(report.removed_segments.contains(&stray), "{report:?}");
    assert!(!stray.exists());
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = small_config();
    let model = build(dir.path(), &cfg, 150, 0)?;
    open(dir.path(), cfg.clone())?.close()?;
    let mut removed = 0;
    for e in fs::read_dir(dir.path())? {
        let p = e?.path();
        match p.extension().and_then(|e| e.to_str()) {
            Some("index") if removed % 2 == 0 => {
                fs::remove_file(&p)?;
                removed += 1;
            }
            Some("index") => {
                let mut b = fs::read(&p)?;
                let n = b.len();
                b[n - 5] ^= 0xff;
                fs::write(&p, b)?;
                removed += 1;
            }
            Some("ids") => {
                let mut b = fs::read(&p)?;
                b[45] ^= 0xff;
                fs::write(&p, b)?;
            }
            _ => {}
        }
    }
    anyhow::ensure!(removed >= 3);
    let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    anyhow::ensure!(report.rebuilt_indexes.len() + 1 >= removed, "{report:?}");
    model.check(&log.reader())?;
    // Sparse-index entries and id files damaged inside (the footer intact) are caught on
    // first use and rebuilt from the log.
    log.close()?;
    for e in fs::read_dir(dir.path())? {
        let p = e?.path();
        if p.extension().is_some_and(|e| e == "index" || e == "ids") {
            let mut b = fs::read(&p)?;
            if b.len() > 200 {
                b[50] ^= 0x55;
                fs::write(&p, b)?;
            }
        }
    }
    let log = open(dir.path(), cfg)?;
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn restart_scans_only_the_tail() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Syncing on every append lets each roll move the recovery checkpoint forward.
    let cfg = LogConfig {
        flush: steme_segments::FlushPolicy::EveryAppend,
        ..small_config()
    };
    let model = build(dir.path(), &cfg, 200, 0)?;
    let segments = fs::read_dir(dir.path())?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count();
    anyhow::ensure!(segments > 5, "want many segments, got {segments}");
    // After a crash (no close), only the active segment is scanned.
    let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    assert_eq!(report.scanned_segments.len(), 1, "{report:?}");
    assert!(report.cut.is_none());
    model.check(&log.reader())?;
    // After a clean close, nothing is scanned.
    log.close()?;
    let (log, report) = Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    assert_eq!(report.scanned_bytes, 0, "{report:?}");
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn interrupted_purge_and_reset_finish_on_open() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = small_config();
    let mut model = build(dir.path(), &cfg, 80, 0)?;
    let mut log = open(dir.path(), cfg.clone())?;
    // Keep a copy of the oldest segment, purge, then put it back: as if the unlink was
    // lost in a crash after the metadata was written.
    let first = segment_path(dir.path(), 0);
    let saved = fs::read(&first)?;
    log.purge_upto(60)?;
    let r = log.reader();
    model.purge_below(r.first_index(), r.log_start_offset());
    drop(r);
    drop(log);
    fs::write(&first, saved)?;
    let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    assert!(report.removed_segments.contains(&first), "{report:?}");
    model.check(&log.reader())?;
    let mut log = log;
    log.reset(1000, 5000)?;
    drop(log);
    let log = open(dir.path(), cfg)?;
    assert_eq!(
        (
            log.next_index(),
            log.log_end_offset(),
            log.log_start_offset()
        ),
        (1000, 5000, 5000)
    );
    Ok(())
}

#[test]
fn missing_middle_segment_is_damage_and_is_repaired() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = small_config();
    let model = build(dir.path(), &cfg, 150, 0)?;
    let log = open(dir.path(), cfg.clone())?;
    let logs = segment_files(dir.path())?;
    anyhow::ensure!(logs.len() >= 4);
    let lost = frames(&logs[2])?;
    let (first, last) = (lost[0].2, lost.last().unwrap().2);
    // What a healthy replica holds for those entries.
    let healthy: Vec<u8> = log
        .reader()
        .read_frames(first..last + 1, u64::MAX)?
        .concat();
    log.close()?;
    // The third segment is deleted underneath: its entries were durable, so nothing may be
    // cut over them — the log keeps every index and offset, with one damaged range.
    fs::remove_file(&logs[2])?;
    let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    assert!(report.cut.is_none(), "{report:?}");
    let [d] = &report.damaged[..] else {
        anyhow::bail!("one damaged range expected: {report:?}")
    };
    assert_eq!(d.indexes, first..last + 1, "{d}");
    let want_offsets =
        model.entries[first as usize].base_offset..model.entries[last as usize].end_offset;
    assert_eq!(d.offsets, want_offsets, "{d}");
    let r = log.reader();
    assert_eq!(
        (r.next_index(), r.log_end_offset()),
        (model.next_index(), model.end_offset())
    );
    let err = r.read_entries(first..first + 1).unwrap_err();
    assert!(
        matches!(err, steme_segments::Error::Damaged { .. }),
        "{err}"
    );
    let err = r
        .read_from_offset(d.offsets.start, 1 << 20, u64::MAX)
        .unwrap_err();
    assert!(
        matches!(err, steme_segments::Error::Damaged { .. }),
        "{err}"
    );
    // Everything before and after it is served; a read that reaches it stops before it.
    let before = r.read_from_offset(0, u64::MAX, u64::MAX)?;
    assert_eq!(before.next_offset, d.offsets.start);
    let after = r.read_from_offset(d.offsets.end, u64::MAX, u64::MAX)?;
    assert_eq!(after.next_offset, model.end_offset());
    assert_eq!(
        r.read_entries(last + 1..u64::MAX)?.len() as u64,
        model.next_index() - last - 1
    );
    drop(r);
    // A copy that does not fit is refused; the healthy copy repairs it in place.
    let mut log = log;
    let err = log
        .repair(first, &healthy[..healthy.len() - 1])
        .unwrap_err();
    assert!(
        matches!(err, steme_segments::Error::RepairRefused { .. }),
        "{err}"
    );
    log.repair(first, &healthy)?;
    model.check(&log.reader())?;
    assert!(log.reader().damaged().is_empty());
    drop(log);
    let (log, report) = Log::open(dir.path(), cfg, Arc::new(RealIo))?;
    assert!(report.damaged.is_empty(), "{report:?}");
    model.check(&log.reader())?;
    Ok(())
}
