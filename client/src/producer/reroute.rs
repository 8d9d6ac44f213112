//! Re-routing a batch after its topic grew: a partition answers `StaleMap` when a record's
//! subject moved to a new partition (see `topic add-partitions`), and the whole batch is
//! refused. Its records are split, by the new partition count, into one batch per
//! partition, each record keeping its place among the others of its partition, so that a
//! subject's records (which all go to one partition) stay in the order they were enqueued.

use std::collections::BTreeMap;

use bytes::Bytes;
use steme_protocol::assertion::subject_of;
use steme_protocol::{BatchBuilder, RecordBatch, partition_for};

use super::accumulator::Waiter;

/// Part of a refused batch bound for one partition: its records and their waiters, in the
/// same order.
pub(super) struct Piece {
    pub(super) partition: u32,
    pub(super) batch: Bytes,
    pub(super) waiters: Vec<Waiter>,
}

/// Splits `batch` (whose records `waiters` answer, in order) into one piece per partition
/// of a topic of `partitions` partitions, in partition order.
///
/// # Panics
///
/// If `batch` is not a valid batch of as many records as `waiters`: the producer built it
/// from signed assertions, so anything else is a bug here.
pub(super) fn split_by_partition(
    batch: &Bytes,
    waiters: Vec<Waiter>,
    partitions: u32,
) -> Vec<Piece> {
    let batch = RecordBatch::new(batch.clone()).expect("the producer's own batch is valid");
    assert_eq!(
        batch.record_count() as usize,
        waiters.len(),
        "one waiter per record"
    );
    let mut parts: BTreeMap<u32, (BatchBuilder, Vec<Waiter>)> = BTreeMap::new();
    for (record, waiter) in batch.records().zip(waiters) {
        let subject = subject_of(record.assertion).expect("a signed assertion has a subject");
        let (builder, waiters) = parts
            .entry(partition_for(subject, partitions))
            .or_insert_with(|| {
                (
                    BatchBuilder::with_capacity(batch.as_bytes().len()),
                    Vec::new(),
                )
            });
        builder.push_raw(record.assertion, record.signature);
        waiters.push(waiter);
    }
    parts
        .into_iter()
        .map(|(partition, (builder, waiters))| Piece {
            partition,
            batch: builder.finish(),
            waiters,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer::ack::Reply;
    use steme_protocol::{Assertion, SignedAssertion, SigningKey, Value};
    use tokio::sync::oneshot;

    fn signed(subject: u32, seq: u32) -> SignedAssertion {
        Assertion {
            subject: format!("urn:test:{subject}"),
            predicate: "p".into(),
            object: Value::Integer(i64::from(seq)),
            source: "test".into(),
            confidence: None,
            supersedes: None,
            issued_at: 1_700_000_000_000,
        }
        .sign(&SigningKey::from_bytes(&[5; 32]))
        .unwrap()
    }

    /// A batch of `records` and their waiters, as the accumulator seals one.
    fn sealed(records: &[SignedAssertion]) -> (Bytes, Vec<Waiter>) {
        let mut b = BatchBuilder::default();
        let mut waiters = Vec::new();
        for r in records {
            b.push(r);
            let (tx, _rx) = oneshot::channel();
            waiters.push(Waiter {
                id: r.id(),
                reply: Reply::One(tx),
            });
        }
        (b.finish(), waiters)
    }

    #[test]
    fn moved_subjects_go_to_their_new_partition_in_order() {
        // Three records each of 40 subjects, interleaved: subject s's k-th record is
        // `signed(s, k)`. All were in partition 0 of a topic of one partition.
        let records: Vec<SignedAssertion> = (0..3)
            .flat_map(|seq| (0..40).map(move |s| signed(s, seq)))
            .collect();
        let (batch, waiters) = sealed(&records);
        let pieces = split_by_partition(&batch, waiters, 4);
        assert!(
            pieces.len() > 1,
            "some of 40 subjects move from 1 to 4 partitions"
        );
        assert!(pieces.windows(2).all(|w| w[0].partition < w[1].partition));
        let mut seen = Vec::new();
        for piece in &pieces {
            let b = RecordBatch::new(piece.batch.clone()).expect("a valid batch");
            assert_eq!(b.record_count() as usize, piece.waiters.len());
            for (record, waiter) in b.records().zip(&piece.waiters) {
                assert_eq!(record.id(), waiter.id, "each waiter stays with its record");
                let subject = subject_of(record.assertion).unwrap();
                assert_eq!(partition_for(subject, 4), piece.partition);
                seen.push(record.id());
            }
        }
        // Every record once, and each subject's records in their first order.
        assert_eq!(seen.len(), records.len());
        for s in 0..40 {
            let order: Vec<usize> = (0..3)
                .map(|k| {
                    let id = signed(s, k).id();
                    seen.iter().position(|&x| x == id).expect("record kept")
                })
                .collect();
            assert!(
                order.windows(2).all(|w| w[0] < w[1]),
                "subject {s}: {order:?}"
            );
        }
    }

    #[test]
    fn a_batch_whose_subjects_did_not_move_stays_whole() {
        let records: Vec<SignedAssertion> = (0..10).map(|s| signed(s, 0)).collect();
        let (batch, waiters) = sealed(&records);
        let pieces = split_by_partition(&batch, waiters, 1);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].partition, 0);
        assert_eq!(pieces[0].batch, batch, "the same bytes, record for record");
    }
}
