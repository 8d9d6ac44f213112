//! Produce: the checks a batch passes before its partition's writer takes it — leadership,
//! size, record partitions (D7), content ids and signatures (D5).

use std::sync::Arc;

use steme_protocol::assertion::{BatchVerifier, VerifyError, subject_of};
use steme_protocol::messages::authenticate::key_principal;
use steme_protocol::messages::produce::{ProduceRequest, ProduceResponse};
use steme_protocol::{
    ApiError, AssertionId, ErrorCode, RecordBatch, jump_consistent_hash as place, subject_key,
};
use tokio::sync::oneshot;

use crate::error::BrokerError;
use crate::node::Broker;
use crate::partition::ProduceJob;
use crate::topic_config::TopicConfig;

/// Bytes a Raft append frame adds around one batch (frame, group, RPC and entry headers),
/// rounded up.
const RAFT_FRAMING: usize = 256;

pub async fn produce(
    broker: &Broker,
    principal: Option<&str>,
    r: ProduceRequest,
) -> Result<ProduceResponse, ApiError> {
    let p = broker.partition(&r.topic, r.partition)?;
    // One snapshot of the metadata for the whole request: the map its records are checked
    // against is the one its earlier copies are looked up by.
    let state = broker.metadata();
    let (map, counts, verify, signers) = {
        let t = state.topic(&r.topic)?;
        let config = t.config();
        let signers = Signers::of(&r.topic, config.clone(), principal)?;
        (
            t.map_of(r.partition),
            t.counts(),
            signers.restricts()
                || config
                    .verify_signatures
                    .unwrap_or(broker.config().verify_signatures),
            signers,
        )
    };
    if map.hlc_floor.is_none() {
        return Err(ApiError::other(
            ErrorCode::SplitPending,
            format!(
                "{}-{} was added by a growth whose old partitions are still recording their \
                 split points; it takes records once they all have",
                r.topic, r.partition
            ),
        ));
    }
    // Leadership is checked again by the writer; failing early saves the verification.
    let me = broker.node_id();
    let leader = p.leader().0;
    if leader != Some(me) {
        return Err(ApiError::NotLeader {
            leader: leader.and_then(|id| broker.leader_hint(id)),
            message: format!("broker {me} does not lead {}-{}", r.topic, r.partition),
        });
    }
    // A batch travels to followers inside a Raft frame, with a little more framing
    // than a produce request has; refuse now what could never be replicated.
    let max_batch = broker.config().max_frame_bytes.saturating_sub(RAFT_FRAMING);
    if r.batch.len() > max_batch {
        return Err(ApiError::other(
            ErrorCode::InvalidRequest,
            format!(
                "batch of {} bytes exceeds the {max_batch} bytes a replicated batch may have",
                r.batch.len()
            ),
        ));
    }
    let batch = RecordBatch::new(r.batch)
        .map_err(|e| ApiError::other(ErrorCode::CorruptBatch, e.to_string()))?;
    let partition = r.partition;
    // Partition check, ids and signatures: CPU work, off the async workers (D5).
    let (batch, ids, moved) = tokio::task::spawn_blocking(move || {
        signers.check(&batch)?;
        let mut moved = Vec::new();
        check_batch(
            &batch,
            partition,
            Expect::Latest(&counts, &mut moved),
            verify,
        )
        .map(|ids| (batch, ids, moved))
    })
    .await
    .map_err(BrokerError::Join)??;
    let earlier =
        super::earlier::earlier_copies(broker, state.topic(&r.topic)?, partition, &batch, &ids)
            .await?;
    let (reply, rx) = oneshot::channel();
    p.produce(ProduceJob {
        batch,
        ids,
        causality: r.causality,
        map: Some(map),
        moved,
        earlier,
        reply,
    })
    .await;
    rx.await.map_err(|_closed| BrokerError::PartitionClosed)?
}

/// Whose records a produce request may carry: the topic's allow-list
/// (`signers.allowed`) and, with `signers.must_match_principal`, only the key the
/// connection authenticated as.
struct Signers {
    topic: String,
    /// The topic's settings (`signers_allowed` is sorted).
    config: Arc<TopicConfig>,
    /// The one key every record must be signed with.
    principal_key: Option<[u8; 32]>,
}

impl Signers {
    fn of(
        topic: &str,
        config: Arc<TopicConfig>,
        principal: Option<&str>,
    ) -> Result<Signers, ApiError> {
        let principal_key = if config.signers_must_match_principal {
            let key = principal
                .and_then(|p| p.strip_prefix("key:"))
                .and_then(|hex_key| {
                    let mut k = [0u8; 32];
                    hex::decode_to_slice(hex_key, &mut k).ok().map(|()| k)
                });
            if key.is_none() {
                return Err(ApiError::other(
                    ErrorCode::AuthenticationRequired,
                    format!(
                        "topic {topic} accepts only records signed by the producer's own key \
                         (signers.must_match_principal), and this connection is {}: \
                         authenticate with the signing key (steme --auth-key FILE)",
                        principal.unwrap_or("not authenticated")
                    ),
                ));
            }
            key
        } else {
            None
        };
        Ok(Signers {
            topic: topic.to_owned(),
            config,
            principal_key,
        })
    }

    /// Whether the topic restricts signers (then signatures are always verified: an
    /// unverified signer field proves nothing).
    fn restricts(&self) -> bool {
        self.config.signers_allowed.is_some() || self.principal_key.is_some()
    }

    /// Refuses the whole batch at its first record signed by a key it may not carry.
    fn check(&self, batch: &RecordBatch) -> Result<(), ApiError> {
        if !self.restricts() {
            return Ok(());
        }
        for r in batch.records() {
            let signer = r.signer();
            let allowed = self.config.signers_allowed.as_deref();
            let why = if allowed.is_some_and(|a| a.binary_search(signer).is_err()) {
                "is not in the topic's signers.allowed"
            } else if self.principal_key.is_some_and(|k| &k != signer) {
                "is not the key this connection authenticated as (signers.must_match_principal)"
            } else {
                continue;
            };
            return Err(ApiError::InvalidSignature {
                record: r.index,
                message: format!(
                    "record {} is signed by {}, which {why} of topic {}; nothing from this request was stored",
                    r.index,
                    key_principal(signer),
                    self.topic
                ),
            });
        }
        Ok(())
    }
}

/// Which partition counts a record's subject is checked against: a topic's counts,
/// oldest first.
#[derive(Debug)]
pub(crate) enum Expect<'a> {
    /// A new record: it belongs where the latest count sends it. A record whose subject the
    /// topic's growth moved away from this partition is listed in the `Vec` (its index):
    /// the writer takes it only as a duplicate of one already here (a retry after a lost
    /// ack), and refuses the request with `StaleMap` otherwise. Any other misplaced record
    /// is `WrongPartition`.
    Latest(&'a [u32], &'a mut Vec<u32>),
    /// A record already in the log (a repair's copy): it was checked against one of them.
    AnyOf(&'a [u32]),
}

/// Checks every record's partition (D7), computes its content id and verifies the
/// signatures in one pass; the first bad record is named.
pub(crate) fn check_batch(
    batch: &RecordBatch,
    partition: u32,
    mut expect: Expect<'_>,
    verify: bool,
) -> Result<Vec<AssertionId>, ApiError> {
    for r in batch.records() {
        let subject = subject_of(r.assertion).map_err(|e| {
            ApiError::other(
                ErrorCode::InvalidAssertion,
                format!("record {}: {e}", r.index),
            )
        })?;
        // Hashed once, placed under each count the check needs.
        let key = subject_key(subject);
        match &mut expect {
            Expect::Latest(counts, moved) => {
                let latest = counts.last().copied().unwrap_or(1);
                let expected = place(key, latest);
                if expected == partition {
                    continue;
                }
                if counts.iter().any(|&c| place(key, c) == partition) {
                    moved.push(r.index);
                    continue;
                }
                return Err(ApiError::WrongPartition {
                    record: r.index,
                    expected,
                });
            }
            Expect::AnyOf(counts) => {
                if !counts.iter().any(|&c| place(key, c) == partition) {
                    return Err(ApiError::WrongPartition {
                        record: r.index,
                        expected: place(key, counts.last().copied().unwrap_or(1)),
                    });
                }
            }
        }
    }
    if !verify {
        return Ok(batch.records().map(|r| r.id()).collect());
    }
    let ids = verify_across_cores(batch).map_err(|e| ApiError::InvalidSignature {
        record: e.index as u32,
        message: e.reason.to_string(),
    })?;
    // A verified record still must be a canonical assertion (what consumers decode).
    for r in batch.records() {
        steme_protocol::Assertion::decode(r.assertion).map_err(|e| {
            ApiError::other(
                ErrorCode::InvalidAssertion,
                format!("record {}: {e}", r.index),
            )
        })?;
    }
    // The ids were computed once, for verification.
    Ok(ids)
}

/// Records below which a request's signatures are verified on one core: a thread costs
/// tens of microseconds, 64 signatures about a millisecond, so 128 are already worth
/// splitting.
const PARALLEL_VERIFY_MIN: usize = 128;

/// The cores this process may use, read once: `available_parallelism` reads the cgroup's
/// quota files on every call, and a produce request should not open files.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Verifies a batch's signatures, split into contiguous parts of about equal size over the
/// machine's cores (each verified in calls of
/// [`steme_protocol::assertion::VERIFY_CHUNK`]), and returns the records'
/// content ids in order. The error names the first bad record of the whole batch.
fn verify_across_cores(batch: &RecordBatch) -> Result<Vec<AssertionId>, VerifyError> {
    let records: Vec<(&[u8], &[u8; 64])> = batch
        .records()
        .map(|r| (r.assertion, r.signature))
        .collect();
    let cores = cores();
    let parts = if records.len() < PARALLEL_VERIFY_MIN {
        1
    } else {
        cores.min(records.len() / (PARALLEL_VERIFY_MIN / 2)).max(1)
    };
    let per_part = records.len().div_ceil(parts);
    let verify_part = |base: usize, part: &[(&[u8], &[u8; 64])]| {
        let mut v = BatchVerifier::default();
        v.verify(part.iter().copied())
            .map(|()| v.ids().collect::<Vec<_>>())
            .map_err(|e| VerifyError {
                index: base + e.index,
                reason: e.reason,
            })
    };
    if parts == 1 || per_part == 0 {
        return verify_part(0, &records);
    }
    let results: Vec<Result<Vec<AssertionId>, VerifyError>> = std::thread::scope(|s| {
        let mut chunks = records.chunks(per_part).enumerate();
        let first = chunks.next();
        let spawned: Vec<_> = chunks
            .map(|(i, part)| s.spawn(move || verify_part(i * per_part, part)))
            .collect();
        let mut out = vec![first.map_or(Ok(Vec::new()), |(_, p)| verify_part(0, p))];
        // A panic in a part is a bug: it fails this request (its task), as it would have
        // on one core.
        out.extend(
            spawned
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))),
        );
        out
    });
    // Parts are in batch order, so the first error is the first bad record.
    let mut ids = Vec::with_capacity(records.len());
    for r in results {
        ids.extend(r?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use steme_protocol::partition_for;
    use steme_protocol::{Assertion, BatchBuilder, SigningKey, Value};

    use super::*;

    /// A batch of `n` signed records, with the signatures of `bad` records flipped.
    fn batch(n: usize, bad: &[usize]) -> RecordBatch {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut b = BatchBuilder::with_capacity(n * 300);
        for i in 0..n {
            let a = Assertion {
                subject: format!("urn:t:{i}"),
                predicate: "p".into(),
                object: Value::Integer(i as i64),
                source: "s".into(),
                confidence: None,
                supersedes: None,
                issued_at: 1,
            }
            .sign(&key)
            .expect("sign");
            if bad.contains(&i) {
                let mut sig = a.signature().to_bytes();
                sig[0] ^= 1;
                b.push_raw(a.canonical(), &sig);
            } else {
                b.push(&a);
            }
        }
        RecordBatch::new(b.finish()).expect("valid batch")
    }

    #[test]
    fn records_a_growth_moved_away_are_listed_and_misplaced_ones_refused() {
        let b = batch(200, &[]);
        let subjects: Vec<String> = (0..200).map(|i| format!("urn:t:{i}")).collect();
        // Partition 0 of a topic grown from 4 to 6: keep only records that were its own.
        let here: Vec<usize> = (0..200)
            .filter(|&i| partition_for(&subjects[i], 4) == 0)
            .collect();
        let mut only_here = BatchBuilder::with_capacity(64 * 1024);
        for r in b.records().filter(|r| here.contains(&(r.index as usize))) {
            only_here.push_raw(r.assertion, r.signature);
        }
        let only_here = RecordBatch::new(only_here.finish()).expect("batch");
        let mut moved = Vec::new();
        let ids = check_batch(&only_here, 0, Expect::Latest(&[4, 6], &mut moved), true)
            .expect("every record was partition 0's");
        assert_eq!(ids.len(), here.len());
        let want: Vec<u32> = here
            .iter()
            .enumerate()
            .filter(|(_, i)| partition_for(&subjects[**i], 6) != 0)
            .map(|(n, _)| n as u32)
            .collect();
        assert!(!want.is_empty(), "some subjects move");
        assert_eq!(moved, want);
        // The whole batch names subjects that were never partition 0's.
        let err = check_batch(&b, 0, Expect::Latest(&[4, 6], &mut Vec::new()), false).unwrap_err();
        assert!(matches!(err, ApiError::WrongPartition { .. }), "{err}");
        // A repair's copy passes if either count puts it here.
        check_batch(&only_here, 0, Expect::AnyOf(&[4, 6]), false).expect("old records pass");
    }

    #[test]
    fn a_split_verification_returns_every_id_in_order() {
        let b = batch(1000, &[]);
        let ids = verify_across_cores(&b).expect("all good");
        let want: Vec<_> = b.records().map(|r| r.id()).collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn a_split_verification_names_the_first_bad_record_of_the_whole_batch() {
        for bad in [vec![700], vec![999], vec![5, 900], vec![600, 64]] {
            let err = verify_across_cores(&batch(1000, &bad)).unwrap_err();
            assert_eq!(err.index, *bad.iter().min().expect("one"), "{bad:?}");
        }
        // Below the split threshold too.
        assert_eq!(verify_across_cores(&batch(10, &[3])).unwrap_err().index, 3);
    }
}
