//! The decoder fuzz driver, shared by the `fuzz_decoders` example (≥ 100 000 cases per
//! decoder, `cargo run --release`) and the `fuzz_decoders` test (a smaller count in every
//! `cargo test`).
//!
//! Each decoder is fed arbitrary bytes and mutations of valid encodings — truncated,
//! bit-flipped, with length and count fields replaced by lies, with bytes inserted or
//! removed. Every call must return (never panic), and the largest single allocation made
//! while decoding must stay proportional to the input (no reservation driven by a length
//! field the input cannot back). Message decoders must also keep the *total* heap they hold
//! at any moment within their [`DecodeLimit`] budget of the input's length (a request within
//! 4× its body plus 4 KiB). Decoders that accept an input must also be canonical where the
//! format promises it (an accepted assertion re-encodes to the same bytes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use steme_protocol::assertion::subject_of;
use steme_protocol::batch::validate;
use steme_protocol::error::ApiError;
use steme_protocol::frame::{FrameHeader, decode_frame};
use steme_protocol::wire::{DecodeLimit, Reader};
use steme_protocol::{ApiKey, Assertion, ErrorCode, RecordBatch, Request, Response};

/// Counts, on this thread while armed, the largest single allocation and the peak of the
/// bytes allocated and not yet freed.
pub struct PeakAlloc;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed since arming (negative when memory allocated
    /// before is freed).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK_LIVE: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: defers every call to the system allocator; only records sizes in thread-locals
// that are const-initialised and never allocate.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-(layout.size() as isize));
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        live(-(layout.size() as isize));
        // SAFETY: ptr came from System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
        }
    });
    live(size as isize);
}

fn live(delta: isize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LIVE.try_with(|l| {
                let now = l.get() + delta;
                l.set(now);
                let _ = PEAK_LIVE.try_with(|p| p.set(p.get().max(now)));
            });
        }
    });
}

/// What one call allocated.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocated {
    /// The largest single allocation.
    pub largest: usize,
    /// The most bytes held at once (allocated during the call and not yet freed).
    pub peak_live: usize,
}

/// Runs `f` and returns what it allocated.
pub fn allocated_by(f: impl FnOnce()) -> Allocated {
    PEAK.with(|p| p.set(0));
    LIVE.with(|l| l.set(0));
    PEAK_LIVE.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    Allocated {
        largest: PEAK.with(Cell::get),
        peak_live: PEAK_LIVE.with(Cell::get).max(0) as usize,
    }
}

/// xorshift64*: small, fast, reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// One input derived from the seeds: arbitrary bytes or a mutated valid encoding.
pub fn input(rng: &mut Rng, seeds: &[Bytes]) -> Vec<u8> {
    if seeds.is_empty() || rng.below(5) == 0 {
        let len = rng.below(300);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let mut b = seeds[rng.below(seeds.len())].to_vec();
    for _ in 0..=rng.below(3) {
        if b.is_empty() {
            break;
        }
        match rng.below(6) {
            0 => b.truncate(rng.below(b.len())),
            1 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            2 | 3 => {
                // A length or count field that lies.
                let i = rng.below(b.len());
                let lie: u32 = match rng.below(5) {
                    0 => u32::MAX,
                    1 => 0,
                    2 => b.len() as u32 + rng.below(16) as u32,
                    3 => (b.len() as u32).wrapping_sub(rng.below(16) as u32),
                    _ => rng.next() as u32,
                };
                let width = [1usize, 2, 4][rng.below(3)];
                for (k, byte) in lie.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = *byte;
                    }
                }
            }
            4 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            _ => {
                let i = rng.below(b.len());
                b.remove(i);
            }
        }
    }
    b
}

/// A named decoder under test.
pub struct Target {
    pub name: String,
    pub seeds: Vec<Bytes>,
    /// Returns whether the decoder accepted the input.
    pub run: Box<dyn Fn(Bytes) -> bool>,
    /// For the frame decoder: the frame limit, which bounds how much it may reserve for a
    /// frame whose prefix has arrived but whose body has not.
    pub frame_limit: Option<usize>,
    /// For message decoders: the budget the heap held at once must stay within.
    pub decode_limit: Option<DecodeLimit>,
}

/// What a run of one target saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    /// Inputs the decoder accepted.
    pub accepted: u64,
    /// The largest ratio of heap held at once to the target's budget for its input.
    pub worst_share_of_budget: f64,
    /// The most heap held at once, and the input length it came from.
    pub worst_live: (usize, usize),
}

/// Largest single allocation a decoder may make for `len` input bytes: decoded structs may
/// be a small multiple of their encoding (a 1-byte `None` becomes a 24-byte `Option`), never
/// what a length field claims.
const FUZZ_FRAME_LIMIT: usize = 64 * 1024;

pub fn allocation_bound(len: usize) -> usize {
    32 * len + 4096
}

/// Runs `cases` inputs through `target`; panics (with the input in hex) on a violation.
pub fn run_target(target: &Target, cases: u64, seed: u64) -> RunStats {
    let mut rng = Rng::new(seed ^ fxhash(&target.name));
    let mut stats = RunStats::default();
    for _ in 0..cases {
        let data = Bytes::from(input(&mut rng, &target.seeds));
        let len = data.len();
        let copy = data.clone();
        let mut ok = false;
        let got = allocated_by(|| ok = (target.run)(data));
        let bound = allocation_bound(len).max(target.frame_limit.unwrap_or(0) + len);
        assert!(
            got.largest <= bound,
            "{}: allocated {} bytes for a {len}-byte input {}",
            target.name,
            got.largest,
            hex::encode(&copy)
        );
        if let Some(limit) = target.decode_limit {
            let budget = limit.budget_for(len);
            assert!(
                got.peak_live <= budget,
                "{}: held {} bytes, over the budget of {budget}, for a {len}-byte input {}",
                target.name,
                got.peak_live,
                hex::encode(&copy)
            );
            let share = got.peak_live as f64 / budget as f64;
            if share > stats.worst_share_of_budget {
                stats.worst_share_of_budget = share;
            }
        }
        if got.peak_live > stats.worst_live.0 {
            stats.worst_live = (got.peak_live, len);
        }
        stats.accepted += u64::from(ok);
    }
    stats
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Decoders of every request, response, error, frame, batch and assertion.
pub fn targets(samples: &Samples) -> Vec<Target> {
    let mut out = Vec::new();
    for &(key, _, max) in ApiKey::ALL {
        let req_seeds = samples.request_bodies(key);
        out.push(Target {
            name: format!("request/{key:?}"),
            frame_limit: None,
            decode_limit: Some(DecodeLimit::REQUEST),
            seeds: req_seeds,
            run: Box::new(move |body| {
                let header = FrameHeader {
                    api_key: key as u16,
                    api_version: max,
                    correlation_id: 1,
                };
                Request::decode(&header, body).is_ok()
            }),
        });
        let resp_seeds: Vec<Bytes> = samples
            .responses
            .iter()
            .filter(|r| r.api_key() == key)
            .map(|r| {
                let mut b = BytesMut::new();
                b.extend_from_slice(&0u16.to_le_bytes());
                r.encode(&mut b);
                b.freeze()
            })
            .collect();
        out.push(Target {
            name: format!("response/{key:?}"),
            frame_limit: None,
            decode_limit: Some(DecodeLimit::DEFAULT),
            seeds: resp_seeds,
            run: Box::new(move |body| {
                let mut r = Reader::new(body);
                let Ok(raw) = r.u16() else { return false };
                let Ok(code) = ErrorCode::try_from(raw) else {
                    return false;
                };
                if code == ErrorCode::None {
                    Response::decode(key, &mut r)
                        .and_then(|_| r.finish())
                        .is_ok()
                } else {
                    ApiError::decode(code, &mut r).is_ok()
                }
            }),
        });
    }
    out.push(Target {
        name: "error".into(),
        frame_limit: None,
        decode_limit: Some(DecodeLimit::DEFAULT),
        seeds: samples
            .errors
            .iter()
            .map(|e| {
                let mut b = BytesMut::new();
                e.encode(&mut b);
                b.freeze()
            })
            .collect(),
        run: Box::new(|body| {
            let mut r = Reader::new(body);
            match r.u16().map(ErrorCode::try_from) {
                Ok(Ok(code)) => ApiError::decode(code, &mut r).is_ok(),
                _ => false,
            }
        }),
    });
    out.push(Target {
        name: "frame".into(),
        frame_limit: Some(FUZZ_FRAME_LIMIT),
        decode_limit: None,
        seeds: samples.frames.clone(),
        run: Box::new(|bytes| {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut all_ok = true;
            while let Ok(Some(frame)) = decode_frame(&mut buf, FUZZ_FRAME_LIMIT) {
                all_ok &= Request::decode(&frame.header, frame.body).is_ok();
            }
            all_ok && buf.is_empty()
        }),
    });
    out.push(Target {
        name: "batch".into(),
        frame_limit: None,
        decode_limit: None,
        seeds: samples.batches.clone(),
        run: Box::new(|bytes| {
            for b in RecordBatch::split_all(&bytes).flatten() {
                assert!(b.records().count() == b.record_count() as usize);
            }
            if validate(&bytes).is_err() {
                return false;
            }
            let batch = RecordBatch::new(bytes.clone()).expect("validated");
            for r in batch.records() {
                let _ = r.signer();
                let _ = subject_of(r.assertion);
            }
            true
        }),
    });
    out.push(Target {
        name: "assertion".into(),
        frame_limit: None,
        decode_limit: None,
        seeds: samples.assertions.clone(),
        run: Box::new(|bytes| {
            let _ = subject_of(&bytes);
            let Ok((a, signer)) = Assertion::decode(&bytes) else {
                return false;
            };
            let again = a.canonical_bytes(&signer).expect("accepted means valid");
            assert_eq!(
                &again[..],
                &bytes[..],
                "accepted assertion is not canonical"
            );
            true
        }),
    });
    out
}

/// Valid encodings to mutate.
#[derive(Default)]
pub struct Samples {
    pub requests: Vec<Request>,
    pub responses: Vec<Response>,
    pub errors: Vec<ApiError>,
    pub frames: Vec<Bytes>,
    pub batches: Vec<Bytes>,
    pub assertions: Vec<Bytes>,
}

impl Samples {
    /// The encoded bodies of the sample requests of api `key`, as seeds to mutate.
    pub fn request_bodies(&self, key: ApiKey) -> Vec<Bytes> {
        self.requests
            .iter()
            .filter(|r| r.api_key() == key)
            .map(|r| {
                let mut b = BytesMut::new();
                r.encode(&mut b);
                b.freeze()
            })
            .collect()
    }
}
