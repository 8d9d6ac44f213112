//! `repair-bench`: how long a replica takes to repair a whole damaged segment from another
//! replica over the peer plane, next to how long the same restart takes with nothing to
//! repair, and the copy rate against the log's own sequential write rate measured in the
//! same run (the produce phase). It prints figures; it never asserts on time.
//!
//! ```text
//! cargo build --release -p steme-broker -p steme-cli --bins
//! cargo run --release -p steme-tests --example repair_bench -- [--segment-mib 64] [--records 650000] [--verify 0]
//! ```
//!
//! Three brokers on loopback; one topic, one partition, three replicas, `segment.bytes` =
//! the segment size. After producing enough records to seal two segments, a follower is
//! stopped, restarted once cleanly (the baseline), stopped again, and its second segment
//! file is deleted (the whole segment is a damaged range on open). The time from the
//! broker's "repairing from replicas" line to its "repaired a damaged range" line is the
//! repair; the time until it serves again (online, no damage, same high watermark) is also
//! printed. Every phase is bounded in time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use steme_client::{Producer, ProducerConfig};
use steme_tests::cluster::{Cluster, ClusterOptions, describe_replica};
use steme_tests::unique;
use steme_tests::workload::{create_topic_with, produce_all, signed};

const T: Duration = Duration::from_secs(300);

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Points the harness at the binaries next to this example (`<target>/<profile>/`).
fn use_sibling_binaries() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .context("no profile directory")?;
    for (var, name) in [
        ("CARGO_BIN_EXE_steme-broker", "steme-broker"),
        ("CARGO_BIN_EXE_steme", "steme"),
    ] {
        let path = profile.join(name);
        ensure!(
            path.is_file(),
            "{} is missing: cargo build --release -p steme-broker -p steme-cli --bins",
            path.display()
        );
        // SAFETY: set once at start, before any other thread exists.
        unsafe { std::env::set_var(var, path) };
    }
    Ok(())
}

/// The time of the first log line at or after byte `from` that contains `needle`.
fn logged_at(log: &Path, from: usize, needle: &str) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.get(from..)?.lines().find(|l| l.contains(needle))?;
    // "2026-11-29T20:18:56.051075Z ..." (after ANSI colour codes, if any).
    let start = line.find("20")?;
    let stamp = line.get(start..start + 27)?;
    let time = stamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

async fn wait_serving(addr: &str, topic: &str, hwm: u64) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    loop {
        if let Ok(d) = describe_replica(addr, topic, 0).await
            && d.offline.is_none()
            && d.damaged.is_empty()
            && d.high_watermark == hwm
        {
            return Ok(t0.elapsed());
        }
        ensure!(
            t0.elapsed() < T,
            "the replica did not serve again within {T:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    use_sibling_binaries()?;
    let segment_mib = arg("--segment-mib", 64);
    let records = arg("--records", 650_000) as usize;
    // The copy's signatures are verified as produce verifies them (the default); with
    // `--verify 0` the topic does not verify, and the repair checks CRCs and framing only.
    let verify = arg("--verify", 1) != 0;
    let c = Cluster::start(ClusterOptions::new(3)).await?;
    let topic = unique("repair-bench");
    create_topic_with(
        &c.bootstrap(),
        &topic,
        1,
        vec![
            ("segment.bytes".into(), (segment_mib << 20).to_string()),
            ("verify.signatures".into(), verify.to_string()),
        ],
    )
    .await?;
    let assertions = signed(&topic, records, 200)?;
    let producer = Producer::connect(&c.bootstrap(), &topic, ProducerConfig::default()).await?;
    let t0 = Instant::now();
    produce_all(&producer, &assertions).await?;
    let produce_secs = t0.elapsed().as_secs_f64();
    let hwm = c.check_replicas_identical(&topic, 1, T).await?[0];
    let leader = c.wait_for_leader(&topic, 0, None, T).await?;
    let victim = c.ids().find(|&id| id != leader).context("a follower")?;
    let dir = c
        .broker(victim)
        .data_dir()
        .join("topics")
        .join(format!("{topic}-0"));
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    segs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    segs.sort();
    ensure!(
        segs.len() >= 3,
        "two sealed segments wanted: --records more"
    );
    let victim_seg = segs[1].clone();
    let seg_bytes = std::fs::metadata(&victim_seg)?.len();
    let log_bytes: u64 = segs
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let mut c = c;
    let addr_of = |c: &Cluster| c.broker(victim).bootstrap();

    // Baseline: stop and restart with nothing to repair.
    c.broker_mut(victim).terminate(T)?;
    let t0 = Instant::now();
    c.restart(victim)?;
    wait_serving(&addr_of(&c), &topic, hwm).await?;
    let clean = t0.elapsed();

    // The same with the second segment deleted underneath.
    c.broker_mut(victim).terminate(T)?;
    std::fs::remove_file(&victim_seg)?;
    let log = c.broker(victim).log_path();
    let from = std::fs::read_to_string(&log)?.len();
    let t0 = Instant::now();
    c.restart(victim)?;
    wait_serving(&addr_of(&c), &topic, hwm).await?;
    let serving = t0.elapsed();
    let start = logged_at(&log, from, "repairing from replicas");
    let done = logged_at(&log, from, "repaired a damaged range");
    let repair = start.zip(done).map(|(a, b)| b - a);
    let mb = seg_bytes as f64 / 1e6;
    println!(
        "# repair of one damaged segment from a replica (3 brokers, loopback; signatures {})",
        if verify { "verified" } else { "not verified" }
    );
    println!(
        "log: {records} records, {:.0} MB in {} segments; produced at {:.0} MB/s",
        log_bytes as f64 / 1e6,
        segs.len(),
        log_bytes as f64 / 1e6 / produce_secs
    );
    match repair {
        Some(s) => println!(
            "repair of segment {} ({mb:.1} MB): {:.2} s, {:.0} MB/s ({:.2}x the produce rate)",
            victim_seg
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            s,
            mb / s,
            (mb / s) / (log_bytes as f64 / 1e6 / produce_secs)
        ),
        None => println!("repair lines not found in {}", log.display()),
    }
    if let Some(line) = std::fs::read_to_string(&log)?
        .get(from..)
        .and_then(|t| t.lines().find(|l| l.contains("repaired a damaged range")))
    {
        println!("broker log: {line}");
    }
    println!(
        "restart until serving: {:.2} s clean, {:.2} s with the repair",
        clean.as_secs_f64(),
        serving.as_secs_f64()
    );
    Ok(())
}
