//! Feeds arbitrary and mutated bytes to every decoder of the protocol crate.
//!
//! ```sh
//! cargo run --release -p steme-protocol --example fuzz_decoders -- --cases 100000 [--seed N]
//! ```
//!
//! Prints one line per decoder with the cases run; exits non-zero (with the offending
//! input in hex) if a decoder panics or allocates beyond the bound in `driver.rs`.

#[path = "fuzz/driver.rs"]
mod driver;
#[path = "fuzz/samples.rs"]
mod samples;

#[global_allocator]
static ALLOC: driver::PeakAlloc = driver::PeakAlloc;

fn main() {
    let mut cases = 100_000u64;
    let mut seed = 0x5eed_u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().and_then(|v| v.parse().ok());
        match a.as_str() {
            "--cases" => cases = value().unwrap_or(cases),
            "--seed" => seed = value().unwrap_or(seed),
            "-h" | "--help" => {
                println!("usage: fuzz_decoders [--cases N] [--seed S]");
                return;
            }
            other => {
                eprintln!("error: unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    let samples = samples::samples();
    let targets = driver::targets(&samples);
    let start = std::time::Instant::now();
    let mut total = 0;
    for t in &targets {
        let t0 = std::time::Instant::now();
        let stats = driver::run_target(t, cases, seed);
        total += cases;
        let budget = match t.decode_limit {
            Some(_) => format!(
                ", peak heap <= {:>5.1}% of decode budget (most: {} B for {} B)",
                100.0 * stats.worst_share_of_budget,
                stats.worst_live.0,
                stats.worst_live.1
            ),
            None => String::new(),
        };
        println!(
            "{:<24} {cases:>8} cases, {:>6} accepted, {:>2} seeds: no panic, allocations in bound{budget} ({:.2} s)",
            t.name,
            stats.accepted,
            t.seeds.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    println!(
        "RESULT peer=steme op=fuzz_decoders decoders={} cases_per_decoder={cases} total={total} seed={seed} secs={:.1}",
        targets.len(),
        start.elapsed().as_secs_f64()
    );
}
