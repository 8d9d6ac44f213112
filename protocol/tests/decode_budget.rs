//! Decode amplification: for every request type, what a decode holds on the heap (counted
//! by the allocator, not by the reader's own bookkeeping) stays within
//! [`DecodeLimit::REQUEST`] of the body, for random bodies, mutated valid bodies, and
//! adversarial ones built of very many minimal elements. Elements whose decoded form is more
//! than 4× their wire size must be refused with `BudgetExceeded` once there are enough of
//! them; the others must decode.

// Shared with the fuzz example; each user reads only part of it.
#[allow(dead_code)]
#[path = "../examples/fuzz/driver.rs"]
mod driver;
#[path = "../examples/fuzz/samples.rs"]
mod samples;

use bytes::{BufMut, Bytes, BytesMut};
use driver::{Rng, allocated_by};
use steme_protocol::frame::FrameHeader;
use steme_protocol::messages::RequestError;
use steme_protocol::wire::{DecodeError, DecodeLimit, put_count, put_string};
use steme_protocol::{ApiKey, Request};

#[global_allocator]
static ALLOC: driver::PeakAlloc = driver::PeakAlloc;

/// How one decode went.
struct Outcome {
    len: usize,
    held: usize,
    result: Result<Request, RequestError>,
}

fn decode(key: ApiKey, body: Vec<u8>) -> Outcome {
    let header = FrameHeader {
        api_key: key as u16,
        api_version: key.versions().1,
        correlation_id: 1,
    };
    let body = Bytes::from(body);
    // Make the buffer shared before counting, as a frame sliced off a receive buffer is.
    let keep = body.clone();
    let len = body.len();
    let mut result = Err(RequestError::UnknownApi(u16::MAX));
    let got = allocated_by(|| result = Request::decode(&header, body));
    drop(keep);
    Outcome {
        len,
        held: got.peak_live,
        result,
    }
}

/// A string of `len` ASCII bytes.
fn name(rng: &mut Rng, len: usize) -> String {
    (0..len)
        .map(|_| (b'a' + rng.below(26) as u8) as char)
        .collect()
}

/// A short name: mostly 0 to 3 bytes (the densest), sometimes longer.
fn short_len(rng: &mut Rng) -> usize {
    if rng.below(8) == 0 {
        rng.below(40)
    } else {
        rng.below(4)
    }
}

/// A count: none, a few, or as many minimal elements as the size cap allows (or a lie).
fn count(rng: &mut Rng, max: usize) -> usize {
    match rng.below(6) {
        0 => rng.below(4),
        1 => rng.below(300),
        2 => rng.below(20_000),
        3 => max,
        4 => max / 2 + rng.below(max / 2 + 1),
        _ => rng.below(max + 1),
    }
}

/// Adversarial body of a request with lists: the fixed fields, then lists of elements near
/// their minimal size, with counts up to about what `cap` bytes of minimal elements hold.
fn adversarial(rng: &mut Rng, key: ApiKey, cap: usize) -> Vec<u8> {
    let mut b = BytesMut::new();
    let tp = |rng: &mut Rng, b: &mut BytesMut| {
        let n = short_len(rng);
        put_string(b, &name(rng, n));
        let parts = if rng.below(2) == 0 { 0 } else { rng.below(4) };
        put_count(b, parts);
        for _ in 0..parts {
            b.put_u32_le(rng.next() as u32);
        }
    };
    match key {
        ApiKey::Metadata => {
            b.put_u8(1);
            let n = count(rng, cap / 3);
            put_count(&mut b, n);
            for _ in 0..n {
                let l = short_len(rng);
                put_string(&mut b, &name(rng, l));
            }
        }
        ApiKey::CreateTopic => {
            put_string(&mut b, "t");
            b.put_u32_le(1);
            b.put_u16_le(1);
            let n = count(rng, cap / 5);
            put_count(&mut b, n);
            for _ in 0..n {
                let (k, v) = (short_len(rng), short_len(rng));
                put_string(&mut b, &name(rng, k));
                put_string(&mut b, &name(rng, v));
            }
        }
        ApiKey::Heartbeat => {
            put_string(&mut b, "g");
            put_string(&mut b, "");
            b.put_u8(0);
            b.put_u32_le(0);
            b.put_u32_le(1);
            let subs = count(rng, cap / 6);
            put_count(&mut b, subs);
            for _ in 0..subs {
                let l = short_len(rng);
                put_string(&mut b, &name(rng, l));
            }
            let owned = count(rng, cap / 14);
            put_count(&mut b, owned);
            for _ in 0..owned {
                tp(rng, &mut b);
            }
        }
        ApiKey::CommitOffsets => {
            put_string(&mut b, "g");
            put_string(&mut b, "m");
            b.put_u32_le(1);
            let n = count(rng, cap / 17);
            put_count(&mut b, n);
            for _ in 0..n {
                let (t, m) = (short_len(rng), short_len(rng));
                put_string(&mut b, &name(rng, t));
                b.put_u32_le(0);
                b.put_u64_le(0);
                put_string(&mut b, &name(rng, m));
            }
        }
        ApiKey::FetchOffsets => {
            put_string(&mut b, "g");
            b.put_u8(1);
            let n = count(rng, cap / 7);
            put_count(&mut b, n);
            for _ in 0..n {
                tp(rng, &mut b);
            }
        }
        // No lists: random fixed fields and strings.
        _ => {
            let n = rng.below(600);
            b.extend((0..n).map(|_| rng.next() as u8));
        }
    }
    let mut body = b.to_vec();
    // Now and then, a lie or a cut.
    match rng.below(10) {
        0 if !body.is_empty() => body.truncate(rng.below(body.len())),
        1 if body.len() > 8 => {
            let i = rng.below(body.len() - 4);
            body[i..i + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
        }
        _ => {}
    }
    body
}

/// Every outcome must hold no more than the request budget of its body.
fn check(key: ApiKey, o: &Outcome, worst: &mut Worst) {
    let budget = DecodeLimit::REQUEST.budget_for(o.len);
    assert!(
        o.held <= budget,
        "{key:?}: held {} bytes decoding a {}-byte body, over the budget of {budget}",
        o.held,
        o.len
    );
    worst.note(o);
}

/// The worst amplification seen.
#[derive(Default)]
struct Worst {
    cases: u64,
    share_of_budget: f64,
    /// Over bodies of at least 64 KiB, where the slack no longer matters.
    ratio_large: f64,
    large_cases: u64,
    refused_over_budget: u64,
}

impl Worst {
    fn note(&mut self, o: &Outcome) {
        self.cases += 1;
        let budget = DecodeLimit::REQUEST.budget_for(o.len);
        self.share_of_budget = self.share_of_budget.max(o.held as f64 / budget as f64);
        if o.len >= 64 << 10 {
            self.large_cases += 1;
            self.ratio_large = self.ratio_large.max(o.held as f64 / o.len as f64);
        }
        if matches!(
            o.result,
            Err(RequestError::Decode(DecodeError::BudgetExceeded { .. }))
        ) {
            self.refused_over_budget += 1;
        }
    }
}

#[test]
fn every_request_decodes_within_its_budget_of_adversarial_bodies() {
    let mut rng = Rng::new(0x1157);
    let mut worst = Worst::default();
    for &(key, _, _) in ApiKey::ALL {
        for _ in 0..60 {
            let body = adversarial(&mut rng, key, 1 << 20);
            let o = decode(key, body);
            check(key, &o, &mut worst);
        }
    }
    // Random and mutated valid bodies, through the fuzz driver's mutator.
    let samples = samples::samples();
    for &(key, _, _) in ApiKey::ALL {
        let seeds = samples.request_bodies(key);
        for _ in 0..500 {
            let o = decode(key, driver::input(&mut rng, &seeds));
            check(key, &o, &mut worst);
        }
    }
    assert!(
        worst.refused_over_budget > 0,
        "the adversarial bodies reached the budget"
    );
    println!(
        "RESULT decode_budget cases={} worst_heap_share_of_budget={:.3} \
         worst_heap_per_body_byte_over_64KiB={:.2} (over {} bodies) refused_over_budget={}",
        worst.cases,
        worst.share_of_budget,
        worst.ratio_large,
        worst.large_cases,
        worst.refused_over_budget
    );
}

/// `count` copies of `elem` after a Metadata request's list head.
fn metadata_of(count: usize, elem: &[u8]) -> Vec<u8> {
    let mut b = vec![1u8];
    put_count(&mut b, count);
    for _ in 0..count {
        b.extend_from_slice(elem);
    }
    b
}

#[test]
fn metadata_request_of_16_mib_of_names_holds_at_most_4x() {
    // The attack of 8 million empty names, then the densest legal form (one-byte names),
    // then realistic names: the first two are refused before anything is reserved, the
    // last decodes, each within the budget.
    let frame_body = (16 << 20) - 12;
    let mut worst = Worst::default();
    for (elem, expect_ok) in [
        (&[0u8, 0][..], false),
        (&[1, 0, b'a'][..], false),
        (
            &[8, 0, b'f', b'a', b'c', b't', b's', b'-', b'0', b'1'][..],
            true,
        ),
    ] {
        let n = (frame_body - 5) / elem.len();
        let o = decode(ApiKey::Metadata, metadata_of(n, elem));
        check(ApiKey::Metadata, &o, &mut worst);
        assert_eq!(o.result.is_ok(), expect_ok, "{:?}", o.result.err());
        if !expect_ok {
            assert!(o.held < 64 << 10, "refused after holding {} bytes", o.held);
        }
    }
}
