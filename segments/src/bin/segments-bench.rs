//! `segments-bench`: prints throughput figures for the partition log next to this
//! machine's plain ceiling for the same bytes. It never asserts on time.
//!
//! ```text
//! cargo run --release -p steme-segments --bin segments-bench -- [--reopen-gb 2] [--quick]
//! ```
//!
//! Workload: record batches of 64 KiB holding 200-byte records (not signed — the log does
//! not verify signatures; the records have the canonical shape). Every phase is bounded in
//! bytes and in time. Data goes under `$TMPDIR` (or `/tmp`) and is removed at the end.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use steme_protocol::batch::patch_header;
use steme_protocol::{AssertionId, BatchBuilder, RecordBatch};
use steme_segments::format::FRAME_HEADER_LEN;
use steme_segments::{FlushPolicy, Log, LogConfig, Payload, RealIo};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const BATCH_BYTES: usize = 64 * 1024;
const RECORD_BYTES: usize = 200;
/// A record is a u32 length, a 64-byte signature and the assertion.
const ASSERTION_BYTES: usize = RECORD_BYTES - 4 - 64;
const POOL_BATCHES: usize = 512;

struct Args {
    reopen_gb: f64,
    quick: bool,
}

fn args() -> Args {
    let mut a = Args {
        reopen_gb: 2.0,
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--reopen-gb" => {
                a.reopen_gb = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.reopen_gb)
            }
            "--quick" => a.quick = true,
            other => eprintln!("ignoring unknown argument {other}"),
        }
    }
    a
}

/// Distinct batches (unique assertion bytes), reused cyclically.
fn batch_pool(seed: u64) -> Vec<BytesMut> {
    let per_batch = (BATCH_BYTES - 48) / RECORD_BYTES;
    (0..POOL_BATCHES)
        .map(|b| {
            let mut bb = BatchBuilder::with_capacity(BATCH_BYTES);
            for r in 0..per_batch {
                let mut a = vec![1u8];
                a.extend([9u8; 32]);
                a.extend(seed.to_le_bytes());
                a.extend((b as u64).to_le_bytes());
                a.extend((r as u64).to_le_bytes());
                a.resize(ASSERTION_BYTES, 0x42);
                bb.push_raw(&a, &[7u8; 64]);
            }
            let mut buf = BytesMut::from(&bb.finish()[..]);
            patch_header(&mut buf, 0, 1, 1);
            buf
        })
        .collect()
}

fn fs_type(path: &Path) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut best = (0usize, "unknown".to_string());
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 2 && path.starts_with(f[1]) && f[1].len() >= best.0 {
            best = (f[1].len(), f[2].to_string());
        }
    }
    best.1
}

struct Phase {
    bytes: u64,
    records: u64,
    secs: f64,
    /// Records whose ids the concurrent indexer hashed (the rest were hashed at roll).
    indexed: u64,
}

impl Phase {
    fn mbps(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e6
    }
}

#[derive(Clone, Copy, Debug)]
enum Pattern {
    EveryAppend,
    Group,
    None,
}

const GROUP_MS: u64 = 1;
const GROUP_BYTES: u64 = 64 * 1024;

/// Our log: append the pool cyclically under a flush policy until `max_bytes` or
/// `max_time`, then wait until everything is durable (except for `None`).
fn run_log(dir: &Path, pattern: Pattern, max_bytes: u64, max_time: Duration) -> BoxResult<Phase> {
    let flush = match pattern {
        Pattern::EveryAppend => FlushPolicy::EveryAppend,
        Pattern::Group => FlushPolicy::Interval {
            ms: GROUP_MS,
            bytes: GROUP_BYTES,
        },
        Pattern::None => FlushPolicy::Never,
    };
    let cfg = LogConfig {
        flush,
        ..LogConfig::default()
    };
    let (mut log, _) = Log::open(dir, cfg, Arc::new(RealIo))?;
    let mut pool = batch_pool(1);
    let (mut bytes, mut records, mut index) = (0u64, 0u64, 0u64);
    let indexer = Indexer::start(log.reader());
    let t0 = Instant::now();
    while bytes < max_bytes && t0.elapsed() < max_time {
        let b = &mut pool[index as usize % POOL_BATCHES];
        let a = log.append(index, 1, Payload::Batch(b))?;
        bytes += (b.len() + FRAME_HEADER_LEN) as u64;
        records += a.end_offset - a.base_offset;
        index += 1;
    }
    if let Pattern::Group = pattern {
        log.flusher()
            .wait_durable(index - 1, Duration::from_secs(60))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let indexed = indexer.stop();
    drop(log);
    fs::remove_dir_all(dir)?;
    Ok(Phase {
        bytes,
        records,
        secs,
        indexed,
    })
}

/// Stands in for the broker's apply loop: keeps the id index current from its own thread
/// (`LogReader::index_ids`), as the Raft state machine would after each apply.
struct Indexer {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<u64>,
}

impl Indexer {
    fn start(r: steme_segments::LogReader) -> Indexer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                n += r.index_ids() as u64;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        });
        Indexer { stop, handle }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

/// The plain ceiling: `write` of the same frame bytes to one file, synced with the same
/// pattern (inline, from a second thread every 1 ms / 64 KiB, or never).
fn run_plain(dir: &Path, pattern: Pattern, max_bytes: u64, max_time: Duration) -> BoxResult<Phase> {
    fs::create_dir_all(dir)?;
    let path = dir.join("plain.dat");
    let file = Arc::new(File::create(&path)?);
    let pool = batch_pool(2);
    let header = [0u8; FRAME_HEADER_LEN];
    let written = Arc::new(AtomicU64::new(0));
    let synced = Arc::new((Mutex::new(0u64), Condvar::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let syncer = matches!(pattern, Pattern::Group).then(|| {
        let (file, written, synced, stop) =
            (file.clone(), written.clone(), synced.clone(), stop.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut last_sync = Instant::now();
            loop {
                let w = written.load(Ordering::Acquire);
                let s = *synced.0.lock().unwrap_or_else(|e| e.into_inner());
                if w > s
                    && (w - s >= GROUP_BYTES
                        || last_sync.elapsed() >= Duration::from_millis(GROUP_MS))
                {
                    file.sync_data()?;
                    last_sync = Instant::now();
                    *synced.0.lock().unwrap_or_else(|e| e.into_inner()) = w;
                    synced.1.notify_all();
                } else if stop.load(Ordering::Acquire) && w == s {
                    return Ok(());
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        })
    });
    let (mut bytes, mut records, mut i) = (0u64, 0u64, 0usize);
    let t0 = Instant::now();
    let mut f = &*file;
    while bytes < max_bytes && t0.elapsed() < max_time {
        let b = &pool[i % POOL_BATCHES];
        f.write_all(&header)?;
        f.write_all(b)?;
        bytes += (b.len() + FRAME_HEADER_LEN) as u64;
        records += u64::from(RecordBatch::new(b.clone().freeze())?.record_count());
        written.store(bytes, Ordering::Release);
        if let Pattern::EveryAppend = pattern {
            file.sync_data()?;
        }
        i += 1;
    }
    stop.store(true, Ordering::Release);
    if let Some(h) = syncer {
        h.join().map_err(|_| "syncer panicked")??;
    }
    let secs = t0.elapsed().as_secs_f64();
    fs::remove_dir_all(dir)?;
    Ok(Phase {
        bytes,
        records,
        secs,
        indexed: 0,
    })
}

/// Writes back every dirty page on the machine, so a phase does not pay for the last one.
/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    // /proc/thread-self/stat fields 14 and 15: user and system time in clock ticks.
    let stat = fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields after ")" start at field 3 (state), so utime (14) is index 11.
    (ticks(11) + ticks(12)) / 100.0
}

fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn fill_log(dir: &Path, gb: f64, cfg: LogConfig) -> BoxResult<(Log, u64, Vec<AssertionId>)> {
    let (mut log, _) = Log::open(dir, cfg, Arc::new(RealIo))?;
    let mut pool = batch_pool(3);
    let target = (gb * 1e9) as u64;
    let (mut bytes, mut index) = (0u64, 0u64);
    while bytes < target {
        let b = &mut pool[index as usize % POOL_BATCHES];
        log.append(index, 1, Payload::Batch(b))?;
        bytes += (b.len() + FRAME_HEADER_LEN) as u64;
        index += 1;
    }
    let ids = pool
        .iter()
        .flat_map(|b| {
            RecordBatch::new(b.clone().freeze())
                .map(|rb| rb.records().map(|r| r.id()).collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    Ok((log, bytes, ids))
}

fn main() -> BoxResult<()> {
    let args = args();
    let base = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let root = base.join(format!("steme-segments-bench-{}", std::process::id()));
    fs::create_dir_all(&root)?;
    let fstype = fs_type(&root);
    println!("# steme-segments bench");
    println!(
        "data dir: {} (filesystem: {fstype}{})",
        root.display(),
        if fstype == "tmpfs" {
            " — WARNING: tmpfs, fsync is free and figures are not disk figures"
        } else {
            ", not tmpfs"
        }
    );
    println!(
        "workload: {} KiB batches of {}-byte records ({} records/batch), pool of {} distinct batches",
        BATCH_BYTES / 1024,
        RECORD_BYTES,
        (BATCH_BYTES - 48) / RECORD_BYTES,
        POOL_BATCHES
    );
    let result = run(&root, &args);
    let _ = fs::remove_dir_all(&root);
    result
}

fn run(root: &Path, args: &Args) -> BoxResult<()> {
    let scale = if args.quick { 4 } else { 1 };
    println!();
    println!("## append (ours vs plain write + fdatasync of the same bytes, same flush pattern)");
    println!("(ours runs a second thread indexing ids as the apply loop would; ids% = share of");
    println!(" appended records it hashed while appends ran — the append path never hashes,");
    println!(" what is left is indexed by the next index_ids or lookup)");
    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>12} {:>7} {:>6}",
        "policy", "MB/s", "records/s", "plain MB/s", "plain rec/s", "ratio", "ids%"
    );
    for (name, pattern, max_bytes, max_secs) in [
        (
            "flush every append",
            Pattern::EveryAppend,
            64u64 << 20,
            3u64,
        ),
        ("group commit 1 ms / 64 KiB", Pattern::Group, 256 << 20, 3),
        ("no flush", Pattern::None, 1 << 30, 4),
    ] {
        let max_bytes = max_bytes / scale;
        let max_time = Duration::from_secs(max_secs);
        // Best of two interleaved runs each, every run starting with no dirty pages left
        // over from the previous one (the disk is shared and noisy).
        let mut plain: Option<Phase> = None;
        let mut ours: Option<Phase> = None;
        for _ in 0..2 {
            settle();
            let p = run_plain(&root.join("plain"), pattern, max_bytes, max_time)?;
            if plain.as_ref().is_none_or(|b| p.mbps() > b.mbps()) {
                plain = Some(p);
            }
            settle();
            let o = run_log(&root.join("log"), pattern, max_bytes, max_time)?;
            if ours.as_ref().is_none_or(|b| o.mbps() > b.mbps()) {
                ours = Some(o);
            }
        }
        let (plain, ours) = (plain.ok_or("no run")?, ours.ok_or("no run")?);
        println!(
            "{:<28} {:>10.1} {:>12.0} {:>10.1} {:>12.0} {:>7.2} {:>5.0}%",
            name,
            ours.mbps(),
            ours.records as f64 / ours.secs,
            plain.mbps(),
            plain.records as f64 / plain.secs,
            ours.mbps() / plain.mbps(),
            100.0 * ours.indexed as f64 / ours.records.max(1) as f64
        );
    }

    // Reads and lookups on a log of unique records spread over several segments.
    let read_dir = root.join("read");
    let cfg = LogConfig {
        flush: FlushPolicy::Never,
        segment_bytes: 8 << 20,
        ..LogConfig::default()
    };
    let pool_gb = (POOL_BATCHES * BATCH_BYTES) as f64 / 1e9;
    let (log, bytes, ids) = fill_log(&read_dir, pool_gb, cfg)?;
    let r = log.reader();
    let segments = fs::read_dir(&read_dir)?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "log"))
        })
        .count();
    println!();
    println!(
        "## read by offset (zero copy, page cache): {:.0} MB log in {segments} segments",
        bytes as f64 / 1e6,
    );
    let end = r.log_end_offset();
    let rounds = 8 / scale.min(8);
    let t0 = Instant::now();
    let mut got = 0u64;
    for _ in 0..rounds {
        let mut off = 0;
        while off < end {
            let read = r.read_from_offset(off, 1 << 20, end)?;
            got += read.bytes;
            off = read.next_offset;
        }
    }
    let slice_secs = t0.elapsed().as_secs_f64();
    // Touch every byte (CRC of each batch, what a consumer's validation costs).
    let t0 = Instant::now();
    let mut touched = 0u64;
    let mut sink = 0u32;
    for _ in 0..rounds {
        let mut off = 0;
        while off < end {
            let read = r.read_from_offset(off, 1 << 20, end)?;
            for b in &read.batches {
                sink ^= crc32fast::hash(b);
            }
            touched += read.bytes;
            off = read.next_offset;
        }
    }
    let touch_secs = t0.elapsed().as_secs_f64();
    // Ceiling: memcpy of the same bytes.
    let all = r.read_from_offset(0, u64::MAX, end)?;
    let total: usize = all.batches.iter().map(|b| b.len()).sum();
    let mut dst = vec![0u8; total];
    dst.fill(1); // fault the pages in before timing
    let t0 = Instant::now();
    for _ in 0..rounds {
        let mut at = 0;
        for b in &all.batches {
            dst[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        std::hint::black_box(&dst);
    }
    let memcpy_secs = t0.elapsed().as_secs_f64();
    let memcpy_gbps = (total as f64 * rounds as f64) / memcpy_secs / 1e9;
    let slice_gbps = got as f64 / slice_secs / 1e9;
    let touch_gbps = touched as f64 / touch_secs / 1e9;
    println!(
        "read_from_offset, 1 MiB budget (slices only): {slice_gbps:>8.2} GB/s   ratio to memcpy {:.2}",
        slice_gbps / memcpy_gbps
    );
    println!(
        "read_from_offset + crc32 of every batch:      {touch_gbps:>8.2} GB/s   ratio to memcpy {:.2}",
        touch_gbps / memcpy_gbps
    );
    println!(
        "memcpy of the same bytes (ceiling):           {memcpy_gbps:>8.2} GB/s  (sink {sink:x})"
    );
    // The scrubber's step: every frame re-verified as reads verify it, one thread.
    let t0 = Instant::now();
    let cpu0 = thread_cpu();
    let mut scrubbed = 0u64;
    for _ in 0..rounds {
        let mut at = r.first_index();
        loop {
            let step = r.scrub(at, 1 << 20);
            scrubbed += step.bytes;
            if step.reached_end {
                break;
            }
            at = step.next_index;
        }
    }
    let scrub_secs = t0.elapsed().as_secs_f64();
    let scrub_cpu = thread_cpu() - cpu0;
    let scrub_gbps = scrubbed as f64 / scrub_secs / 1e9;
    println!(
        "scrub, 1 MiB steps (checks every frame):      {scrub_gbps:>8.2} GB/s   ratio to memcpy {:.2}; \
         {:.1} ms of CPU per GB, so the default 32 MiB/s costs {:.2} % of a core",
        scrub_gbps / memcpy_gbps,
        scrub_cpu * 1e3 / (scrubbed as f64 / 1e9),
        100.0 * scrub_cpu / (scrubbed as f64) * (32 << 20) as f64
    );

    println!();
    println!(
        "## id index: {} distinct records in {} sealed segments + the active one",
        ids.len(),
        segments - 1
    );
    let n = (200_000 / scale) as usize;
    let t0 = Instant::now();
    let mut hits = 0usize;
    for i in 0..n {
        let id = &ids[(i.wrapping_mul(2654435761)) % ids.len()];
        hits += r.lookup_id(id).is_some() as usize;
    }
    let hit_rate = n as f64 / t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut misses = 0usize;
    for i in 0..n {
        let id = AssertionId::of(&(i as u64).to_le_bytes());
        misses += r.lookup_id(&id).is_none() as usize;
    }
    let miss_rate = n as f64 / t0.elapsed().as_secs_f64();
    println!("lookups of present ids: {hit_rate:>10.0} /s  ({hits}/{n} found)");
    println!("lookups of absent ids:  {miss_rate:>10.0} /s  ({misses}/{n} absent)");
    drop(r);
    drop(log);
    fs::remove_dir_all(&read_dir)?;

    println!();
    let gb = args.reopen_gb / scale as f64;
    println!("## reopen a {gb:.2} GB log (128 MiB segments)");
    let reopen_dir = root.join("reopen");
    let t0 = Instant::now();
    let (mut log, bytes, _) = fill_log(
        &reopen_dir,
        gb,
        LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        },
    )?;
    log.flush()?;
    let fill_secs = t0.elapsed().as_secs_f64();
    println!(
        "filled {:.2} GB in {fill_secs:.1} s ({:.0} MB/s, no flush until the end)",
        bytes as f64 / 1e9,
        bytes as f64 / fill_secs / 1e6
    );
    // Crash-like: drop without close; the active segment is scanned on open.
    drop(log);
    let t0 = Instant::now();
    let (log, report) = Log::open(&reopen_dir, LogConfig::default(), Arc::new(RealIo))?;
    let crash_secs = t0.elapsed().as_secs_f64();
    println!(
        "reopen after crash (no close): {:>8.1} ms  ({} segments, scanned {:.1} MB in {} segment(s))",
        crash_secs * 1e3,
        report.segments,
        report.scanned_bytes as f64 / 1e6,
        report.scanned_segments.len()
    );
    log.close()?;
    let t0 = Instant::now();
    let (log, report) = Log::open(&reopen_dir, LogConfig::default(), Arc::new(RealIo))?;
    let clean_secs = t0.elapsed().as_secs_f64();
    println!(
        "reopen after clean close:      {:>8.1} ms  (scanned {} bytes)",
        clean_secs * 1e3,
        report.scanned_bytes
    );
    drop(log);
    fs::remove_dir_all(&reopen_dir)?;
    Ok(())
}
