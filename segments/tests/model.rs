//! Property test: random append / truncate / purge / roll / reopen sequences held against
//! an in-memory reference model; every read path must agree with it after every step.

mod common;

use common::{Model, make_batch, open, small_config};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Batches (record counts) and control entries (None), possibly in a new term.
    Append {
        entries: Vec<Option<u32>>,
        new_term: bool,
        reuse_seed: bool,
    },
    /// Truncate this many entries from the end (clamped).
    Truncate(u8),
    /// Purge up to this fraction (of 8) of the log.
    Purge(u8),
    Roll,
    Reopen {
        clean: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(prop::option::weighted(0.8, 1u32..12), 1..6), any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(entries, new_term, reuse_seed)| Op::Append { entries, new_term, reuse_seed }),
        1 => (0u8..10).prop_map(Op::Truncate),
        1 => (0u8..9).prop_map(Op::Purge),
        1 => Just(Op::Roll),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
    ]
}

fn run(ops: Vec<Op>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = small_config();
    let mut log = open(dir.path(), cfg.clone())?;
    let mut model = Model::default();
    let (mut term, mut hlc, mut seed) = (1u64, 1000u64, 0u64);
    for op in ops {
        match op {
            Op::Append {
                entries,
                new_term,
                reuse_seed,
            } => {
                if new_term {
                    term += 1;
                }
                for e in entries {
                    match e {
                        Some(count) => {
                            let s = if reuse_seed && seed > 0 {
                                seed - 1
                            } else {
                                seed
                            };
                            seed += 1;
                            let b = make_batch(s, count, hlc, 40 + (s % 50) as usize);
                            hlc += u64::from(count) + (s % 3);
                            model.append(&mut log, term, Some(b), &[])?;
                        }
                        None => model.append(&mut log, term, None, &seed.to_le_bytes())?,
                    }
                }
            }
            Op::Truncate(n) => {
                // Remove the last n entries (possibly all of them).
                let first_removed = model
                    .next_index()
                    .saturating_sub(u64::from(n))
                    .max(model.start_index);
                if n % 2 == 0 {
                    log.truncate_from(first_removed)?;
                } else if let Some(keep) = first_removed.checked_sub(1) {
                    log.truncate_after(keep)?;
                } else {
                    log.truncate_from(first_removed)?;
                }
                model
                    .entries
                    .truncate((first_removed - model.start_index) as usize);
                // New leaders write in later terms.
                term += 1;
            }
            Op::Purge(frac) => {
                if let Some(last) = log.last_index() {
                    let first = model.start_index;
                    let upto = first + (last - first) * u64::from(frac) / 8;
                    log.purge_upto(upto)?;
                    let r = log.reader();
                    anyhow::ensure!(r.first_index() <= upto + 1 && r.first_index() >= first);
                    model.purge_below(r.first_index(), r.log_start_offset());
                }
            }
            Op::Roll => {
                log.roll()?;
            }
            Op::Reopen { clean } => {
                anyhow::ensure!(log.flush()? == model.next_index().checked_sub(1));
                if clean {
                    log.close()?;
                } else {
                    drop(log);
                }
                let (l, report) = steme_segments::Log::open(
                    dir.path(),
                    cfg.clone(),
                    std::sync::Arc::new(steme_segments::RealIo),
                )?;
                anyhow::ensure!(report.cut.is_none(), "unexpected cut: {report:?}");
                log = l;
            }
        }
        model.check(&log.reader())?;
        anyhow::ensure!(log.durable_index() <= model.next_index().checked_sub(1));
    }
    Ok(())
}

proptest! {
    // 64 cases in the normal run; PROPTEST_CASES=N for a longer hunt.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    }
}

#[test]
fn model_smoke_with_every_operation() -> anyhow::Result<()> {
    run(vec![
        Op::Append {
            entries: vec![Some(3), None, Some(5), Some(2)],
            new_term: false,
            reuse_seed: false,
        },
        Op::Roll,
        Op::Append {
            entries: vec![Some(7); 5],
            new_term: true,
            reuse_seed: true,
        },
        Op::Reopen { clean: true },
        Op::Truncate(3),
        Op::Append {
            entries: vec![Some(4), None],
            new_term: true,
            reuse_seed: false,
        },
        Op::Purge(4),
        Op::Reopen { clean: false },
        Op::Append {
            entries: vec![Some(11); 30],
            new_term: false,
            reuse_seed: false,
        },
        Op::Truncate(7),
        Op::Purge(8),
        Op::Append {
            entries: vec![Some(1), None],
            new_term: false,
            reuse_seed: false,
        },
        Op::Reopen { clean: false },
    ])
}
