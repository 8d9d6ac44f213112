//! Damage on real files: bit flips in records, frame headers and segment headers, segments
//! shortened under a live log, and power failures that lose unsynced writes. The rules:
//! what was durable is never cut and never served damaged; every other entry is served;
//! a healthy copy repairs the damage in place; only unsynced bytes may be a torn tail.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use common::{Model, copy_dir, frames, make_batch, segment_files, small_config};
use steme_segments::format::FRAME_HEADER_LEN;
use steme_segments::{Error, FaultyIo, FileIo, Log, LogConfig, RealIo};

fn open(dir: &Path, cfg: &LogConfig) -> anyhow::Result<Log> {
    Ok(Log::open(dir, cfg.clone(), Arc::new(RealIo))?.0)
}

/// A log of `n` entries (every fifth a control entry), all durable and closed cleanly.
fn build(dir: &Path, cfg: &LogConfig, n: u64) -> anyhow::Result<Model> {
    let mut log = open(dir, cfg)?;
    let mut model = Model::default();
    let mut hlc = 10;
    for i in 0..n {
        if i % 5 == 4 {
            model.append(&mut log, 1 + i / 16, None, b"membership")?;
        } else {
            let count = 1 + (i % 3) as u32;
            model.append(
                &mut log,
                1 + i / 16,
                Some(make_batch(i, count, hlc, 40)),
                &[],
            )?;
            hlc += u64::from(count);
        }
    }
    log.close()?;
    Ok(model)
}

fn flip(path: &Path, at: usize) -> anyhow::Result<()> {
    let mut b = fs::read(path)?;
    b[at] ^= 1 << (at % 8);
    fs::write(path, b)?;
    Ok(())
}

/// Everything outside the damaged ranges reads back as the model has it, every read that
/// reaches a range fails with it, and nothing was cut.
fn check_around_damage(log: &Log, model: &Model) -> anyhow::Result<()> {
    let r = log.reader();
    anyhow::ensure!(
        (r.next_index(), r.log_end_offset()) == (model.next_index(), model.end_offset()),
        "the log was cut: ends at {} / {}",
        r.next_index(),
        r.log_end_offset()
    );
    // A first pass finds the damage (reads check every frame they serve): every entry
    // reads back intact or fails naming a range that holds it.
    for e in &model.entries {
        match r.read_entries(e.index..e.index + 1) {
            Ok(got) => {
                anyhow::ensure!(
                    got[0].payload[..] == e.payload[..],
                    "entry {} differs",
                    e.index
                )
            }
            Err(Error::Damaged { damage, .. }) => anyhow::ensure!(
                damage.indexes.contains(&e.index),
                "entry {}: {damage}",
                e.index
            ),
            Err(other) => anyhow::bail!("entry {}: {other}", e.index),
        }
    }
    let damaged = r.damaged();
    anyhow::ensure!(!damaged.is_empty(), "damage not found");
    // Then exactly the entries of the known ranges fail.
    let hit = |i: u64| damaged.iter().any(|d| d.indexes.contains(&i));
    for e in &model.entries {
        match r.read_entries(e.index..e.index + 1) {
            Ok(got) if !hit(e.index) => {
                anyhow::ensure!(
                    got[0].payload[..] == e.payload[..],
                    "entry {} differs",
                    e.index
                )
            }
            Err(Error::Damaged { damage, .. }) if hit(e.index) => {
                anyhow::ensure!(damage.indexes.contains(&e.index))
            }
            other => anyhow::bail!("entry {}: {other:?} (damaged {damaged:?})", e.index),
        }
    }
    // Consuming from the start stops right before the first damaged offset, and resumes
    // after it.
    let mut at = model.start_offset;
    for d in damaged.iter().filter(|d| !d.offsets.is_empty()) {
        while at < d.offsets.start {
            let read = r.read_from_offset(at, 1 << 16, u64::MAX)?;
            for b in &read.batches {
                let h = steme_protocol::batch::validate(b)?;
                anyhow::ensure!(h.base_offset <= at.max(h.base_offset), "gap before {at}");
            }
            at = read.next_offset;
        }
        anyhow::ensure!(at == d.offsets.start, "read past damage: {at} in {d}");
        let err = r.read_from_offset(at, 1 << 16, u64::MAX).unwrap_err();
        anyhow::ensure!(matches!(err, Error::Damaged { .. }), "{err}");
        at = d.offsets.end;
    }
    while at < model.end_offset() {
        at = r.read_from_offset(at, 1 << 16, u64::MAX)?.next_offset;
    }
    Ok(())
}

/// Repairs every damaged range of `log` from `healthy` (another replica's log).
fn repair_from(log: &mut Log, healthy: &Log) -> anyhow::Result<()> {
    for d in log.reader().damaged() {
        let frames = healthy
            .reader()
            .read_frames(d.indexes.clone(), u64::MAX)?
            .concat();
        log.repair(d.indexes.start, &frames)?;
    }
    anyhow::ensure!(log.reader().damaged().is_empty());
    Ok(())
}

#[test]
fn flips_in_records_and_frame_headers_are_damage_never_cut_or_served() -> anyhow::Result<()> {
    let cfg = small_config();
    let src = tempfile::tempdir()?;
    let model = build(src.path(), &cfg, 120)?;
    let healthy = open(src.path(), &cfg)?;
    let segs = segment_files(src.path())?;
    anyhow::ensure!(segs.len() >= 4);
    let dir = tempfile::tempdir()?;
    // A sealed segment, found by reads; and the last one.
    for seg in [&segs[1], segs.last().unwrap()] {
        let fr = frames(seg)?;
        let name = seg.file_name().unwrap();
        for &(start, end, _) in fr.iter().step_by(2) {
            // A frame header byte, a batch header byte (or control payload), a record byte.
            for at in [
                start + 5,
                (start + FRAME_HEADER_LEN + 20).min(end - 1),
                end - 3,
            ] {
                copy_dir(src.path(), dir.path())?;
                flip(&dir.path().join(name), at)?;
                let (mut log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
                anyhow::ensure!(report.cut.is_none(), "cut at flip {at}: {report:?}");
                // A clean close trusts the log: the reads below find the damage.
                check_around_damage(&log, &model)
                    .map_err(|e| e.context(format!("flip at {at} of {}", seg.display())))?;
                // It is remembered across a restart until repaired.
                drop(log);
                let (log2, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
                anyhow::ensure!(!report.damaged.is_empty(), "damage forgotten");
                log = log2;
                repair_from(&mut log, &healthy)?;
                model.check(&log.reader())?;
            }
        }
    }
    Ok(())
}

#[test]
fn damage_below_the_durable_point_found_on_open_is_kept_and_repaired() -> anyhow::Result<()> {
    let cfg = small_config();
    let src = tempfile::tempdir()?;
    let mut model = build(src.path(), &cfg, 60)?;
    // More entries after a restart, synced (and recorded durable), then a crash.
    let mut log = open(src.path(), &cfg)?;
    for i in 0..12 {
        let hlc = 10_000 + i * 3;
        model.append(&mut log, 9, Some(make_batch(1000 + i, 3, hlc, 40)), &[])?;
    }
    log.flush()?;
    drop(log);
    let healthy = open(src.path(), &cfg)?;
    let last = segment_files(src.path())?.pop().unwrap();
    let fr = frames(&last)?;
    let dir = tempfile::tempdir()?;
    for &(start, _, index) in fr.iter().rev().take(6) {
        copy_dir(src.path(), dir.path())?;
        flip(&dir.path().join(last.file_name().unwrap()), start + 9)?;
        let (mut log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
        anyhow::ensure!(report.cut.is_none(), "entry {index} cut: {report:?}");
        anyhow::ensure!(
            report.damaged.iter().any(|d| d.indexes.contains(&index)),
            "{report:?}"
        );
        check_around_damage(&log, &model)?;
        // Appends go on at the right offsets while the damage waits for repair.
        let mut m = model.clone();
        m.append(&mut log, 9, Some(make_batch(5000, 2, 1 << 40, 40)), &[])?;
        repair_from(&mut log, &healthy)?;
        m.check(&log.reader())?;
    }
    Ok(())
}

#[test]
fn a_segment_shortened_under_a_live_log_is_damage_not_sigbus() -> anyhow::Result<()> {
    let cfg = small_config();
    let dir = tempfile::tempdir()?;
    let model = build(dir.path(), &cfg, 120)?;
    let pristine = tempfile::tempdir()?;
    copy_dir(dir.path(), pristine.path())?;
    let healthy = open(pristine.path(), &cfg)?;
    let log = open(dir.path(), &cfg)?;
    let segs = segment_files(dir.path())?;
    let victim = &segs[2];
    let len = fs::metadata(victim)?.len();
    let fr = frames(victim)?;
    let cut_at = fr[fr.len() / 2].0 as u64 + 7;
    // Another process shortens the mapped file.
    fs::File::options()
        .write(true)
        .open(victim)?
        .set_len(cut_at)?;
    assert!(len > cut_at);
    check_around_damage(&log, &model)?;
    drop(log);
    // On restart the damage is still known and nothing is cut or purged.
    let (mut log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    anyhow::ensure!(
        report.cut.is_none() && !report.damaged.is_empty(),
        "{report:?}"
    );
    check_around_damage(&log, &model)?;
    repair_from(&mut log, &healthy)?;
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn a_damaged_segment_header_below_the_durable_point_is_rebuilt() -> anyhow::Result<()> {
    let cfg = small_config();
    let dir = tempfile::tempdir()?;
    let model = build(dir.path(), &cfg, 120)?;
    let segs = segment_files(dir.path())?;
    // A crash (no clean close) makes the next open read every header.
    for seg in &segs[1..3] {
        flip(seg, 17)?;
    }
    let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    anyhow::ensure!(report.repaired_headers.len() == 2, "{report:?}");
    anyhow::ensure!(
        report.cut.is_none() && report.damaged.is_empty(),
        "{report:?}"
    );
    model.check(&log.reader())?;
    Ok(())
}

/// A tiny deterministic generator, so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_power_failure_loses_only_unsynced_writes_and_never_looks_like_damage() -> anyhow::Result<()> {
    let cfg = small_config();
    let seed: u64 = std::env::var("STEME_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    for case in 0..24u64 {
        let mut rng = Rng(seed ^ (case + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let dir = tempfile::tempdir()?;
        let io = Arc::new(FaultyIo::journaled());
        let (mut log, _) = Log::open(dir.path(), cfg.clone(), io.clone() as Arc<dyn FileIo>)?;
        let mut model = Model::default();
        let mut durable = None;
        for i in 0..(20 + rng.next() % 60) {
            let term = 1 + i / 25;
            if rng.next().is_multiple_of(6) {
                model.append(&mut log, term, None, b"membership")?;
            } else {
                let n = 1 + (rng.next() % 4) as u32;
                let hlc = 100 + i * 8;
                model.append(&mut log, term, Some(make_batch(i, n, hlc, 40)), &[])?;
            }
            match rng.next() % 8 {
                0 => durable = log.flusher().flush()?,
                1 => durable = log.flush()?,
                2 => {
                    log.roll()?;
                }
                _ => {}
            }
        }
        drop(log);
        let lost = io.lose_unsynced(|_| rng.next().is_multiple_of(3))?;
        let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
        let ctx =
            format!("seed {seed} case {case}: {lost} writes lost, durable {durable:?}, {report:?}");
        anyhow::ensure!(
            report.damaged.is_empty(),
            "lost unsynced writes taken for damage: {ctx}"
        );
        let kept = log.next_index();
        anyhow::ensure!(
            durable.is_none_or(|d| kept > d),
            "durable entries cut: {ctx}"
        );
        let mut want = model.clone();
        want.truncate_after(kept.wrapping_sub(1));
        want.check(&log.reader()).map_err(|e| e.context(ctx))?;
    }
    Ok(())
}

#[test]
fn retention_and_purges_never_delete_a_damaged_segment() -> anyhow::Result<()> {
    let cfg = small_config();
    let dir = tempfile::tempdir()?;
    let model = build(dir.path(), &cfg, 120)?;
    let segs = segment_files(dir.path())?;
    let fr = frames(&segs[0])?;
    flip(&segs[0], fr[1].1 - 3)?;
    let tight = LogConfig {
        retention_bytes: Some(8192),
        ..cfg.clone()
    };
    let mut log = open(dir.path(), &tight)?;
    check_around_damage(&log, &model)?;
    // Retention would delete every sealed segment but the newest; the first is damaged.
    anyhow::ensure!(log.retention_plan(u64::MAX).is_none(), "a plan over damage");
    // A purge (after a snapshot) stops before it too.
    let last_sealed = log.reader().next_index() - 2;
    log.purge_upto(last_sealed)?;
    anyhow::ensure!(segs[0].exists(), "the damaged segment was deleted");
    anyhow::ensure!(
        log.reader().first_index() == 0,
        "the log start moved past damage"
    );
    Ok(())
}

#[test]
fn a_skip_is_recorded_kept_across_restarts_and_a_repair_still_replaces_it() -> anyhow::Result<()> {
    let cfg = small_config();
    let src = tempfile::tempdir()?;
    let model = build(src.path(), &cfg, 120)?;
    let healthy = open(src.path(), &cfg)?;
    let dir = tempfile::tempdir()?;
    copy_dir(src.path(), dir.path())?;
    let seg = &segment_files(dir.path())?[1];
    let &(start, end, _) = frames(seg)?
        .iter()
        .find(|(s, e, _)| e - s > 100)
        .expect("a batch frame");
    flip(seg, (start + end) / 2)?;
    let mut log = open(dir.path(), &cfg)?;
    check_around_damage(&log, &model)?;
    let d = log.reader().damaged().pop().expect("damage found");
    anyhow::ensure!(!d.offsets.is_empty() && d.skipped.is_none(), "{d:?}");

    let missing = log.record_skip(d.indexes.start + 1_000, skip("nope"));
    anyhow::ensure!(
        matches!(missing, Err(Error::NoSuchDamage { .. })),
        "{missing:?}"
    );
    let skipped = log.record_skip(d.indexes.start, skip("no replica has it; INC-7"))?;
    anyhow::ensure!(skipped.skipped == Some(skip("no replica has it; INC-7")));
    let read_skipped =
        |log: &Log| match log
            .reader()
            .read_from_offset(d.offsets.start, 1 << 20, u64::MAX)
        {
            Err(Error::Damaged { damage, .. }) => Ok(damage.skipped),
            other => anyhow::bail!(
                "a read of the skipped range gave {:?}",
                other.map(|r| r.batches.len())
            ),
        };
    anyhow::ensure!(read_skipped(&log)?.is_some_and(|s| s.reason == "no replica has it; INC-7"));
    drop(log);
    let (mut log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    anyhow::ensure!(
        report
            .damaged
            .iter()
            .any(|x| x.skipped == Some(skip("no replica has it; INC-7"))),
        "the skip was forgotten: {report:?}"
    );
    anyhow::ensure!(read_skipped(&log)?.is_some());
    // Everything else is served as before, and a healthy copy still replaces the range.
    check_around_damage(&log, &model)?;
    repair_from(&mut log, &healthy)?;
    model.check(&log.reader())?;
    Ok(())
}

fn skip(reason: &str) -> steme_segments::Skip {
    steme_segments::Skip {
        at_ms: 1_764_000_000_000,
        reason: reason.into(),
    }
}
