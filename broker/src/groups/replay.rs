//! Reading a groups partition back into group records, trusting only what brokers wrote.
//!
//! Group records are assertions signed with a broker's record-signing key, whose public
//! half each broker registers in the metadata (`MetadataState::signers`). Clients cannot
//! produce to internal topics, and a coordinator replays only records whose signer is a
//! registered broker and whose signature holds (D11): a forged record that reached the log
//! anyway is skipped, named in the log, and never becomes a group's state.
//!
//! Decoding and verifying are CPU work (a batch verification is ~18 µs a record), so a
//! coordinator runs [`read_chunk`] off the async workers.

use std::collections::HashSet;

use bytes::Bytes;
use steme_protocol::RecordBatch;
use steme_protocol::assertion::{verify_batch, verify_one};

use super::{GroupRecord, decode_record};

/// The public keys of the brokers' record-signing keys.
pub type Trusted = HashSet<[u8; 32]>;

/// Parses the hex keys the metadata records; malformed ones are left out.
pub fn trusted<'a>(hex_keys: impl IntoIterator<Item = &'a String>) -> Trusted {
    hex_keys
        .into_iter()
        .filter_map(|h| {
            let mut key = [0u8; 32];
            hex::decode_to_slice(h, &mut key).ok().map(|()| key)
        })
        .collect()
}

/// Why a record was not replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    Unreadable,
    UntrustedSigner,
    BadSignature,
}

/// A trusted group record as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub offset: u64,
    /// The group it is about (`snapshot::SUBJECT` for a snapshot part).
    pub group: String,
    pub record: GroupRecord,
    /// Where the last snapshot before it starts, as its coordinator knew it.
    pub last_snapshot: Option<u64>,
}

/// What one fetched chunk of a groups partition holds.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The offset after the last record read.
    pub next: u64,
    /// Trusted group records, in offset order.
    pub records: Vec<Read>,
    /// Records left out, by offset.
    pub skipped: Vec<(u64, Skipped)>,
}

/// Reads the records of `batches` in `[from, upto)`: decoded, signer checked, signatures
/// verified (a batch at a time; one record at a time only to find a bad one).
pub fn read_chunk(batches: &[Bytes], from: u64, upto: u64, trusted: &Trusted) -> Chunk {
    let mut chunk = Chunk {
        next: from,
        ..Chunk::default()
    };
    for bytes in batches {
        let Ok(batch) = RecordBatch::new(bytes.clone()) else {
            continue;
        };
        let in_range = |index: u32| {
            let at = batch.base_offset() + u64::from(index);
            (at >= chunk.next && at < upto).then_some(at)
        };
        let signed_here: Vec<_> = batch
            .records()
            .filter(|r| in_range(r.index).is_some())
            .collect();
        let all_verify =
            verify_batch(signed_here.iter().map(|r| (r.assertion, r.signature))).is_ok();
        let mut next = chunk.next;
        for r in &signed_here {
            let at = batch.base_offset() + u64::from(r.index);
            next = at + 1;
            let Some(d) = decode_record(r.assertion) else {
                chunk.skipped.push((at, Skipped::Unreadable));
                continue;
            };
            if !trusted.contains(&d.signer) {
                chunk.skipped.push((at, Skipped::UntrustedSigner));
                continue;
            }
            if !all_verify && verify_one(r.assertion, r.signature).is_err() {
                chunk.skipped.push((at, Skipped::BadSignature));
                continue;
            }
            chunk.records.push(Read {
                offset: at,
                group: d.group,
                record: d.record,
                last_snapshot: d.last_snapshot,
            });
        }
        chunk.next = next;
    }
    chunk
}

#[cfg(test)]
mod tests {
    use steme_protocol::{Assertion, BatchBuilder, SignedAssertion, SigningKey, Value};

    use super::*;
    use crate::groups::{PREDICATE, Stored};

    fn record(key: &SigningKey, group: &str, predicate: &str, seq: u64) -> SignedAssertion {
        let stored = Stored {
            term: 1,
            seq,
            record: GroupRecord::Delete,
            last_snapshot: None,
        };
        Assertion {
            subject: group.into(),
            predicate: predicate.into(),
            object: Value::Text(serde_json::to_string(&stored).unwrap()),
            source: "test".into(),
            confidence: None,
            supersedes: None,
            issued_at: 1,
        }
        .sign(key)
        .unwrap()
    }

    #[test]
    fn replays_only_records_a_registered_broker_signed() {
        let broker = SigningKey::from_bytes(&[1; 32]);
        let stranger = SigningKey::from_bytes(&[2; 32]);
        let trusted = trusted([&hex::encode(broker.verifying_key().as_bytes())]);

        let mut b = BatchBuilder::with_capacity(4096);
        b.push(&record(&broker, "g1", PREDICATE, 0));
        b.push(&record(&stranger, "g2", PREDICATE, 1));
        // A broker's record whose signature was altered.
        let forged = record(&broker, "g3", PREDICATE, 2);
        let mut signature = forged.signature().to_bytes();
        signature[0] ^= 1;
        b.push_raw(forged.canonical(), &signature);
        b.push(&record(&broker, "g4", "not.a.group.record", 3));
        b.push(&record(&broker, "g5", PREDICATE, 4));
        let chunk = read_chunk(&[b.finish()], 0, 5, &trusted);

        let groups: Vec<&str> = chunk.records.iter().map(|r| r.group.as_str()).collect();
        assert_eq!(groups, ["g1", "g5"]);
        assert_eq!(
            chunk.skipped,
            [
                (1, Skipped::UntrustedSigner),
                (2, Skipped::BadSignature),
                (3, Skipped::Unreadable)
            ]
        );
        assert_eq!(chunk.next, 5);
        // Nothing is trusted without registered keys.
        let none = read_chunk(&chunk_batch(&broker), 0, 1, &Trusted::new());
        assert!(none.records.is_empty());
    }

    fn chunk_batch(key: &SigningKey) -> Vec<Bytes> {
        let mut b = BatchBuilder::with_capacity(1024);
        b.push(&record(key, "g", PREDICATE, 0));
        vec![b.finish()]
    }
}
