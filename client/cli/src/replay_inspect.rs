//! `steme replay-inspect FILE [--verify] [--json]`: reads a file written by `steme replay`
//! back, offline, prints its records and checks them.
//!
//! A replay file is the partition's record batches, byte for byte, one after another (see
//! [`steme_protocol::batch`] for the layout). The file holds no topic or partition name,
//! and no ids: a record's id is the BLAKE3 hash of its canonical assertion bytes. Checks:
//!
//! - each batch's header, length, record framing and CRC; a file that ends inside a batch
//!   is reported as truncated (nothing after it can be found);
//! - offsets continue from one batch to the next (no gap, no overlap);
//! - each record's assertion decodes, and the id recomputed from its decoded fields (encoded
//!   again) is the id of the bytes as stored;
//! - with `--verify`, each record's Ed25519 signature over its id.
//!
//! A batch whose CRC does not match is still read record by record, so that `--verify` can
//! name the record whose bytes changed. Every problem names the record's offset (or the
//! batch's) and its byte position in the file; any problem makes the command exit 1.

use std::fmt;
use std::io::Read;

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Serialize;
use steme_protocol::assertion::verify_one;
use steme_protocol::batch::{self, HEADER_LEN, RECORD_ASSERTION_OFFSET};
use steme_protocol::{Assertion, AssertionId, BatchHeader, RecordBatch, RecordRef};

use crate::args::ReplayInspectArgs;
use crate::replay::Summary;
use crate::time::Stamp;

/// Problems named in the final error line at most (all are printed above it).
const PROBLEMS_IN_ERROR: usize = 5;

/// Something wrong in a replay file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Byte position in the file of the record (or batch) at fault.
    pub position: u64,
    /// The record's offset, or the batch's first offset; `None` when the bytes are not
    /// readable as a batch.
    pub offset: Option<u64>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(
                f,
                "offset {offset} (byte {}): {}",
                self.position, self.reason
            ),
            None => write!(f, "byte {}: {}", self.position, self.reason),
        }
    }
}

/// One record as read back from the file.
#[derive(Debug, Serialize)]
pub struct RecordReport {
    pub offset: u64,
    #[serde(flatten)]
    pub stamp: Stamp,
    pub id: AssertionId,
    pub signer: String,
    /// The assertion's fields; absent if its bytes do not decode.
    #[serde(flatten)]
    pub assertion: Option<Assertion>,
    pub signature: String,
    /// Whether every check of this record passed.
    pub ok: bool,
    /// Why not, if not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// What a whole file held.
#[derive(Debug, Default)]
pub struct Inspection {
    pub summary: Summary,
    pub problems: Vec<Problem>,
}

/// Reads `file_len` bytes of replay file from `reader`, calling `each` with every record in
/// order, and returns the totals and every problem found.
pub fn inspect(
    mut reader: impl Read,
    file_len: u64,
    verify: bool,
    mut each: impl FnMut(&RecordReport) -> anyhow::Result<()>,
) -> anyhow::Result<Inspection> {
    let mut found = Inspection::default();
    let mut position = 0u64;
    let mut next_offset: Option<u64> = None;
    while position < file_len {
        let left = file_len - position;
        let problem = |offset, reason: String| Problem {
            position,
            offset,
            reason,
        };
        if left < HEADER_LEN as u64 {
            found.problems.push(problem(
                None,
                format!(
                    "truncated: the file ends {left} bytes into a batch header ({HEADER_LEN} bytes)"
                ),
            ));
            break;
        }
        let mut bytes = vec![0u8; HEADER_LEN];
        reader
            .read_exact(&mut bytes)
            .with_context(|| format!("cannot read the batch header at byte {position}"))?;
        let header = match BatchHeader::parse(&bytes) {
            Ok(h) => h,
            Err(e) => {
                found.problems.push(problem(
                    None,
                    format!("not a record batch ({e}); nothing after it can be read"),
                ));
                break;
            }
        };
        let span = format!(
            "batch of offsets {}..={}",
            header.base_offset,
            header.end_offset().saturating_sub(1)
        );
        let length = u64::from(header.length);
        if length < HEADER_LEN as u64 {
            found.problems.push(problem(
                Some(header.base_offset),
                format!("{span} declares {length} bytes, less than its header; nothing after it can be read"),
            ));
            break;
        }
        if length > left {
            found.problems.push(problem(
                Some(header.base_offset),
                format!(
                    "truncated: the {span} declares {length} bytes, the file holds {left} from here"
                ),
            ));
            break;
        }
        bytes.resize(length as usize, 0);
        reader
            .read_exact(&mut bytes[HEADER_LEN..])
            .with_context(|| format!("cannot read the {span} at byte {position}"))?;
        if let Some(next) = next_offset
            && next != header.base_offset
        {
            found.problems.push(problem(
                Some(header.base_offset),
                format!("offsets do not continue: the batch before ends at {next}, this {span}"),
            ));
        }
        next_offset = Some(header.end_offset());
        found.summary.add(&header);
        if let Err(e) = batch::validate_framing(&bytes) {
            found
                .problems
                .push(problem(Some(header.base_offset), format!("{span}: {e}")));
            position += length;
            continue;
        }
        let computed = batch::compute_crc(&bytes);
        if computed != header.crc {
            found.problems.push(problem(
                Some(header.base_offset),
                format!(
                    "{span}: CRC mismatch (stored {:#010x}, computed {computed:#010x}): its bytes \
                     changed after it was written{}",
                    header.crc,
                    if verify {
                        ""
                    } else {
                        " (--verify names the record)"
                    }
                ),
            ));
            // Sealed again in this copy only so that its records (framing checked above) can
            // be walked; each is then checked on its own.
            batch::reseal(&mut bytes);
        }
        let batch = RecordBatch::new(Bytes::from(bytes))
            .with_context(|| format!("the {span} at byte {position}"))?;
        for record in batch.records() {
            let at = position + record_position(&batch, &record);
            let report = check_record(&record, verify);
            for reason in &report.problems {
                found.problems.push(Problem {
                    position: at,
                    offset: Some(record.offset),
                    reason: reason.clone(),
                });
            }
            each(&report)?;
        }
        position += length;
    }
    Ok(found)
}

/// Where `record` starts inside `batch`, in bytes.
fn record_position(batch: &RecordBatch, record: &RecordRef<'_>) -> u64 {
    let start = batch.as_bytes().as_ptr().addr();
    (record.assertion.as_ptr().addr() - start - RECORD_ASSERTION_OFFSET) as u64
}

/// Decodes one record, recomputes its id from its fields and, with `verify`, checks its
/// signature.
fn check_record(record: &RecordRef<'_>, verify: bool) -> RecordReport {
    let id = record.id();
    let mut problems = Vec::new();
    let assertion = match Assertion::decode(record.assertion) {
        Ok((assertion, signer)) => {
            match assertion.canonical_bytes(&signer) {
                Ok(encoded) if AssertionId::of(&encoded) == id => {}
                Ok(encoded) => problems.push(format!(
                    "id mismatch: its bytes hash to {id}, its fields to {}",
                    AssertionId::of(&encoded)
                )),
                Err(e) => problems.push(format!("its fields do not encode again: {e}")),
            }
            Some(assertion)
        }
        Err(e) => {
            problems.push(format!("does not decode as an assertion: {e}"));
            None
        }
    };
    if verify && let Err(e) = verify_one(record.assertion, record.signature) {
        problems.push(format!("Ed25519 check failed: {e}"));
    }
    RecordReport {
        offset: record.offset,
        stamp: Stamp::of(record.hlc),
        id,
        signer: hex::encode(record.signer()),
        assertion,
        signature: hex::encode(record.signature),
        ok: problems.is_empty(),
        problems,
    }
}

pub fn run(args: &ReplayInspectArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let file_len = file
        .metadata()
        .with_context(|| format!("cannot read the size of {}", args.file.display()))?
        .len();
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !args.json {
        writeln!(
            out,
            "{:>12} {:<30} {:>7} {:<64} {:<8} SUBJECT",
            "OFFSET", "TIME", "LOGICAL", "ID", "CHECK"
        )?;
    }
    let found = inspect(reader, file_len, args.verify, |r| {
        if args.json {
            serde_json::to_writer(&mut out, r)?;
            out.write_all(b"\n")?;
        } else {
            let check = match (r.ok, args.verify) {
                (false, _) => "BAD",
                (true, true) => "verified",
                (true, false) => "ok",
            };
            let subject = r.assertion.as_ref().map_or("-", |a| a.subject.as_str());
            writeln!(
                out,
                "{:>12} {:<30} {:>7} {:<64} {:<8} {subject}",
                r.offset, r.stamp.time, r.stamp.logical, r.id, check
            )?;
        }
        Ok(())
    })?;
    let s = &found.summary;
    if args.json {
        let mut summary = s.to_json();
        summary["file"] = args.file.display().to_string().into();
        summary["ids_checked"] = true.into();
        summary["signatures_verified"] = args.verify.into();
        summary["problems"] = serde_json::to_value(&found.problems)?;
        serde_json::to_writer(&mut out, &serde_json::json!({ "summary": summary }))?;
        out.write_all(b"\n")?;
    } else {
        let span = s.span().unwrap_or_else(|| "no records".to_owned());
        writeln!(
            out,
            "{} records in {} batches ({} bytes), {span}",
            s.records, s.batches, s.bytes
        )?;
        let signatures = if args.verify {
            "signatures verified"
        } else {
            "signatures not checked (--verify checks them)"
        };
        writeln!(
            out,
            "ids recomputed from every record's bytes; {signatures}"
        )?;
    }
    out.flush()?;
    drop(out);
    if found.problems.is_empty() {
        return Ok(());
    }
    for p in &found.problems {
        eprintln!("steme: bad: {p}");
    }
    let named: Vec<String> = found
        .problems
        .iter()
        .take(PROBLEMS_IN_ERROR)
        .map(Problem::to_string)
        .collect();
    let more = found.problems.len().saturating_sub(PROBLEMS_IN_ERROR);
    bail!(
        "{} failed its checks ({} problems): {}{}",
        args.file.display(),
        found.problems.len(),
        named.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use steme_client::{SigningKey, Value};
    use steme_protocol::BatchBuilder;
    use steme_protocol::batch::patch_header;

    /// A replay file of `batches` batches of `per_batch` records each, from offset 0.
    fn file(batches: u64, per_batch: u64) -> Vec<u8> {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut out = Vec::new();
        for b in 0..batches {
            let mut builder = BatchBuilder::default();
            for i in 0..per_batch {
                let a = Assertion {
                    subject: format!("urn:s:{b}:{i}"),
                    predicate: "p".into(),
                    object: Value::Integer(i as i64),
                    source: "test".into(),
                    confidence: None,
                    supersedes: None,
                    issued_at: 0,
                };
                builder.push(&a.sign(&key).unwrap());
            }
            let mut bytes = builder.finish().to_vec();
            let base = b * per_batch;
            patch_header(&mut bytes, base, (1_795_946_400 << 32) + base, 1);
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn run_on(bytes: &[u8], verify: bool) -> (Inspection, Vec<RecordReport>) {
        let mut seen = Vec::new();
        let found = inspect(bytes, bytes.len() as u64, verify, |r| {
            seen.push(RecordReport {
                problems: r.problems.clone(),
                assertion: r.assertion.clone(),
                signer: r.signer.clone(),
                signature: r.signature.clone(),
                stamp: r.stamp.clone(),
                ..*r
            });
            Ok(())
        })
        .unwrap();
        (found, seen)
    }

    #[test]
    fn a_sound_file_reads_back_whole_with_no_problems() {
        let bytes = file(3, 4);
        let (found, seen) = run_on(&bytes, true);
        assert_eq!(found.problems, vec![]);
        assert_eq!(found.summary.records, 12);
        assert_eq!(found.summary.batches, 3);
        assert_eq!(found.summary.bytes, bytes.len() as u64);
        assert_eq!(
            seen.iter().map(|r| r.offset).collect::<Vec<_>>(),
            (0..12).collect::<Vec<_>>()
        );
        assert!(seen.iter().all(|r| r.ok));
        assert_eq!(seen[5].stamp.time, "2026-11-29T10:00:00.000000000Z");
        assert_eq!(seen[5].stamp.logical, 5);
        assert_eq!(seen[5].assertion.as_ref().unwrap().subject, "urn:s:1:1");
    }

    #[test]
    fn a_changed_byte_names_its_record_with_verify() {
        let mut bytes = file(2, 3);
        let one_batch = bytes.len() / 2;
        // The subject of the last record of the second batch: `urn:s:1:2` becomes `urn:s:1:3`.
        let at = bytes.len() - 1 - bytes.iter().rev().position(|&b| b == b'2').unwrap();
        bytes[at] = b'3';
        let (found, seen) = run_on(&bytes, true);
        assert!(seen[..5].iter().all(|r| r.ok));
        assert!(!seen[5].ok);
        let reasons: Vec<String> = found.problems.iter().map(Problem::to_string).collect();
        assert_eq!(found.problems.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with(&format!(
                "offset 3 (byte {one_batch}): batch of offsets 3..=5: CRC mismatch"
            )),
            "{reasons:?}"
        );
        assert!(reasons[1].starts_with("offset 5 (byte "), "{reasons:?}");
        assert!(
            reasons[1].ends_with("Ed25519 check failed: signature does not verify"),
            "{reasons:?}"
        );
        // Without --verify: the batch is named, and how to find the record.
        let (found, _) = run_on(&bytes, false);
        assert_eq!(found.problems.len(), 1);
        assert!(
            found.problems[0]
                .reason
                .ends_with("(--verify names the record)")
        );
    }

    #[test]
    fn a_truncated_file_is_a_problem_at_every_length() {
        let bytes = file(2, 2);
        let first_batch = bytes.len() / 2;
        for cut in 1..bytes.len() {
            if cut == first_batch {
                continue;
            }
            let (found, _) = run_on(&bytes[..cut], true);
            assert_eq!(
                found.problems.len(),
                1,
                "cut at {cut}: {:?}",
                found.problems
            );
            assert!(
                found.problems[0].reason.starts_with("truncated"),
                "cut at {cut}: {:?}",
                found.problems
            );
        }
        let (found, _) = run_on(&bytes[..first_batch], true);
        assert_eq!(found.problems, vec![]);
        assert_eq!(found.summary.records, 2);
    }

    #[test]
    fn garbage_and_gaps_are_named() {
        let (found, _) = run_on(&[0xee; 100], false);
        assert_eq!(found.problems.len(), 1);
        assert!(found.problems[0].reason.starts_with("not a record batch"));
        let mut bytes = file(1, 2);
        let second = file(2, 2);
        bytes.extend_from_slice(&second[second.len() / 2..]);
        bytes.extend_from_slice(&second[second.len() / 2..]);
        let (found, _) = run_on(&bytes, true);
        assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
        assert!(
            found.problems[0]
                .reason
                .starts_with("offsets do not continue")
        );
    }
}
