//! The id map (every sealed segment's ids in one table): lookups stay exact while it loads,
//! after retention, after a truncation back into a sealed segment, and across a restart;
//! its memory per retained record is what the crate docs say.

mod common;

use common::{Model, make_batch, open, small_config};
use steme_segments::{Log, LogReader};

fn fill(log: &mut Log, model: &mut Model, batches: u64, seed: u64) -> anyhow::Result<()> {
    for i in 0..batches {
        let hlc = 10 + model.end_offset();
        model.append(
            log,
            1,
            Some(make_batch(seed + model.next_index() + i, 4, hlc, 60)),
            &[],
        )?;
    }
    Ok(())
}

fn load_all(r: &LogReader) {
    while r.index_ids() > 0 {}
}

#[test]
fn lookups_stay_exact_while_loading_after_retention_and_truncation() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 400, 0)?;
    let r = log.reader();
    let stats = r.id_map_stats();
    assert!(stats.sealed_segments >= 20, "{stats:?}");
    // Nothing loaded yet (no index_ids call): every lookup searches segments directly.
    model.check(&r)?;
    load_all(&r);

    // Retention drops the oldest segments; their slots retire.
    let plan_to = model.entries[model.entries.len() / 3].index;
    log.purge_upto(plan_to)?;
    model.purge_below(r.first_index(), r.log_start_offset());
    model.check(&r)?;

    // Truncate back into a sealed segment (it becomes the active one again), then write
    // other records over the same offsets and roll past them: the map must not keep
    // calling the old segment loaded.
    load_all(&r);
    let cut = model.entries[model.entries.len() / 2].index;
    log.truncate_after(cut)?;
    model.truncate_after(cut);
    fill(&mut log, &mut model, 200, 1 << 40)?;
    model.check(&r)?;

    // A restart loads nothing up front; lookups are exact before and after loading.
    drop(r);
    drop(log);
    let log = open(dir.path(), small_config())?;
    let r = log.reader();
    assert_eq!(r.id_map_stats().loaded_segments, 0);
    model.check(&r)?;
    Ok(())
}

#[test]
fn a_duplicate_stored_twice_is_found_at_its_first_offset() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 60, 0)?;
    // The same batch again, many segments later (the log itself does not dedup).
    let again = make_batch(7, 4, 10 + model.end_offset(), 60);
    model.append(&mut log, 1, Some(again.clone()), &[])?;
    fill(&mut log, &mut model, 60, 1 << 30)?;
    model.append(&mut log, 1, Some(again), &[])?;
    let r = log.reader();
    load_all(&r);
    model.check(&r)?;
    Ok(())
}

#[test]
fn memory_per_record_is_between_10_7_and_21_3_bytes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = steme_segments::LogConfig {
        segment_bytes: 64 * 1024,
        ..small_config()
    };
    let mut log = open(dir.path(), cfg)?;
    let mut model = Model::default();
    let r = log.reader();
    let mut checked = 0;
    for round in 0..6 {
        fill(&mut log, &mut model, 2_000, round << 32)?;
        load_all(&r);
        let s = r.id_map_stats();
        assert_eq!(s.loaded_segments, s.sealed_segments);
        if s.entries < 10_000 {
            continue; // the smallest table is fixed-size
        }
        let per = s.memory_bytes as f64 / s.entries as f64;
        assert!(
            (10.6..=21.4).contains(&per),
            "{per:.1} bytes per record: {s:?}"
        );
        checked += 1;
    }
    assert!(checked >= 4);
    Ok(())
}

/// A log in a temporary directory holding three filled batches, and its model.
fn three_batches() -> anyhow::Result<(tempfile::TempDir, Log, Model)> {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path(), small_config())?;
    let mut model = Model::default();
    fill(&mut log, &mut model, 3, 0)?;
    Ok((dir, log, model))
}

/// A leader's append (`Payload::Checked`) skips the CRC and takes the ids as given: the
/// ids must match the records' count, and a batch whose CRC was wrong after all is stored
/// still wrong, so that reading it reports damage instead of serving it.
#[test]
fn a_checked_append_needs_every_id_and_never_makes_a_bad_crc_good() -> anyhow::Result<()> {
    use steme_segments::{Error, Payload};
    let (_dir, mut log, model) = three_batches()?;

    let mut b = make_batch(99, 4, 10 + model.end_offset(), 60);
    let ids = common::prefixes_of(&b);
    let short = Payload::Checked {
        batch: &mut b,
        ids: &ids[..3],
    };
    let err = log.append(model.next_index(), 1, short).unwrap_err();
    assert!(matches!(err, Error::InvalidBatch { .. }), "{err}");
    model.check(&log.reader())?;

    let at = model.end_offset();
    let last = b.len() - 1;
    b[last] ^= 0x40; // a byte of the last record, after the caller's check
    let damaged = Payload::Checked {
        batch: &mut b,
        ids: &ids,
    };
    log.append(model.next_index(), 1, damaged)?;
    let r = log.reader();
    let err = r.read_from_offset(at, 1 << 16, u64::MAX).unwrap_err();
    assert!(matches!(err, Error::Damaged { .. }), "{err}");
    Ok(())
}

/// A follower's append with its leader's id hints (`Payload::Hinted`) still checks the
/// batch whole: a flipped byte is refused, not stored. A hint of the wrong length is
/// ignored (the records are hashed and found). And a wrong hint cannot make a lookup find
/// a record that is not there (candidates are confirmed by hashing); it can only leave a
/// record unfound by its id.
#[test]
fn a_hinted_append_checks_the_crc_and_a_wrong_hint_never_invents_a_record() -> anyhow::Result<()> {
    use steme_segments::{Error, Payload};
    let (_dir, mut log, model) = three_batches()?;

    let mut b = make_batch(98, 4, 10 + model.end_offset(), 60);
    let ids = common::prefixes_of(&b);
    let last = b.len() - 1;
    b[last] ^= 0x40;
    let flipped = Payload::Hinted {
        batch: &mut b,
        ids: &ids,
    };
    let err = log.append(model.next_index(), 1, flipped).unwrap_err();
    assert!(matches!(err, Error::InvalidBatch { .. }), "{err}");
    b[last] ^= 0x40;
    model.check(&log.reader())?;
    let mut short_hinted = make_batch(96, 4, 10 + model.end_offset(), 60);
    let short_at = model.end_offset();
    log.append(
        model.next_index(),
        1,
        Payload::Hinted {
            batch: &mut short_hinted,
            ids: &ids[..2],
        },
    )?;
    let r = log.reader();
    let found: Vec<_> = common::ids_of(&short_hinted)
        .iter()
        .map(|id| r.lookup_id(id))
        .collect();
    let want: Vec<_> = (short_at..short_at + 4).map(Some).collect();
    assert_eq!(
        found, want,
        "a short hint must be ignored, the records hashed"
    );

    // Hints naming another batch's records: the other batch's ids find nothing, and a
    // stored record is found at its own offset or not at all (hidden), never elsewhere.
    let other = make_batch(97, 4, 30 + short_at, 60);
    let wrong = common::prefixes_of(&other);
    let at = short_at + 4;
    log.append(
        model.next_index() + 1,
        1,
        Payload::Hinted {
            batch: &mut b,
            ids: &wrong,
        },
    )?;
    let r = log.reader();
    for id in common::ids_of(&other) {
        assert_eq!(r.lookup_id(&id), None, "a wrong hint invented {id}");
    }
    for (i, id) in common::ids_of(&b).iter().enumerate() {
        let found = r.lookup_id(id);
        assert!(
            found.is_none_or(|o| o == at + i as u64),
            "record {i} found at {found:?}, stored at {}",
            at + i as u64
        );
    }
    Ok(())
}
