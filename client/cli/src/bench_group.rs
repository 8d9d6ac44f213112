//! `steme bench group`: consumer groups on a `--partitions` topic (16 by default).
//!
//! 1. **Throughput**: `--count` records are produced once; then for each member count in
//!    `--members` (1, 2, 4) a fresh group's members join, settle into an even split, and
//!    read them all; records/s from the first read to the last record (all members run in
//!    this one process).
//! 2. **Rebalances under load**: three members tail the topic while a producer writes a
//!    steady trickle. A fourth joins (time until it holds its share), then one is killed
//!    without leaving (time until the survivors hold every partition; the session timeout is
//!    most of it). Members' longest gap between records on partitions they kept through
//!    both changes is the pause a rebalance costs an unaffected member (0 is the goal; the
//!    trickle arrives every 50 ms).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use steme_client::{
    Admin, Cluster, GroupConfig, GroupConsumer, Producer, SigningKey, TopicOptions,
};
use tokio::time::Instant;

use crate::args::GroupBenchArgs;
use crate::bench::{fmt_num, make_assertions, say};

/// What one tailing member saw.
#[derive(Default)]
struct Tail {
    /// (when, partition) of every record.
    records: Vec<(Instant, u32)>,
    assignment: BTreeSet<u32>,
    /// (when, partitions held after the change).
    changes: Vec<(Instant, BTreeSet<u32>)>,
}

pub async fn run(admin: &Admin, args: &GroupBenchArgs) -> anyhow::Result<()> {
    let run = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let topic = format!("{}-{run}", args.topic);
    admin
        .create_topic(
            &topic,
            args.partitions,
            TopicOptions {
                replication_factor: 0,
                configs: vec![("verify.signatures".into(), "false".into())],
            },
        )
        .await
        .with_context(|| format!("cannot create {topic}"))?;
    let cluster = admin.cluster().clone();
    let key = SigningKey::from_bytes(&[42; 32]);
    let signed = make_assertions(args.count, args.size, &run)
        .iter()
        .map(|a| a.sign(&key))
        .collect::<Result<Vec<_>, _>>()?;
    let producer = Producer::new(cluster.clone(), &topic, crate::producer_config()).await?;
    for r in producer.send_batch(signed).await {
        r.context("producing the records to read")?;
    }
    eprintln!(
        "# produced {} records to {topic} ({} partitions)",
        args.count, args.partitions
    );

    for &n in &args.members {
        let group = format!("bench-{run}-{n}");
        let read = Arc::new(AtomicU64::new(0));
        // Members first settle into an even split, then all start reading at once.
        let held: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
        let go = Arc::new(tokio::sync::Notify::new());
        let start = Arc::new(Mutex::new(None::<Instant>));
        let mut tasks = Vec::new();
        for i in 0..n as usize {
            let (cluster, topic, group, read) =
                (cluster.clone(), topic.clone(), group.clone(), read.clone());
            let (held, go, start) = (held.clone(), go.clone(), start.clone());
            let (count, parts, max_secs) = (args.count, u64::from(args.partitions), args.max_secs);
            tasks.push(tokio::spawn(async move {
                let mut m = GroupConsumer::new(cluster, &topic, GroupConfig::new(&group)).await?;
                let settle_by = Instant::now() + Duration::from_secs(60);
                loop {
                    m.rebalance().await?;
                    held[i].store(m.assignment().len() as u64, Ordering::Relaxed);
                    let all: Vec<u64> = held.iter().map(|h| h.load(Ordering::Relaxed)).collect();
                    let even = all.iter().sum::<u64>() == parts
                        && all.iter().all(|&h| h >= parts / u64::from(n));
                    if even {
                        go.notify_waiters();
                        break;
                    }
                    if Instant::now() > settle_by {
                        bail!("{n} members did not settle: {all:?}");
                    }
                    tokio::select! {
                        _ = go.notified() => break,
                        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
                start
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(Instant::now);
                let deadline = Instant::now() + Duration::from_secs(max_secs);
                // The member whose records complete the count stops the clock.
                let mut done = None;
                while read.load(Ordering::Relaxed) < count && Instant::now() < deadline {
                    let got = m.poll(Duration::from_millis(100)).await?.len() as u64;
                    let before = read.fetch_add(got, Ordering::Relaxed);
                    if before < count && before + got >= count {
                        done = Some(Instant::now());
                    }
                }
                m.close().await?;
                anyhow::Ok(done)
            }));
        }
        let mut finished = None::<Instant>;
        for t in tasks {
            if let Some(done) = t.await?? {
                finished = Some(done);
            }
        }
        let started = start
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or_else(Instant::now);
        let secs = finished.map_or(0.0, |f| (f - started).as_secs_f64());
        let total = read.load(Ordering::Relaxed);
        let rate = total as f64 / secs;
        say!(
            args.json,
            "group consume, {n} member(s) of an even split: {total} records in {secs:.3}s = {} records/s",
            fmt_num(rate)
        );
        crate::bench::print_result(
            args.json,
            &[
                ("peer", "steme".into()),
                ("op", "group_consume".into()),
                ("members", n.to_string()),
                ("partitions", args.partitions.to_string()),
                ("size", args.size.to_string()),
                ("msgs_per_s", fmt_num(rate)),
                ("n", total.to_string()),
                ("secs", fmt_num(secs)),
            ],
        );
        if total < args.count {
            bail!(
                "{n} member(s) read {total} of {} before the cap",
                args.count
            );
        }
    }

    rebalances(&cluster, &topic, args, &producer, &key, &run).await
}

/// A tailing member: what it saw, and its task.
type Tailing = (
    Arc<Mutex<Tail>>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
);

fn spawn_tail(
    cluster: Cluster,
    topic: String,
    config: GroupConfig,
    stop: Arc<AtomicBool>,
) -> Tailing {
    let tail = Arc::new(Mutex::new(Tail::default()));
    let t = tail.clone();
    let task = tokio::spawn(async move {
        let mut m = GroupConsumer::new(cluster, &topic, config).await?;
        while !stop.load(Ordering::Relaxed) {
            let records = m.poll(Duration::from_millis(50)).await?;
            let now = Instant::now();
            let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
            t.records
                .extend(records.iter().map(|r| (now, r.partition())));
            let a: BTreeSet<u32> = m.assignment().into_iter().collect();
            if a != t.assignment {
                t.changes.push((now, a.clone()));
                t.assignment = a;
            }
        }
        m.close().await?;
        anyhow::Ok(())
    });
    (tail, task)
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            bail!("{what} did not happen within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(started.elapsed())
}

async fn rebalances(
    cluster: &Cluster,
    topic: &str,
    args: &GroupBenchArgs,
    producer: &Producer,
    key: &SigningKey,
    run: &str,
) -> anyhow::Result<()> {
    let group = format!("bench-{run}-rebalance");
    let mut config = GroupConfig::new(&group);
    config.session_timeout = Duration::from_millis(args.session_timeout_ms);
    config.no_offset = steme_client::Position::Latest;
    let parts = args.partitions as usize;
    let stop = Arc::new(AtomicBool::new(false));
    // A steady trickle: 100 records every 50 ms.
    let trickle = {
        let (producer, stop, key) = (producer.clone(), stop.clone(), key.clone());
        let (run, size) = (run.to_owned(), args.size);
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch = make_assertions(100, size, &format!("{run}-t{round}"));
                let signed: Vec<_> = batch.iter().filter_map(|a| a.sign(&key).ok()).collect();
                for r in producer.send_batch(signed).await {
                    r?;
                }
                round += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            anyhow::Ok(())
        })
    };
    let mut tails = Vec::new();
    let mut stops = Vec::new();
    let mut add_member = |tails: &mut Vec<Tailing>| {
        let s = Arc::new(AtomicBool::new(false));
        tails.push(spawn_tail(
            cluster.clone(),
            topic.to_owned(),
            config.clone(),
            s.clone(),
        ));
        stops.push(s);
    };
    for _ in 0..3 {
        add_member(&mut tails);
    }
    let held = |tails: &[Tailing]| -> Vec<usize> {
        tails
            .iter()
            .map(|(t, _)| t.lock().unwrap_or_else(|p| p.into_inner()).assignment.len())
            .collect()
    };
    wait_until(
        "three members sharing the partitions",
        Duration::from_secs(60),
        || {
            let h = held(&tails);
            h.iter().sum::<usize>() == parts && h.iter().all(|&n| n >= parts / 3)
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // A fourth member joins.
    let join_at = Instant::now();
    add_member(&mut tails);
    let joined = wait_until(
        "the new member getting its share",
        Duration::from_secs(60),
        || {
            let h = held(&tails);
            h[3] >= parts / 4 && h.iter().sum::<usize>() == parts
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One dies without leaving.
    let (dead, dead_task) = tails.remove(0);
    stops.remove(0);
    dead_task.abort();
    let recovered = wait_until(
        "the survivors taking every partition",
        Duration::from_secs(120),
        || held(&tails).iter().sum::<usize>() == parts,
    )
    .await?;
    let end = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for s in &stops {
        s.store(true, Ordering::Relaxed);
    }
    trickle.await??;
    drop(dead);

    // Unaffected members: their longest gap on partitions they held from before the join
    // to after the recovery.
    let mut worst = Duration::ZERO;
    for (t, task) in tails {
        task.await??;
        let t = t.lock().unwrap_or_else(|p| p.into_inner());
        let held_at = |at: Instant| -> BTreeSet<u32> {
            t.changes
                .iter()
                .rev()
                .find(|(when, _)| *when <= at)
                .map(|(_, a)| a.clone())
                .unwrap_or_default()
        };
        let kept: BTreeSet<u32> = held_at(join_at)
            .intersection(&held_at(end))
            .copied()
            .filter(|p| {
                t.changes
                    .iter()
                    .filter(|(w, _)| *w > join_at && *w <= end)
                    .all(|(_, a)| a.contains(p))
            })
            .collect();
        let mut last: BTreeMap<u32, Instant> = BTreeMap::new();
        for &(when, p) in t
            .records
            .iter()
            .filter(|(w, p)| kept.contains(p) && *w >= join_at && *w <= end)
        {
            if let Some(prev) = last.insert(p, when) {
                worst = worst.max(when - prev);
            }
        }
    }
    say!(
        args.json,
        "rebalance: a member joining holds its share after {} ms; a killed member's partitions are all held again after {} ms (session timeout {} ms); longest gap seen by unaffected members: {} ms (records every 50 ms)",
        joined.as_millis(),
        recovered.as_millis(),
        args.session_timeout_ms,
        worst.as_millis()
    );
    crate::bench::print_result(
        args.json,
        &[
            ("peer", "steme".into()),
            ("op", "group_rebalance".into()),
            ("partitions", args.partitions.to_string()),
            ("join_ms", joined.as_millis().to_string()),
            ("death_ms", recovered.as_millis().to_string()),
            ("session_timeout_ms", args.session_timeout_ms.to_string()),
            ("max_pause_unaffected_ms", worst.as_millis().to_string()),
        ],
    );
    Ok(())
}
