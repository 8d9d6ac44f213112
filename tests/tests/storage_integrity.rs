//! Damaged bytes on disk, against real broker processes: never served, never skipped in
//! silence, never allowed to cut acknowledged records — and repaired from a replica.
//!
//! - A flipped byte in a record and in a frame header of a sealed segment of one replica
//!   out of three: the scrubber finds it, the replica repairs it from another over the peer
//!   plane, and afterwards serves exactly what the others serve.
//! - The same on a single broker: nothing to repair from, so the range is quarantined and
//!   reported; `steme consume --verify` prints every record before it and fails naming it
//!   (never a silent gap); the records after it are served. Once an operator skips it
//!   (`steme cluster skip-damaged`, with a reason), consumers pass it with a warning that
//!   carries the record of the skip, and the record outlives a restart.
//! - An acknowledged tail with a flipped byte, then kill -9: kept and reported as damage,
//!   never cut as a torn tail.
//! - A sealed segment shortened by another process under a live broker: no SIGBUS; the
//!   damage is found and repaired.
//! - A leader damaged in the range a follower that was down needs: its Raft read of the
//!   range waits instead of stopping the group, leadership moves, the range is repaired
//!   from the third replica, the follower catches up and writes go on. With the third
//!   replica damaged there too, the range is quarantined: the follower waits before it
//!   (never sent blanks), writes go on, and the brokers still stop on SIGTERM.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use steme_client::{Producer, ProducerConfig};
use steme_protocol::messages::describe_topic::{DamagedRange, PartitionDescription};
use steme_segments::format::{FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN};
use steme_tests::cli::steme;
use steme_tests::cluster::{Cluster, ClusterOptions, describe_replica, replica_digest};
use steme_tests::process::{BrokerOptions, BrokerProcess};
use steme_tests::unique;
use steme_tests::workload::{create_topic_with, produce_all, signed};

const T: Duration = Duration::from_secs(60);

/// Small segments, so a few thousand records make many sealed ones.
async fn create(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    create_topic_with(
        bootstrap,
        topic,
        1,
        vec![("segment.bytes".into(), "65536".into())],
    )
    .await
}

/// Small batches too, so a segment holds many frames.
async fn produce(bootstrap: &str, topic: &str, run: &str, n: usize) -> anyhow::Result<()> {
    let config = ProducerConfig {
        max_batch_bytes: 8 << 10,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(bootstrap, topic, config).await?;
    let acks = produce_all(&producer, &signed(run, n, 200)?).await?;
    ensure!(acks.len() == n);
    producer.close().await?;
    Ok(())
}

fn partition_dir(b: &BrokerProcess, topic: &str) -> PathBuf {
    b.data_dir().join("topics").join(format!("{topic}-0"))
}

fn segments(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    v.retain(|p| p.extension().is_some_and(|e| e == "log"));
    v.sort();
    Ok(v)
}

/// `(start, end)` of every frame of a segment file.
fn frames(path: &Path) -> anyhow::Result<Vec<(usize, usize)>> {
    let data = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(h) = data.get(pos..).and_then(FrameHeader::peek) {
        let end = pos + FRAME_HEADER_LEN + h.payload_len as usize;
        out.push((pos, end));
        pos = end;
    }
    Ok(out)
}

/// Flips one bit at each of `at` in `path`, in place (as a failing disk would: a broker
/// that has the file mapped sees the change).
fn flip(path: &Path, at: &[usize]) -> anyhow::Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    for &i in at {
        let mut b = [0u8];
        f.read_exact_at(&mut b, i as u64)?;
        b[0] ^= 0x10;
        f.write_all_at(&b, i as u64)?;
    }
    Ok(())
}

/// A record byte of the last frame of the second segment, and the index field of the
/// first frame header of the third (both sealed). Returns the second segment.
fn damage_sealed_segment(dir: &Path) -> anyhow::Result<PathBuf> {
    let segs = segments(dir)?;
    ensure!(segs.len() >= 4, "want sealed segments, have {segs:?}");
    let (a, b) = (segs[1].clone(), &segs[2]);
    let fa = frames(&a)?;
    let fb = frames(b)?;
    flip(&a, &[fa.last().context("frames")?.1 - 5])?;
    flip(b, &[fb.first().context("frames")?.0 + 9])?;
    Ok(a)
}

/// Polls `what` on the replica at `addr` until `done` holds.
async fn wait_replica(
    addr: &str,
    topic: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&PartitionDescription) -> bool,
) -> anyhow::Result<PartitionDescription> {
    let deadline = Instant::now() + timeout;
    loop {
        let d = describe_replica(addr, topic, 0).await;
        if let Ok(d) = &d
            && done(d)
        {
            return Ok(d.clone());
        }
        ensure!(
            Instant::now() < deadline,
            "{what} within {timeout:?}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The offsets of the records `steme consume` printed.
fn printed_offsets(stdout: &str) -> anyhow::Result<Vec<u64>> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)?;
            v["offset"].as_u64().context("offset")
        })
        .collect()
}

/// `steme consume --verify` exits 0 with every record of the `total` but those in the
/// `ranges`, skipped for `reason`, and names each range, with the reason, on stderr.
async fn consumes_all_but_skipped(
    bootstrap: &str,
    topic: &str,
    total: u64,
    ranges: &[DamagedRange],
    reason: &str,
) -> anyhow::Result<()> {
    let out = steme(bootstrap, &["consume", topic, "--verify"], "", T)
        .await?
        .success()?;
    let offsets = printed_offsets(&out.stdout)?;
    let expected: Vec<u64> = (0..total)
        .filter(|o| {
            !ranges
                .iter()
                .any(|r| (r.first_offset..r.end_offset).contains(o))
        })
        .collect();
    ensure!(
        offsets == expected,
        "{} records consumed, {} expected",
        offsets.len(),
        expected.len()
    );
    for r in ranges {
        ensure!(
            out.stderr
                .contains(&format!("{}..{}", r.first_offset, r.end_offset))
                && out.stderr.contains(reason),
            "the skip of {}..{} is not named: {}",
            r.first_offset,
            r.end_offset,
            out.stderr
        );
    }
    Ok(())
}

/// Three scrubbing brokers and a one-partition topic of 3000 records on them all; returns
/// the cluster, the topic and its high watermark.
async fn written_cluster(name: &str) -> anyhow::Result<(Cluster, String, u64)> {
    let mut opts = ClusterOptions::new(3);
    opts.broker.args = scrub_fast();
    let c = Cluster::start(opts).await?;
    let topic = unique(name);
    create(&c.bootstrap(), &topic).await?;
    produce(&c.bootstrap(), &topic, &topic, 3000).await?;
    let hwm = c.check_replicas_identical(&topic, 1, T).await?[0];
    Ok((c, topic, hwm))
}

/// Checks that broker `repaired` serves exactly the records broker `healthy` serves.
async fn serves_the_same(
    c: &Cluster,
    repaired: u64,
    healthy: u64,
    topic: &str,
    hwm: u64,
) -> anyhow::Result<()> {
    let mine = replica_digest(&c.broker(repaired).bootstrap(), topic, 0, 0, hwm).await?;
    let theirs = replica_digest(&c.broker(healthy).bootstrap(), topic, 0, 0, hwm).await?;
    ensure!(mine == theirs, "the repaired replica serves other records");
    Ok(())
}

/// Waits until broker `b`'s log has a line containing `needle` (the broker stays up).
async fn wait_logged(b: &BrokerProcess, needle: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + T;
    while !std::fs::read_to_string(b.log_path())?.contains(needle) {
        ensure!(b.is_running(), "the broker died: {}", b.log_tail(20));
        ensure!(
            Instant::now() < deadline,
            "no {needle:?} within {T:?}: {}",
            b.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

fn scrub_fast() -> Vec<String> {
    [
        "--scrub-bytes-per-sec",
        "268435456",
        "--scrub-interval-ms",
        "0",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_replica_is_repaired_from_another_and_never_serves_damage() -> anyhow::Result<()>
{
    let (c, topic, hwm) = written_cluster("repair").await?;
    ensure!(hwm == 3000);
    let leader = c.wait_for_leader(&topic, 0, None, T).await?;
    let victim = c.ids().find(|&id| id != leader).context("a follower")?;
    let healthy = c
        .ids()
        .find(|&id| id != victim)
        .context("another replica")?;
    // Bit rot under the running follower (its mapping sees the change): records it
    // applied long ago, which only the scrubber reads again.
    let seg = damage_sealed_segment(&partition_dir(c.broker(victim), &topic))?;
    let name = seg.file_name().context("segment name")?.to_owned();
    let addr = c.broker(victim).bootstrap();
    wait_logged(c.broker(victim), "the scrubber found damage").await?;
    wait_logged(c.broker(victim), "repaired a damaged range").await?;
    let d = wait_replica(&addr, &topic, T, "serving, no damage left", |d| {
        d.offline.is_none() && d.damaged.is_empty() && d.high_watermark == hwm
    })
    .await?;
    ensure!(
        d.scrub.verified_bytes > 0,
        "the scrubber did not run: {d:?}"
    );
    // The repaired bytes are the healthy replica's, byte for byte.
    let repaired = std::fs::read(partition_dir(c.broker(victim), &topic).join(&name))?;
    let good = std::fs::read(partition_dir(c.broker(healthy), &topic).join(&name))?;
    let end = frames(&partition_dir(c.broker(healthy), &topic).join(&name))?
        .last()
        .context("frames")?
        .1;
    ensure!(
        repaired[SEGMENT_HEADER_LEN..end] == good[SEGMENT_HEADER_LEN..end],
        "the repaired segment differs from the healthy copy"
    );
    // And it serves exactly what the others serve.
    serves_the_same(&c, victim, healthy, &topic, hwm).await?;
    let listed = steme(&c.bootstrap(), &["cluster", "damaged", &topic], "", T)
        .await?
        .success()?;
    ensure!(
        listed.stdout.contains("no damaged range"),
        "{}",
        listed.stdout
    );
    ensure!(c.any_panic().is_none(), "a broker panicked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_broker_quarantines_damage_and_consumers_fail_closed_until_it_is_skipped()
-> anyhow::Result<()> {
    let mut b = BrokerProcess::start_with(BrokerOptions {
        config_toml: None,
        args: scrub_fast(),
    })?;
    let topic = unique("quarantine");
    create(&b.bootstrap(), &topic).await?;
    produce(&b.bootstrap(), &topic, &topic, 2000).await?;
    b.terminate(T)?;
    damage_sealed_segment(&partition_dir(&b, &topic))?;
    b.restart()?;
    // Found by the scrubber, and with no other replica, quarantined and reported.
    let d = wait_replica(&b.bootstrap(), &topic, T, "both ranges quarantined", |d| {
        d.damaged.len() >= 2 && d.damaged.iter().all(|r| r.quarantined.is_some())
    })
    .await?;
    ensure!(
        d.log_end_offset == 2000 && d.high_watermark == 2000,
        "records lost: {d:?}"
    );
    let first = &d.damaged[0];
    // A verified consume prints every record before the damage, in order, then fails
    // naming it: never exit 0 past a gap.
    let out = steme(&b.bootstrap(), &["consume", &topic, "--verify"], "", T).await?;
    ensure!(
        !out.status.success(),
        "consume exited 0 over damage:\n{}",
        out.stderr
    );
    ensure!(
        out.stderr
            .contains(&format!("{}..{}", first.first_offset, first.end_offset)),
        "the error does not name the damaged range: {}",
        out.stderr
    );
    let offsets = printed_offsets(&out.stdout)?;
    let before: Vec<u64> = (0..first.first_offset).collect();
    ensure!(
        offsets == before,
        "records before the damage: {} of {}",
        offsets.len(),
        first.first_offset
    );
    // Everything after it is served.
    let last = d.damaged.last().context("damage")?.end_offset;
    let from = last.to_string();
    let after = steme(
        &b.bootstrap(),
        &["consume", &topic, "--verify", "--from", &from],
        "",
        T,
    )
    .await?
    .success()?;
    ensure!(after.stdout.lines().count() as u64 == 2000 - last);
    // The status command shows it, and `cluster damaged` lists it and exits 1.
    let status = steme(&b.bootstrap(), &["cluster", "status", &topic], "", T)
        .await?
        .success()?;
    ensure!(status.stdout.contains("quarantined"), "{}", status.stdout);
    let listed = steme(&b.bootstrap(), &["cluster", "damaged", "--json"], "", T).await?;
    ensure!(listed.status.code() == Some(1), "{listed:?}");
    let first_listed: serde_json::Value =
        serde_json::from_str(listed.stdout.lines().next().context("no range listed")?)?;
    ensure!(
        first_listed["topic"] == topic.as_str()
            && first_listed["first_offset"] == first.first_offset
            && first_listed["state"] == "quarantined",
        "{first_listed}"
    );

    // An operator gives the ranges up. Refused without a reason, or where no range starts.
    const REASON: &str = "lost with disk 3; INC-7";
    let skip_as = |offset: u64, reason: &str, json: bool| {
        let mut args = [
            "cluster",
            "skip-damaged",
            topic.as_str(),
            "-p",
            "0",
            "--offset",
            &offset.to_string(),
            "--reason",
            reason,
        ]
        .map(String::from)
        .to_vec();
        if json {
            args.push("--json".into());
        }
        let bootstrap = b.bootstrap();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            steme(&bootstrap, &args, "", T).await
        }
    };
    let skip = |offset: u64, reason: &str| skip_as(offset, reason, false);
    let refused = skip(first.first_offset, " ").await?;
    ensure!(
        refused.status.code() == Some(1) && refused.stdout.contains("refused"),
        "{refused:?}"
    );
    let nowhere = skip(first.first_offset + 1, "nothing starts here").await?;
    ensure!(nowhere.status.code() == Some(1), "{nowhere:?}");
    for (i, r) in d.damaged.iter().enumerate() {
        // The last one as JSON lines, one per replica's answer.
        let json = i + 1 == d.damaged.len();
        let done = skip_as(r.first_offset, REASON, json).await?.success()?;
        ensure!(done.stdout.contains("skipped"), "{}", done.stdout);
        if json {
            for line in done.stdout.lines() {
                let v: serde_json::Value = serde_json::from_str(line)?;
                ensure!(
                    v["skipped"] == true && v["first_offset"] == r.first_offset,
                    "{v}"
                );
            }
        }
    }
    // Consumers now pass the ranges, each named on stderr with the record of the skip, and
    // get every other record.
    consumes_all_but_skipped(&b.bootstrap(), &topic, 2000, &d.damaged, REASON).await?;
    // The record of the skip outlives a restart; `cluster damaged` lists it and exits 0.
    b.terminate(T)?;
    b.restart()?;
    let listed = steme(&b.bootstrap(), &["cluster", "damaged", "--json"], "", T)
        .await?
        .success()?;
    for line in listed.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        ensure!(
            v["state"] == "skipped" && v["skipped"]["reason"] == REASON,
            "{v}"
        );
    }
    consumes_all_but_skipped(&b.bootstrap(), &topic, 2000, &d.damaged, REASON).await?;
    ensure!(!b.log_shows_panic());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_tail_with_a_flipped_byte_is_never_cut() -> anyhow::Result<()> {
    let mut b = BrokerProcess::start()?;
    let topic = unique("tail");
    create(&b.bootstrap(), &topic).await?;
    produce(&b.bootstrap(), &topic, &topic, 300).await?;
    // The syncer records the durable point once the log is idle for a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill9()?;
    let last = segments(&partition_dir(&b, &topic))?
        .pop()
        .context("a segment")?;
    let fr = frames(&last)?;
    let (start, end) = *fr.last().context("frames")?;
    flip(&last, &[start + 9, end - 3])?;
    b.restart()?;
    let d = wait_replica(&b.bootstrap(), &topic, T, "damage reported", |d| {
        !d.damaged.is_empty()
    })
    .await?;
    ensure!(
        d.log_end_offset == 300,
        "acknowledged records were cut: log ends at {}",
        d.log_end_offset
    );
    ensure!(!b.log_shows_panic());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_shortened_under_a_live_broker_is_repaired_not_sigbus() -> anyhow::Result<()> {
    let (c, topic, hwm) = written_cluster("shortened").await?;
    let leader = c.wait_for_leader(&topic, 0, None, T).await?;
    let victim = c.ids().find(|&id| id != leader).context("a follower")?;
    let seg = segments(&partition_dir(c.broker(victim), &topic))?[1].clone();
    let len = std::fs::metadata(&seg)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)?
        .set_len(len / 3)?;
    let addr = c.broker(victim).bootstrap();
    wait_logged(c.broker(victim), "repaired a damaged range").await?;
    wait_replica(&addr, &topic, T, "serving, no damage left", |d| {
        d.offline.is_none() && d.damaged.is_empty() && d.high_watermark == hwm
    })
    .await?;
    let healthy = c.ids().find(|&id| id != victim).context("another")?;
    serves_the_same(&c, victim, healthy, &topic, hwm).await?;
    ensure!(c.any_panic().is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_damaged_at_a_different_place_is_repaired_from_the_others()
-> anyhow::Result<()> {
    let (c, topic, hwm) = written_cluster("all-damaged").await?;
    // Broker n loses a record in its n-th sealed segment: no range is damaged twice.
    let ids: Vec<u64> = c.ids().collect();
    for (n, &id) in ids.iter().enumerate() {
        let segs = segments(&partition_dir(c.broker(id), &topic))?;
        ensure!(
            segs.len() > ids.len() + 1,
            "want more sealed segments: {segs:?}"
        );
        let seg = &segs[n + 1];
        let fr = frames(seg)?;
        let (start, end) = fr[fr.len() / 2];
        flip(seg, &[start + 9, end - 7])?;
    }
    // Every replica finds its damage and repairs it from one of the others.
    for &id in &ids {
        wait_logged(c.broker(id), "repaired a damaged range").await?;
    }
    let hwms = c.check_replicas_identical(&topic, 1, T).await?;
    ensure!(hwms == [hwm], "{hwms:?} after repairs, {hwm} before");
    ensure!(c.any_panic().is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_the_active_segment_and_in_index_files_is_found_and_repaired()
-> anyhow::Result<()> {
    let (mut c, topic, hwm) = written_cluster("active").await?;
    let leader = c.wait_for_leader(&topic, 0, None, T).await?;
    let victim = c.ids().find(|&id| id != leader).context("a follower")?;
    let healthy = c.ids().find(|&id| id != victim).context("another")?;
    // Index files of sealed segments are caches with CRCs: damaged ones are rebuilt from
    // the log on the next open, never trusted.
    c.broker_mut(victim).terminate(T)?;
    let dir = partition_dir(c.broker(victim), &topic);
    let mut caches = 0;
    for e in std::fs::read_dir(&dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "index" || x == "ids")
            && std::fs::metadata(&p)?.len() > 64
        {
            flip(&p, &[8, 40])?;
            caches += 1;
        }
    }
    ensure!(caches >= 2, "no index files to damage");
    c.restart(victim)?;
    // A record of the active segment, written and synced long ago, rots under the
    // running follower.
    let active = segments(&dir)?.pop().context("the active segment")?;
    let fr = frames(&active)?;
    ensure!(fr.len() >= 2, "want frames in the active segment: {fr:?}");
    flip(&active, &[fr[0].1 - 9])?;
    wait_logged(c.broker(victim), "repaired a damaged range").await?;
    let addr = c.broker(victim).bootstrap();
    wait_replica(&addr, &topic, T, "serving, no damage left", |d| {
        d.offline.is_none() && d.damaged.is_empty() && d.high_watermark == hwm
    })
    .await?;
    serves_the_same(&c, victim, healthy, &topic, hwm).await?;
    // And it keeps taking appends at the right offsets.
    produce(&c.bootstrap(), &topic, &format!("{topic}-more"), 500).await?;
    c.check_replicas_identical(&topic, 1, T).await?;
    ensure!(c.any_panic().is_none());
    Ok(())
}

/// A 3-broker cluster where one follower was down while 3000 records were written, and a
/// record of a sealed segment written meanwhile is flipped on the leader (and on
/// `also_damaged` more brokers, at the same place: replicas store the same bytes). No fast
/// scrubber: the first to read the range is the leader's Raft, sending it to the follower
/// restarted last. Returns the cluster, topic, leader, lagging follower and the high
/// watermark before the follower went down.
async fn lagging_follower_behind_damage(
    name: &str,
    also_damaged: usize,
) -> anyhow::Result<(Cluster, String, u64, u64, u64)> {
    let mut c = Cluster::start(ClusterOptions::new(3)).await?;
    let topic = unique(name);
    create(&c.bootstrap(), &topic).await?;
    produce(&c.bootstrap(), &topic, &topic, 500).await?;
    let before = c.check_replicas_identical(&topic, 1, T).await?[0];
    let leader = c.wait_for_leader(&topic, 0, None, T).await?;
    let lagging = c.ids().find(|&id| id != leader).context("a follower")?;
    c.broker_mut(lagging).kill9()?;
    produce(&c.bootstrap(), &topic, &format!("{topic}-while-down"), 3000).await?;
    let base = |p: &PathBuf| -> u64 {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    let segs = segments(&partition_dir(c.broker(leader), &topic))?;
    let sealed: Vec<&PathBuf> = segs[..segs.len() - 1]
        .iter()
        .filter(|p| base(p) > before)
        .collect();
    let seg = sealed.get(sealed.len() / 2).context("a sealed segment")?;
    let name = seg.file_name().context("segment name")?.to_owned();
    let fr = frames(seg)?;
    let (start, end) = fr[fr.len() / 2];
    let damaged: Vec<u64> = std::iter::once(leader)
        .chain(c.ids().filter(|&id| id != leader && id != lagging))
        .take(1 + also_damaged)
        .collect();
    for &id in &damaged {
        flip(&partition_dir(c.broker(id), &topic).join(&name), &[end - 7])?;
    }
    eprintln!("flipped a byte of {name:?} at {start}..{end} on brokers {damaged:?}");
    c.restart(lagging)?;
    Ok((c, topic, leader, lagging, before))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_damaged_where_a_lagging_follower_needs_it_hands_over_and_loses_nothing()
-> anyhow::Result<()> {
    let (c, topic, leader, _, before) = lagging_follower_behind_damage("raft-read", 0).await?;
    // The leader cannot send that range: its Raft read waits, the repair loop hands
    // leadership over and rewrites the range from the third replica, and the follower
    // catches up — the group is never stopped.
    let hwms = c
        .check_replicas_identical(&topic, 1, Duration::from_secs(90))
        .await?;
    ensure!(hwms == [before + 3000], "{hwms:?}, want {}", before + 3000);
    wait_logged(c.broker(leader), "repaired a damaged range").await?;
    produce(&c.bootstrap(), &topic, &format!("{topic}-after"), 500).await?;
    let hwms = c.check_replicas_identical(&topic, 1, T).await?;
    ensure!(hwms == [before + 3500], "{hwms:?} after more writes");
    for id in c.ids() {
        let log = std::fs::read_to_string(c.broker(id).log_path())?;
        ensure!(
            !log.contains("storage failed"),
            "broker {id}'s storage failed: {}",
            c.broker(id).log_tail(30)
        );
    }
    ensure!(c.any_panic().is_none(), "a broker panicked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_healthy_copy_the_follower_waits_writes_go_on_and_brokers_still_stop()
-> anyhow::Result<()> {
    let (mut c, topic, leader, lagging, before) =
        lagging_follower_behind_damage("no-copy", 1).await?;
    // Both replicas that hold the range have it damaged: it is quarantined, never sent as
    // blanks. The two of them still make a quorum, so writes go on.
    wait_logged(c.broker(leader), "damaged range quarantined").await?;
    produce(&c.bootstrap(), &topic, &format!("{topic}-after"), 500).await?;
    let holders: Vec<u64> = c.ids().filter(|&id| id != lagging).collect();
    for &id in &holders {
        let addr = c.broker(id).bootstrap();
        wait_replica(&addr, &topic, T, "every write committed", |d| {
            d.high_watermark == before + 3500
        })
        .await?;
    }
    let d = describe_replica(&c.broker(lagging).bootstrap(), &topic, 0).await?;
    ensure!(
        d.log_end_offset < before + 3000,
        "the lagging follower got past a range no replica holds whole: {d:?}"
    );
    // A Raft read waiting for a repair that cannot come does not hold a broker up.
    for id in holders {
        let since = Instant::now();
        c.broker_mut(id).terminate(Duration::from_secs(5))?;
        eprintln!("broker {id} stopped {:?} after SIGTERM", since.elapsed());
    }
    ensure!(c.any_panic().is_none(), "a broker panicked");
    Ok(())
}
