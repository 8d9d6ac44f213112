//! What a fetch answer holds: [`Record`]s, zero-copy slices of the answer, taken only from
//! batches that continue the partition's log from the offset asked for.
//!
//! The broker answers a fetch for offset `o` with whole batches, the first holding `o`
//! (so it may begin before `o`) and each one after it beginning where the one before
//! ended. [`continuous_batches`] checks exactly that; a batch that breaks the sequence — a
//! gap, an overlap, a batch wholly before `o` — ends the answer with
//! [`ClientError::OffsetDiscontinuity`], and nothing past it is returned.

use std::sync::Arc;

use bytes::Bytes;
use steme_protocol::assertion::verify_one;
use steme_protocol::batch::{BatchIter, SIGNATURE_LEN};
use steme_protocol::{Assertion, AssertionId, RecordBatch, SignedAssertion};

use crate::error::ClientError;

/// One record read from a partition. Its bytes are a slice of the fetch response.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    topic: Arc<str>,
    partition: u32,
    offset: u64,
    hlc: u64,
    /// Signature followed by the canonical assertion.
    raw: Bytes,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("hlc", &self.hlc)
            .field("id", &self.id())
            .finish()
    }
}

impl Record {
    /// The topic read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partition read from.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The record's offset in its partition.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The HLC (NTP64) the leader stamped.
    pub fn hlc(&self) -> u64 {
        self.hlc
    }

    /// The content id: BLAKE3 of the canonical bytes (computed on each call).
    pub fn id(&self) -> AssertionId {
        AssertionId::of(self.canonical())
    }

    /// The signer's public key.
    pub fn signer(&self) -> &[u8; 32] {
        self.canonical()[steme_protocol::assertion::SIGNER_RANGE]
            .try_into()
            .expect("validated records hold the signer key")
    }

    /// The Ed25519 signature over the id.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        self.raw[..SIGNATURE_LEN]
            .try_into()
            .expect("validated records hold a signature")
    }

    /// The canonical assertion bytes.
    pub fn canonical(&self) -> &[u8] {
        &self.raw[SIGNATURE_LEN..]
    }

    /// The canonical assertion bytes as a zero-copy `Bytes`.
    pub fn canonical_bytes(&self) -> Bytes {
        self.raw.slice(SIGNATURE_LEN..)
    }

    /// Decodes the assertion.
    pub fn assertion(&self) -> Result<Assertion, ClientError> {
        Assertion::decode(self.canonical())
            .map(|(a, _)| a)
            .map_err(|source| self.verify_error(source))
    }

    /// Decodes into a [`SignedAssertion`] (copies the bytes; does not verify).
    pub fn signed(&self) -> Result<SignedAssertion, ClientError> {
        SignedAssertion::from_record(self.canonical(), self.signature())
            .map_err(|source| self.verify_error(source))
    }

    /// Verifies the signature over the id (strict; weak keys refused).
    pub fn verify(&self) -> Result<(), ClientError> {
        verify_one(self.canonical(), self.signature()).map_err(|source| self.verify_error(source))
    }

    fn verify_error(&self, source: steme_protocol::AssertionError) -> ClientError {
        ClientError::Verify {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            source,
        }
    }
}

/// The batches of a fetch answer for offset `from`, each checked to continue the log: the
/// first must hold `from` (`base_offset <= from < end_offset`) and every later one must begin
/// at the end offset of the one before it. Iteration ends after the first batch that is
/// damaged ([`ClientError::CorruptBatch`]) or out of sequence
/// ([`ClientError::OffsetDiscontinuity`]), so what was yielded before it is a continuous run
/// of the log.
pub fn continuous_batches<'a>(
    topic: &'a str,
    partition: u32,
    from: u64,
    records: &Bytes,
) -> ContinuousBatches<'a> {
    ContinuousBatches {
        topic,
        partition,
        batches: RecordBatch::split_all(records),
        expected: Some(from),
        first: true,
    }
}

/// Iterator of [`continuous_batches`].
#[derive(Debug, Clone)]
pub struct ContinuousBatches<'a> {
    topic: &'a str,
    partition: u32,
    batches: BatchIter,
    /// The offset the next batch must hold (the first batch) or begin at (the others);
    /// `None` once a batch failed, which ends the iteration.
    expected: Option<u64>,
    first: bool,
}

impl Iterator for ContinuousBatches<'_> {
    type Item = Result<RecordBatch, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let expected = self.expected?;
        let checked = match self.batches.next()? {
            Err((position, source)) => Err(ClientError::CorruptBatch {
                topic: self.topic.to_owned(),
                partition: self.partition,
                position,
                source,
            }),
            Ok(batch) => {
                let in_sequence = if self.first {
                    batch.base_offset() <= expected && expected < batch.end_offset()
                } else {
                    batch.base_offset() == expected
                };
                if in_sequence {
                    Ok(batch)
                } else {
                    Err(ClientError::OffsetDiscontinuity {
                        topic: self.topic.to_owned(),
                        partition: self.partition,
                        expected,
                        base_offset: batch.base_offset(),
                        end_offset: batch.end_offset(),
                    })
                }
            }
        };
        self.first = false;
        self.expected = checked.as_ref().ok().map(RecordBatch::end_offset);
        Some(checked)
    }
}

/// Appends the records at or after `from` of a fetch answer for `from` to `out`, zero-copy.
/// The first batch may begin before `from` (the broker returns whole batches); its earlier
/// records are skipped. On an error (see [`continuous_batches`]) the records of the batches
/// before the failed one are in `out`, and none after it.
pub fn records_from(
    topic: &Arc<str>,
    partition: u32,
    from: u64,
    records: &Bytes,
    out: &mut Vec<Record>,
) -> Result<(), ClientError> {
    for batch in continuous_batches(topic, partition, from, records) {
        let batch = batch?;
        let bytes = batch.as_bytes();
        for rec in batch.records().filter(|r| r.offset >= from) {
            // The record's signature and assertion are adjacent: one slice covers both.
            let start = rec.signature.as_ptr() as usize - bytes.as_ptr() as usize;
            let end = start + SIGNATURE_LEN + rec.assertion.len();
            out.push(Record {
                topic: topic.clone(),
                partition,
                offset: rec.offset,
                hlc: rec.hlc,
                raw: bytes.slice(start..end),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::testing::{batch_bytes, fetched, signed};

    fn offsets(out: &[Record]) -> Vec<u64> {
        out.iter().map(Record::offset).collect()
    }

    fn concat(batches: &[Vec<u8>]) -> Bytes {
        Bytes::from(batches.concat())
    }

    #[test]
    fn records_below_the_requested_offset_are_skipped() {
        let topic: Arc<str> = "facts".into();
        let buf = fetched();
        let mut out = Vec::new();
        records_from(&topic, 2, 11, &buf, &mut out).unwrap();
        assert_eq!(offsets(&out), vec![11, 12, 13, 14]);
        let r = &out[0];
        assert_eq!(r.hlc(), 1011);
        assert_eq!(r.partition(), 2);
        assert_eq!(r.id(), signed(1).id());
        assert_eq!(r.signer(), signed(1).signer());
        assert_eq!(r.assertion().unwrap(), *signed(1).assertion());
        r.verify().unwrap();
        assert_eq!(r.signed().unwrap(), signed(1));
        // Zero-copy: the record's bytes live inside the fetch buffer.
        let base = buf.as_ptr() as usize;
        let at = r.canonical().as_ptr() as usize;
        assert!(at > base && at < base + buf.len());

        let mut out = Vec::new();
        records_from(&topic, 2, 12, &buf, &mut out).unwrap();
        assert_eq!(offsets(&out), vec![12, 13, 14]);
    }

    #[test]
    fn corrupt_batch_names_its_position() {
        let topic: Arc<str> = "facts".into();
        let mut raw = fetched().to_vec();
        let second = steme_protocol::batch::peek_length(&raw).unwrap() as usize;
        raw[second + 60] ^= 0xff; // inside the second batch: its crc fails
        let mut out = Vec::new();
        let err = records_from(&topic, 0, 10, &Bytes::from(raw), &mut out).unwrap_err();
        assert!(
            matches!(err, ClientError::CorruptBatch { position, .. } if position == second),
            "{err:?}"
        );
        assert_eq!(
            offsets(&out),
            vec![10, 11, 12],
            "the batch before it is kept"
        );
    }

    #[test]
    fn tampered_record_fails_verify_naming_its_offset() {
        let topic: Arc<str> = "facts".into();
        let mut raw = fetched().to_vec();
        // Flip a signature byte of the first record and fix the crc, so the batch is valid.
        raw[steme_protocol::batch::HEADER_LEN + 4] ^= 1;
        let len = steme_protocol::batch::peek_length(&raw).unwrap() as usize;
        steme_protocol::batch::reseal(&mut raw[..len]);
        let mut out = Vec::new();
        records_from(&topic, 0, 10, &Bytes::from(raw), &mut out).unwrap();
        let err = out[0].verify().unwrap_err();
        assert_eq!(err.to_string(), "record facts/0@10 fails verification");
        out[1].verify().unwrap();
    }

    /// The discontinuity the answer holds, and the offsets returned before it.
    fn discontinuity(from: u64, answer: &Bytes) -> ((u64, u64, u64), Vec<u64>) {
        let mut out = Vec::new();
        let err = records_from(&"facts".into(), 4, from, answer, &mut out).unwrap_err();
        let ClientError::OffsetDiscontinuity {
            topic,
            partition,
            expected,
            base_offset,
            end_offset,
        } = err
        else {
            panic!("expected a discontinuity, got {err:?}");
        };
        assert_eq!((topic.as_str(), partition), ("facts", 4));
        ((expected, base_offset, end_offset), offsets(&out))
    }

    #[test]
    fn gap_between_batches_is_an_error_after_the_records_before_it() {
        // 10..13, then 15..17: offsets 13 and 14 are missing.
        let answer = concat(&[batch_bytes(10, 0..3), batch_bytes(15, 3..5)]);
        assert_eq!(discontinuity(11, &answer), ((13, 15, 17), vec![11, 12]));
    }

    #[test]
    fn overlapping_batches_are_an_error() {
        // 10..13, then 12..14: offset 12 twice.
        let answer = concat(&[batch_bytes(10, 0..3), batch_bytes(12, 3..5)]);
        assert_eq!(discontinuity(10, &answer), ((13, 12, 14), vec![10, 11, 12]));
    }

    #[test]
    fn first_batch_must_hold_the_requested_offset() {
        // Starts past the requested offset: 20 and 21 are missing.
        let later = concat(&[batch_bytes(22, 0..3)]);
        assert_eq!(discontinuity(20, &later), ((20, 22, 25), vec![]));
        // Wholly before it: the answer is for an older position.
        let earlier = concat(&[batch_bytes(10, 0..3), batch_bytes(13, 3..5)]);
        assert_eq!(discontinuity(13, &earlier), ((13, 10, 13), vec![]));
    }

    #[test]
    fn nothing_after_a_failed_batch_is_yielded() {
        let answer = concat(&[
            batch_bytes(10, 0..3),
            batch_bytes(20, 3..5),
            batch_bytes(13, 5..6),
        ]);
        let results: Vec<bool> = continuous_batches("facts", 0, 10, &answer)
            .map(|b| b.is_ok())
            .collect();
        assert_eq!(results, vec![true, false]);
    }
}
