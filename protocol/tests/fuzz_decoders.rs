//! A short run of the decoder fuzz driver in every `cargo test`; the long run (≥ 100 000
//! cases per decoder) is `cargo run --release -p steme-protocol --example fuzz_decoders`.

// Shared with the fuzz example; each user reads only part of it.
#[allow(dead_code)]
#[path = "../examples/fuzz/driver.rs"]
mod driver;
#[path = "../examples/fuzz/samples.rs"]
mod samples;

#[global_allocator]
static ALLOC: driver::PeakAlloc = driver::PeakAlloc;

#[test]
fn every_decoder_survives_arbitrary_and_mutated_bytes() {
    let samples = samples::samples();
    let targets = driver::targets(&samples);
    assert!(targets.len() >= 2 * steme_protocol::ApiKey::ALL.len() + 4);
    for t in &targets {
        assert!(
            !t.seeds.is_empty() || t.name == "frame",
            "{} has no valid sample to mutate",
            t.name
        );
        let accepted = driver::run_target(t, 2_000, 0x5eed).accepted;
        // Mutations must reach past the first field: some mutated inputs still decode.
        if !t.seeds.is_empty() {
            assert!(accepted > 0, "{}: no input accepted", t.name);
        }
    }
}

#[test]
fn driver_detects_a_panicking_decoder() {
    let t = driver::Target {
        name: "always-panics".into(),
        seeds: vec![],
        frame_limit: None,
        decode_limit: None,
        run: Box::new(|_| panic!("decoder bug")),
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        driver::run_target(&t, 1, 1)
    }));
    assert!(caught.is_err());
}

#[test]
fn driver_detects_an_allocation_driven_by_a_lying_length() {
    let t = driver::Target {
        name: "trusts-length".into(),
        seeds: vec![],
        frame_limit: None,
        decode_limit: None,
        run: Box::new(|b| {
            let claimed = b.first().copied().unwrap_or(0) as usize + 1;
            std::hint::black_box(Vec::<u8>::with_capacity(claimed << 20));
            true
        }),
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        driver::run_target(&t, 10, 1)
    }));
    assert!(caught.is_err());
}

#[test]
fn driver_detects_a_decoder_holding_more_than_its_budget() {
    // Each allocation is small (so the single-allocation bound passes), but together they
    // hold more than the request budget of the input.
    let t = driver::Target {
        name: "holds-too-much".into(),
        seeds: vec![],
        frame_limit: None,
        decode_limit: Some(steme_protocol::wire::DecodeLimit::REQUEST),
        run: Box::new(|b| {
            let held: Vec<Vec<u8>> = (0..b.len() + 200).map(|_| vec![0u8; 64]).collect();
            std::hint::black_box(held);
            true
        }),
    };
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        driver::run_target(&t, 10, 1)
    }));
    assert!(caught.is_err());
}
