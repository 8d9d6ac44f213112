//! Protocol benchmark: prints records/s and MB/s for the codec paths every record takes.
//!
//! ```sh
//! cargo run --release -p steme-protocol --example protocol_bench
//! ```
//!
//! Measures, on 200-byte canonical assertions in 64 KiB batches: building and CRC-ing
//! batches; validating and iterating them zero-copy; BLAKE3 ids; Ed25519 sign, verify and
//! batch verify (64); and a plain `memcpy` of the same bytes, to print iteration as a ratio
//! to the machine's copy bandwidth measured in the same run. Each figure runs for about
//! `--secs` seconds (default 1), bounded in iterations too.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use steme_protocol::assertion::{BatchVerifier, VERIFY_CHUNK, dalek_verify_batch, verify_one};
use steme_protocol::batch::validate;
use steme_protocol::{
    Assertion, AssertionId, BatchBuilder, RecordBatch, SignedAssertion, SigningKey, Value,
};

const BATCH_BYTES: usize = 64 * 1024;

fn assertion(i: u64) -> Assertion {
    Assertion {
        subject: format!("urn:steme:bench:{i:08}"),
        predicate: "schema:description".into(),
        object: Value::Text("x".repeat(100)),
        source: "bench".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_764_000_000_000 + i,
    }
}

/// Runs `f` repeatedly for about `secs` (at most `max_iters` times); returns iterations
/// and elapsed time.
fn timed(secs: f64, max_iters: u64, mut f: impl FnMut()) -> (u64, Duration) {
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut n = 0;
    while n < max_iters && (n == 0 || start.elapsed() < budget) {
        f();
        n += 1;
    }
    (n, start.elapsed())
}

fn report(name: &str, op: &str, records: u64, bytes: u64, elapsed: Duration) -> f64 {
    let s = elapsed.as_secs_f64();
    let mbps = bytes as f64 / s / 1e6;
    println!(
        "{name:<34} {:>12.0} records/s {:>10.1} MB/s",
        records as f64 / s,
        mbps
    );
    println!(
        "RESULT peer=steme op={op} records_per_s={:.0} mb_per_s={:.1} n={records} secs={s:.2}",
        records as f64 / s,
        mbps
    );
    mbps
}

fn main() {
    let mut secs = 1.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).unwrap_or(1.0),
            "-h" | "--help" => {
                println!("usage: protocol_bench [--secs S]");
                return;
            }
            other => {
                eprintln!("error: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }

    let key = SigningKey::from_bytes(&[42; 32]);
    let drafts: Vec<Assertion> = (0..4096).map(assertion).collect();
    println!("# 200-byte assertions, 64 KiB batches, {secs} s per figure");

    // Signing, reported separately (a benchmark of the broker signs before the clock starts).
    let mut signed: Vec<SignedAssertion> = Vec::with_capacity(drafts.len());
    let start = Instant::now();
    for d in &drafts {
        signed.push(d.sign(&key).expect("valid"));
    }
    let record_len = signed[0].canonical().len();
    report(
        "ed25519 sign (incl. encode+id)",
        "sign",
        signed.len() as u64,
        (signed.len() * record_len) as u64,
        start.elapsed(),
    );
    println!("# canonical assertion size: {record_len} bytes");

    // Build + CRC.
    let per_batch = BATCH_BYTES / (record_len + 68);
    let mut built = Vec::new();
    let mut cursor = 0usize;
    let (n, el) = timed(secs, 200_000, || {
        let mut b = BatchBuilder::with_capacity(BATCH_BYTES + 4096);
        for _ in 0..per_batch {
            b.push(&signed[cursor % signed.len()]);
            cursor += 1;
        }
        let bytes = b.finish();
        if built.len() < 64 {
            built.push(bytes);
        } else {
            black_box(bytes);
        }
    });
    let batch_len = built[0].len() as u64;
    report(
        "batch build + crc",
        "batch_build",
        n * per_batch as u64,
        n * batch_len,
        el,
    );

    // Validate (CRC + framing) and iterate zero-copy.
    let (n, el) = timed(secs, 2_000_000, || {
        for b in built.iter().take(8) {
            let batch = RecordBatch::new(b.clone()).expect("valid");
            let mut sum = 0usize;
            for r in batch.records() {
                sum += r.assertion.len() + r.signature[0] as usize;
            }
            black_box(sum);
        }
    });
    let iter_mbps = report(
        "batch validate + iterate",
        "batch_validate_iterate",
        n * 8 * per_batch as u64,
        n * 8 * batch_len,
        el,
    );

    // Iterate only (what a consumer does after the CRC check).
    let views: Vec<RecordBatch> = built
        .iter()
        .map(|b| RecordBatch::new(b.clone()).unwrap())
        .collect();
    let (n, el) = timed(secs, 5_000_000, || {
        for v in views.iter().take(8) {
            let mut sum = 0usize;
            for r in v.records() {
                sum += r.assertion.len();
            }
            black_box(sum);
        }
    });
    report(
        "batch iterate (no crc)",
        "batch_iterate",
        n * 8 * per_batch as u64,
        n * 8 * batch_len,
        el,
    );

    // memcpy of the same bytes, the machine's ceiling for touching them.
    let src: Vec<u8> = built
        .iter()
        .take(8)
        .flat_map(|b| b.iter().copied())
        .collect();
    let mut dst = vec![0u8; src.len()];
    let (n, el) = timed(secs, 5_000_000, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });
    let memcpy_mbps = report(
        "memcpy same bytes",
        "memcpy",
        n * 8 * per_batch as u64,
        n * src.len() as u64,
        el,
    );
    println!(
        "RATIO validate+iterate / memcpy = {:.2}",
        iter_mbps / memcpy_mbps
    );

    // BLAKE3 ids.
    let canon: Vec<Bytes> = signed
        .iter()
        .map(|s| Bytes::copy_from_slice(s.canonical()))
        .collect();
    let mut i = 0usize;
    let (n, el) = timed(secs, 50_000_000, || {
        black_box(AssertionId::of(&canon[i % canon.len()]));
        i += 1;
    });
    report("blake3 id", "blake3_id", n, n * record_len as u64, el);

    // Single verification.
    let sigs: Vec<[u8; 64]> = signed.iter().map(|s| s.signature().to_bytes()).collect();
    let mut i = 0usize;
    let (n, el) = timed(secs, 1_000_000, || {
        let k = i % canon.len();
        verify_one(&canon[k], &sigs[k]).expect("valid");
        i += 1;
    });
    let single = report(
        "ed25519 verify (single)",
        "verify",
        n,
        n * record_len as u64,
        el,
    );

    // Batch verification, VERIFY_CHUNK per call (as the broker does).
    let chunk = VERIFY_CHUNK.min(canon.len() - 1);
    // Runs `verify` on successive chunks (its argument: the chunk's first record) and
    // reports the records/s.
    let chunks = |name: &str, op: &str, verify: &mut dyn FnMut(usize)| {
        let mut i = 0usize;
        let (n, el) = timed(secs, 100_000, || {
            verify((i * chunk) % (canon.len() - chunk));
            i += 1;
        });
        let records = n * chunk as u64;
        report(name, op, records, records * record_len as u64, el)
    };
    let mut verifier = BatchVerifier::default();
    let batch = chunks(
        &format!("ed25519 batch verify ({chunk})"),
        "verify_batch",
        &mut |k| {
            verifier
                .verify((k..k + chunk).map(|j| (&canon[j][..], &sigs[j])))
                .expect("valid")
        },
    );
    println!("RATIO batch verify / single verify = {:.2}", batch / single);

    // A forged chunk: its last record's signature is bad, so the verifier must find it.
    let mut forged = sigs.clone();
    let refusing = chunks(
        &format!("ed25519 batch verify, last of {chunk} forged"),
        "verify_batch_forged",
        &mut |k| {
            forged[k + chunk - 1][40] ^= 1;
            let refused = verifier.verify((k..k + chunk).map(|j| (&canon[j][..], &forged[j])));
            assert_eq!(refused.map_err(|e| e.index), Err(chunk - 1));
            forged[k + chunk - 1][40] ^= 1;
        },
    );
    println!(
        "RATIO refusing a forged chunk / verifying a good one = {:.2}",
        refusing / batch
    );

    // The textbook batch equation (`ed25519_dalek::verify_batch`, one term per signature):
    // the yardstick the benches' verification ceiling is measured with.
    let textbook = chunks(
        &format!("ed25519-dalek verify_batch ({chunk})"),
        "dalek_verify_batch",
        &mut |k| {
            assert!(dalek_verify_batch(
                (k..k + chunk).map(|j| (&canon[j][..], &sigs[j]))
            ))
        },
    );
    println!(
        "RATIO batch verify (one term per key) / ed25519-dalek verify_batch = {:.2}",
        batch / textbook
    );

    // Sanity: everything built is still valid.
    for b in &built {
        validate(b).expect("valid");
    }
}
