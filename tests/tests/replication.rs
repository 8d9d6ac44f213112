//! Replication under faults, with real broker processes on loopback: the leader killed
//! mid-produce, a broker cut off from the others, a broker paused past the election timeout,
//! the whole cluster restarted, and a randomized, seeded schedule of all of these.
//!
//! After each: every acknowledged record is in the log exactly once, at the offset its ack
//! named; HLCs strictly increase with offsets across leader changes; and every replica holds
//! identical bytes (a digest per partition, read from each broker alone).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use steme_client::connection::{Connection, ConnectionConfig};
use steme_client::{Ack, Admin, ClientConfig, ClientError, Producer, Record, TopicOptions};
use steme_protocol::messages::fetch::FetchRequest;
use steme_protocol::messages::list_offsets::{ListOffsetsRequest, OffsetSpec};
use steme_protocol::messages::produce::{Acks, ProduceRequest};
use steme_protocol::{ApiError, BatchBuilder};
use steme_tests::cluster::{Cluster, ClusterOptions, describe_replica};
use steme_tests::workload::{
    Produced, Producing, check_acks_present, check_hlc_increasing, check_log, create_topic,
    create_topic_with, patient, produce_all, read_topic, signed,
};
use steme_tests::{unique, within};

/// Reads the topic back and checks it against the acks; returns the log.
async fn check_topic(
    cluster: &Cluster,
    topic: &str,
    partitions: u32,
    acks: &[Ack],
) -> anyhow::Result<BTreeMap<u32, Vec<Record>>> {
    let hwms = cluster
        .check_replicas_identical(topic, partitions, Duration::from_secs(60))
        .await?;
    let log = read_topic(&cluster.bootstrap(), topic, Duration::from_secs(60)).await?;
    let index = check_log(&log)?;
    check_hlc_increasing(&log)?;
    check_acks_present(&log, acks)?;
    ensure!(
        index.records as u64 == hwms.iter().sum::<u64>(),
        "read {} records, the replicas agree on {hwms:?}",
        index.records
    );
    eprintln!(
        "[check] {topic}: {} acks present once each; replicas identical at {hwms:?}",
        acks.len()
    );
    Ok(log)
}

fn all_acked(p: &Produced) -> anyhow::Result<()> {
    ensure!(
        p.failed == 0 && p.not_sent == 0,
        "{} produce(s) failed, {} not sent; first error: {:?}",
        p.failed,
        p.not_sent,
        p.first_error
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_nothing() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("failover");
        create_topic(&cluster.bootstrap(), &topic, 3).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let producing = Producing::start(producer, signed(&topic, 20_000, 200)?);
        ensure!(
            producing
                .wait_for_acks(3_000, Duration::from_secs(60))
                .await
                >= 3_000,
            "the cluster did not take writes"
        );
        let leader = cluster
            .wait_for_leader(&topic, 0, None, Duration::from_secs(10))
            .await?;
        let before = producing.acked();
        cluster.broker_mut(leader).kill9()?;
        let killed = Instant::now();
        let successor = cluster
            .wait_for_leader(&topic, 0, Some(leader), Duration::from_secs(30))
            .await?;
        let elected = killed.elapsed();
        // Acks arrive in enqueue order, so they resume only once partition 0 does.
        let resumed = producing
            .wait_for_acks(before + 2_000, Duration::from_secs(60))
            .await;
        ensure!(
            resumed >= before + 2_000,
            "writes did not resume after the failover"
        );
        eprintln!(
            "[failover] killed leader {leader}; broker {successor} leads after {elected:?}; \
             writes resumed within {:?}",
            killed.elapsed()
        );
        let produced = producing.finish(Duration::from_secs(120)).await?;
        all_acked(&produced)?;
        // The old leader comes back as a follower and catches up from its own log.
        cluster.restart(leader)?;
        check_topic(&cluster, &topic, 3, &produced.acks).await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_cannot_commit_and_its_tail_is_discarded() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let cluster = Cluster::start(ClusterOptions {
            proxied: true,
            ..ClusterOptions::new(3)
        })
        .await?;
        let topic = unique("isolated");
        create_topic(&cluster.bootstrap(), &topic, 1).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let first = produce_all(&producer, &signed(&topic, 2_000, 200)?).await?;
        let leader = cluster
            .wait_for_leader(&topic, 0, None, Duration::from_secs(10))
            .await?;

        cluster.isolate(leader);
        // A write straight to the cut-off leader: it can append it, never commit it.
        let lost = signed(&format!("{topic}-minority"), 1, 200)?.remove(0);
        let mut batch = BatchBuilder::with_capacity(512);
        batch.push(&lost);
        let conn = Connection::connect(
            &cluster.broker(leader).bootstrap(),
            &ConnectionConfig::default(),
        )
        .await?;
        let request = ProduceRequest {
            topic: topic.clone(),
            partition: 0,
            acks: Acks::All,
            timeout_ms: 3_000,
            causality: None,
            batch: batch.finish(),
        };
        let answer = tokio::time::timeout(
            Duration::from_secs(4),
            conn.call(&request, Duration::from_secs(4)),
        )
        .await;
        ensure!(
            !matches!(answer, Ok(Ok(_))),
            "the isolated leader acknowledged a write: {answer:?}"
        );
        eprintln!("[partition] the isolated leader {leader} did not acknowledge: {answer:?}");

        // The majority elects a leader and goes on.
        let producer =
            Producer::connect(&cluster.bootstrap_except(leader), &topic, patient()).await?;
        let second = produce_all(
            &producer,
            &signed(&format!("{topic}-majority"), 2_000, 200)?,
        )
        .await
        .context("the majority did not take writes")?;

        cluster.heal();
        let acks: Vec<Ack> = first.into_iter().chain(second).collect();
        let log = check_topic(&cluster, &topic, 1, &acks).await?;
        ensure!(
            log.values().flatten().all(|r| r.id() != lost.id()),
            "the write the isolated leader never acknowledged is in the log"
        );
        ensure!(log[&0].len() == acks.len(), "records beyond the acked ones");
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_and_a_full_restart_lose_nothing() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("paused");
        create_topic(&cluster.bootstrap(), &topic, 3).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let producing = Producing::start(producer, signed(&topic, 12_000, 200)?);
        producing
            .wait_for_acks(2_000, Duration::from_secs(60))
            .await;
        let leader = cluster
            .wait_for_leader(&topic, 0, None, Duration::from_secs(10))
            .await?;
        // Stopped for longer than the election timeout (at most 1.6 s): the others elect
        // a new leader; when it resumes it must step down, not serve as a second leader.
        cluster.broker(leader).signal(libc::SIGSTOP)?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        cluster.broker(leader).signal(libc::SIGCONT)?;
        let produced = producing.finish(Duration::from_secs(120)).await?;
        all_acked(&produced)?;
        let before = check_topic(&cluster, &topic, 3, &produced.acks).await?;

        // Stop every broker at once, without warning, and start them again.
        for id in cluster.ids().collect::<Vec<_>>() {
            cluster.broker_mut(id).kill9()?;
        }
        for id in cluster.ids().collect::<Vec<_>>() {
            cluster.restart(id)?;
        }
        for p in 0..3 {
            cluster
                .wait_for_leader(&topic, p, None, Duration::from_secs(30))
                .await?;
        }
        let after = check_topic(&cluster, &topic, 3, &produced.acks).await?;
        for (p, records) in &before {
            ensure!(
                after[p].len() == records.len(),
                "partition {p}: {} records before the restart, {} after",
                records.len(),
                after[p].len()
            );
        }
        Ok(())
    })
    .await
}

/// Asks broker `addr` alone for the end of `topic`/0 and for the records at `offset`.
async fn ask_end_and_fetch(
    addr: &str,
    topic: &str,
    offset: u64,
) -> anyhow::Result<(Result<u64, ClientError>, Result<usize, ClientError>)> {
    let conn = Connection::connect(addr, &ConnectionConfig::default()).await?;
    let timeout = Duration::from_secs(5);
    let end = conn
        .call(
            &ListOffsetsRequest {
                topic: topic.to_owned(),
                partition: 0,
                spec: OffsetSpec::Latest,
            },
            timeout,
        )
        .await
        .map(|r| r.offset);
    let fetched = conn
        .call(
            &FetchRequest {
                topic: topic.to_owned(),
                partition: 0,
                offset,
                max_bytes: 1 << 20,
                max_wait_ms: 0,
            },
            timeout,
        )
        .await
        .map(|r| r.records.len());
    Ok((end, fetched))
}

fn is_not_leader<T: std::fmt::Debug>(r: &Result<T, ClientError>) -> bool {
    matches!(r, Err(ClientError::Api(ApiError::NotLeader { .. })))
}

/// Only the leader, once it has applied an entry of its own term, says where the log ends: a
/// follower, or a replica restarted without a quorum (its applied state is written lazily, so
/// its high watermark may lag what was acknowledged), answers NotLeader instead of an end that
/// would hide acknowledged records from a consumer reading "up to the end".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_serving_leader_answers_where_the_log_ends() -> anyhow::Result<()> {
    within(Duration::from_secs(180), async {
        let mut cluster = Cluster::start(ClusterOptions::new(3)).await?;
        let topic = unique("ends");
        create_topic(&cluster.bootstrap(), &topic, 1).await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let acks = produce_all(&producer, &signed(&topic, 2_000, 200)?).await?;
        let end = acks.iter().map(|a| a.offset + 1).max().context("no acks")?;
        let hwm = cluster.wait_converged(&topic, 0, Duration::from_secs(30)).await?;
        ensure!(hwm == end, "converged at {hwm}, acknowledged up to {end}");

        // Ask every broker, until one serves as leader (leadership may be moving, say to the
        // preferred replica): no broker ever answers another end, and the others refuse.
        let deadline = Instant::now() + Duration::from_secs(15);
        let (leader, follower) = loop {
            let mut serving = Vec::new();
            let mut refusing = Vec::new();
            for id in cluster.ids() {
                let (answer, at_end) =
                    ask_end_and_fetch(&cluster.broker(id).bootstrap(), &topic, end).await?;
                let wrong_end = answer.as_ref().is_ok_and(|e| *e != end);
                let past_end = at_end.as_ref().is_ok_and(|n| *n != 0);
                let other_error = (answer.is_err() && !is_not_leader(&answer))
                    || (at_end.is_err() && !is_not_leader(&at_end));
                ensure!(
                    !wrong_end && !past_end && !other_error,
                    "broker {id} answered {answer:?} for the end and {at_end:?} at it; \
                     acknowledged up to {end}"
                );
                match (answer.is_ok(), at_end.is_ok()) {
                    (true, true) => serving.push(id),
                    (false, false) => refusing.push(id),
                    // The two calls straddled a change of leadership, or the new leader's
                    // first apply: ask again.
                    _ => {}
                }
            }
            if let ([leader], [follower, ..]) = (&serving[..], &refusing[..]) {
                break (*leader, *follower);
            }
            ensure!(
                Instant::now() < deadline,
                "no single serving leader within 15 s: {serving:?} serve, {refusing:?} refuse"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (_, below) =
            ask_end_and_fetch(&cluster.broker(follower).bootstrap(), &topic, 0).await?;
        ensure!(
            below.as_ref().is_ok_and(|n| *n > 0),
            "follower {follower} answered {below:?} for committed records"
        );

        // Every broker down at once; one back, alone: it cannot lead, so it must not answer.
        for id in cluster.ids().collect::<Vec<_>>() {
            cluster.broker_mut(id).kill9()?;
        }
        cluster.restart(leader)?;
        let addr = cluster.broker(leader).bootstrap();
        for _ in 0..10 {
            let (answer, at_end) = ask_end_and_fetch(&addr, &topic, end).await?;
            ensure!(
                is_not_leader(&answer) && is_not_leader(&at_end),
                "broker {leader}, restarted without a quorum, answered {answer:?} for the end and {at_end:?} at it"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        cluster.restart(follower)?;
        let log = read_topic(&cluster.bootstrap(), &topic, Duration::from_secs(60)).await?;
        check_acks_present(&log, &acks)?;
        ensure!(log[&0].len() as u64 == end, "read {} records, acknowledged {end}", log[&0].len());
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_retention_installs_the_snapshot_and_continues() -> anyhow::Result<()> {
    within(Duration::from_secs(300), async {
        let mut opts = ClusterOptions::new(3);
        if let Some(toml) = &mut opts.broker.config_toml {
            toml.push_str("retention_check_ms = 200\n");
        }
        let mut cluster = Cluster::start(opts).await?;
        let topic = unique("retained");
        let admin = Admin::connect(&cluster.bootstrap(), ClientConfig::default()).await?;
        let configs = [("segment.bytes", "16384"), ("retention.bytes", "65536")];
        admin
            .create_topic(
                &topic,
                1,
                TopicOptions {
                    replication_factor: 3,
                    configs: configs.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec(),
                },
            )
            .await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        produce_all(&producer, &signed(&topic, 200, 200)?).await?;
        let leader = cluster
            .wait_for_leader(&topic, 0, None, Duration::from_secs(10))
            .await?;
        let follower = cluster.ids().find(|&id| id != leader).expect("3 brokers");
        cluster.broker_mut(follower).kill9()?;
        let t = Instant::now();
        // Far more than retention keeps, while the follower is down.
        let later = produce_all(&producer, &signed(&format!("{topic}-later"), 3_000, 200)?).await?;
        eprintln!(
            "[retention] 3000 more acked in {:?} with broker {follower} down",
            t.elapsed()
        );
        let stopped_at = 200;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let d = describe_replica(&cluster.broker(leader).bootstrap(), &topic, 0).await?;
            if d.log_start_offset > stopped_at {
                eprintln!(
                    "[retention] leader's log now starts at {}",
                    d.log_start_offset
                );
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "retention did not move the log start: {d:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster.restart(follower)?;
        let restarted = Instant::now();
        let hwms = cluster
            .check_replicas_identical(&topic, 1, Duration::from_secs(60))
            .await?;
        let theirs = describe_replica(&cluster.broker(follower).bootstrap(), &topic, 0).await?;
        let ours = describe_replica(&cluster.broker(leader).bootstrap(), &topic, 0).await?;
        ensure!(
            theirs.log_start_offset >= stopped_at && theirs.high_watermark == hwms[0],
            "the follower did not continue from the snapshot: {theirs:?} vs leader {ours:?}"
        );
        ensure!(
            hwms[0] == 3_200,
            "high watermark {} after 3200 acks",
            hwms[0]
        );
        let last = later.iter().map(|a| a.offset).max().unwrap_or(0);
        ensure!(last == 3_199, "the highest ack is at {last}");
        eprintln!(
            "[retention] follower {follower} caught up from the snapshot in {:?}: log {}..{}",
            restarted.elapsed(),
            theirs.log_start_offset,
            theirs.high_watermark
        );
        Ok(())
    })
    .await
}

/// A small deterministic generator (SplitMix64), so a schedule replays from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Flips one bit of a random frame of a random sealed segment in a partition directory;
/// `None` if it has no sealed segment yet.
fn corrupt_sealed_segment(
    dir: &std::path::Path,
    rng: &mut Rng,
) -> anyhow::Result<Option<(std::path::PathBuf, usize)>> {
    use steme_segments::format::{FRAME_HEADER_LEN, FrameHeader, SEGMENT_HEADER_LEN};
    let mut segs: Vec<std::path::PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    segs.sort();
    segs.pop(); // the active segment
    if segs.is_empty() {
        return Ok(None);
    }
    let seg = segs[rng.below(segs.len() as u64) as usize].clone();
    let mut bytes = std::fs::read(&seg)?;
    let mut frames = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(h) = bytes.get(pos..).and_then(FrameHeader::peek) {
        let end = pos + FRAME_HEADER_LEN + h.payload_len as usize;
        frames.push((pos, end));
        pos = end;
    }
    let Some(&(start, end)) = frames.get(rng.below(frames.len().max(1) as u64) as usize) else {
        return Ok(None);
    };
    let at = start + rng.below((end - start) as u64) as usize;
    bytes[at] ^= 1 << rng.below(8);
    // In place, as a failing disk would: the broker's mapping sees the change.
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)?
        .write_all_at(&bytes[at..at + 1], at as u64)?;
    Ok(Some((seg, at)))
}

/// Faults in a random order for `STEME_FAULT_SECS` seconds (default 20), seeded by
/// `STEME_FAULT_SEED` (default: the clock; printed, so a failure can be replayed), while a
/// producer writes; then the checks above. `cargo test -p steme-tests --test replication
/// randomized -- --nocapture` with a longer time is the soak run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_randomized_fault_schedule_keeps_every_ack() -> anyhow::Result<()> {
    let seed = std::env::var("STEME_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let secs: u64 = std::env::var("STEME_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!(
        "[faults] seed {seed}, {secs} s (STEME_FAULT_SEED={seed} STEME_FAULT_SECS={secs} replays it)"
    );
    within(Duration::from_secs(secs + 600), async {
        let mut rng = Rng(seed);
        let mut opts = ClusterOptions {
            proxied: true,
            ..ClusterOptions::new(3)
        };
        // Damage is found by reads and by a brisk scrubber, and repaired from replicas.
        opts.broker.args = ["--scrub-bytes-per-sec", "67108864", "--scrub-interval-ms", "0"]
            .map(String::from)
            .to_vec();
        let mut cluster = Cluster::start(opts).await?;
        let topic = unique("chaos");
        const PARTITIONS: u32 = 3;
        create_topic_with(
            &cluster.bootstrap(),
            &topic,
            PARTITIONS,
            vec![("segment.bytes".into(), "262144".into())],
        )
        .await?;
        let producer = Producer::connect(&cluster.bootstrap(), &topic, patient()).await?;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut acks = Vec::new();
        let mut round = 0;
        while Instant::now() < deadline {
            round += 1;
            let producing = Producing::start(
                producer.clone(),
                signed(&format!("{topic}-r{round}"), 3_000, 200)?,
            );
            let victim = 1 + rng.below(3);
            let hold = Duration::from_millis(500 + rng.below(2_500));
            let fault = rng.below(5);
            tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
            match fault {
                0 => {
                    eprintln!("[faults] round {round}: kill -9 broker {victim} for {hold:?}");
                    cluster.broker_mut(victim).kill9()?;
                    tokio::time::sleep(hold).await;
                    cluster.restart(victim)?;
                }
                1 => {
                    eprintln!("[faults] round {round}: isolate broker {victim} for {hold:?}");
                    cluster.isolate(victim);
                    tokio::time::sleep(hold).await;
                    cluster.heal();
                }
                2 => {
                    eprintln!("[faults] round {round}: SIGSTOP broker {victim} for {hold:?}");
                    cluster.broker(victim).signal(libc::SIGSTOP)?;
                    tokio::time::sleep(hold).await;
                    cluster.broker(victim).signal(libc::SIGCONT)?;
                }
                3 => {
                    // Bit rot on one replica (a minority): a byte of a sealed segment,
                    // under the running broker.
                    let p = rng.below(u64::from(PARTITIONS)) as u32;
                    let dir = cluster
                        .broker(victim)
                        .data_dir()
                        .join("topics")
                        .join(format!("{topic}-{p}"));
                    match corrupt_sealed_segment(&dir, &mut rng)? {
                        Some((seg, at)) => eprintln!(
                            "[faults] round {round}: flip byte {at} of {} on broker {victim}",
                            seg.display()
                        ),
                        None => eprintln!(
                            "[faults] round {round}: no sealed segment of {topic}-{p} on broker {victim} yet"
                        ),
                    }
                    tokio::time::sleep(hold).await;
                }
                _ => {
                    let p = rng.below(u64::from(PARTITIONS)) as u32;
                    let leader = cluster
                        .wait_for_leader(&topic, p, None, Duration::from_secs(30))
                        .await?;
                    eprintln!("[faults] round {round}: kill -9 the leader of {p}, broker {leader}, for {hold:?}");
                    cluster.broker_mut(leader).kill9()?;
                    tokio::time::sleep(hold).await;
                    cluster.restart(leader)?;
                }
            }
            let produced = producing
                .finish(Duration::from_secs(300))
                .await
                .with_context(|| format!("round {round} (seed {seed})"))?;
            all_acked(&produced).with_context(|| format!("round {round} (seed {seed})"))?;
            acks.extend(produced.acks);
        }
        check_topic(&cluster, &topic, PARTITIONS, &acks)
            .await
            .with_context(|| format!("seed {seed}"))?;
        eprintln!("[faults] {round} rounds, {} acks, all present (seed {seed})", acks.len());
        Ok(())
    })
    .await
}
