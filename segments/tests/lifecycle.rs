//! Rolling by size and age, retention plans, purge and reset, metadata, checkpoints.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Model, make_batch, open, small_config};
use steme_segments::{Error, Log, LogConfig, RealIo};

fn fill(log: &mut Log, model: &mut Model, n: u64) -> anyhow::Result<()> {
    for i in 0..n {
        let hlc = 10 + model.end_offset();
        model.append(
            log,
            1,
            Some(make_batch(1000 + model.next_index() + i, 2, hlc, 60)),
            &[],
        )?;
    }
    Ok(())
}

fn segment_count(dir: &std::path::Path) -> anyhow::Result<usize> {
    Ok(std::fs::read_dir(dir)?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count())
}

#[test]
fn rolls_by_size_and_by_age() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 100)?;
    let by_size = segment_count(dir.path())?;
    assert!(by_size > 3, "{by_size} segments");
    drop(log);

    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        segment_age: Some(Duration::ZERO),
        segment_bytes: 1 << 20,
        ..small_config()
    };
    let mut log = open(dir.path(), cfg)?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 5)?;
    // Every append finds the active segment "old": one segment per batch.
    assert_eq!(segment_count(dir.path())?, 5);
    // A segment without records never rolls (it would share its name with the next).
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    assert!(!log.roll()?);
    log.append(0, 1, steme_segments::Payload::Control(b"m"))?;
    assert!(!log.roll()?);
    Ok(())
}

#[test]
fn retention_plan_then_purge_by_size_and_age() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        retention_bytes: Some(20_000),
        ..small_config()
    };
    let mut log = open(dir.path(), cfg.clone())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 150)?;
    let plan = log.retention_plan(0).expect("over the size limit");
    assert!(plan.segments >= 1 && plan.bytes > 0);
    // The boundary is a segment boundary: the next entry starts the new log start offset.
    let next = log
        .reader()
        .read_entries(plan.upto_index + 1..plan.upto_index + 2)?;
    assert_eq!(
        steme_protocol::batch::validate(&next[0].payload)?.base_offset,
        plan.new_log_start_offset
    );
    log.purge_upto(plan.upto_index)?;
    let r = log.reader();
    assert_eq!(
        (r.first_index(), r.log_start_offset()),
        (plan.upto_index + 1, plan.new_log_start_offset)
    );
    model.purge_below(r.first_index(), r.log_start_offset());
    model.check(&r)?;
    assert!(log.retention_plan(0).is_none(), "within the limit now");
    // By age: everything sealed is old a day from now.
    let aged = LogConfig {
        retention_bytes: None,
        retention_age: Some(Duration::from_secs(3600)),
        ..cfg
    };
    drop(r);
    drop(log);
    let log = open(dir.path(), aged)?;
    assert!(log.retention_plan(steme_now_ms()).is_none());
    let plan = log
        .retention_plan(steme_now_ms() + 86_400_000)
        .expect("old segments");
    assert_eq!(
        plan.segments,
        segment_count(dir.path())? - 1,
        "all sealed segments, never the active one"
    );
    Ok(())
}

fn steme_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[test]
fn purge_of_everything_restarts_the_log_at_the_end() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 40)?;
    let (last, end) = (log.last_index().unwrap(), log.log_end_offset());
    assert!(matches!(
        log.purge_upto(last + 1),
        Err(Error::PurgeBeyondEnd { .. })
    ));
    log.purge_upto(last)?;
    assert_eq!(
        (log.first_index(), log.next_index(), log.log_start_offset()),
        (last + 1, last + 1, end)
    );
    assert_eq!(log.last_index(), None);
    assert!(log.reader().read_entries(0..last + 1).is_err());
    model.purge_below(last + 1, end);
    fill(&mut log, &mut model, 3)?;
    model.check(&log.reader())?;
    // Reset moves anywhere (a snapshot installed from a leader).
    log.reset(5000, 77_000)?;
    model = Model {
        start_index: 5000,
        start_offset: 77_000,
        ..Model::default()
    };
    fill(&mut log, &mut model, 3)?;
    drop(log);
    let log = open(dir.path(), small_config())?;
    model.check(&log.reader())?;
    Ok(())
}

#[test]
fn metadata_and_checkpoint_survive_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        flush: steme_segments::FlushPolicy::Never,
        ..small_config()
    };
    let mut log = open(dir.path(), cfg.clone())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 60)?;
    log.set_meta(&[("vote", Some(&[1, 2, 3])), ("committed", Some(&[9]))])?;
    // A flush moves the checkpoint: only the active segment is scanned after a crash.
    log.flush()?;
    drop(log);
    let (log, report) = Log::open(dir.path(), cfg.clone(), Arc::new(RealIo))?;
    assert_eq!(report.scanned_segments.len(), 1, "{report:?}");
    assert_eq!(log.meta_get("vote"), Some(&[1u8, 2, 3][..]));
    assert_eq!(log.meta().len(), 2);
    model.check(&log.reader())?;
    Ok(())
}

/// A metadata write committed after a later one has landed changes nothing: the file keeps
/// the later state (which holds the earlier updates too).
#[test]
fn metadata_writes_land_in_sequence_whatever_the_commit_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    let first = log.prepare_meta(&[("applied", Some(b"1")), ("vote", Some(b"a"))])?;
    let second = log.prepare_meta(&[("applied", Some(b"2"))])?;
    second.commit()?;
    first.commit()?;
    drop(log);
    let log = open(dir.path(), small_config())?;
    assert_eq!(log.meta_get("applied"), Some(&b"2"[..]));
    assert_eq!(log.meta_get("vote"), Some(&b"a"[..]));
    Ok(())
}

#[test]
fn retention_limits_changed_while_open_apply_to_the_next_plan() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 150)?;
    assert!(
        log.retention_plan(0).is_none(),
        "no limit, nothing to delete"
    );
    log.set_retention(Some(20_000), None);
    let plan = log.retention_plan(0).expect("over the new size limit");
    assert!(plan.segments >= 1);
    log.set_retention(None, Some(Duration::from_secs(3600)));
    assert!(
        log.retention_plan(steme_now_ms()).is_none(),
        "nothing that old"
    );
    assert!(log.retention_plan(steme_now_ms() + 86_400_000).is_some());
    log.set_retention(None, None);
    assert!(log.retention_plan(u64::MAX).is_none(), "limits removed");
    Ok(())
}
