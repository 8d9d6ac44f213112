//! Produce: the checks a batch passes before its partition's writer takes it — leadership,
//! size, record partitions (D7), content ids and signatures (D5).

use std::sync::Arc;

use steme_protocol::assertion::{BatchVerifier, subject_of};
use steme_protocol::messages::authenticate::key_principal;
use steme_protocol::messages::produce::{ProduceRequest, ProduceResponse};
use steme_protocol::{ApiError, AssertionId, ErrorCode, RecordBatch, partition_for};
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
    let (count, verify, signers) = {
        let state = broker.metadata();
        let t = state
            .topics
            .get(&r.topic)
            .ok_or_else(|| BrokerError::UnknownTopic {
                topic: r.topic.clone(),
            })?;
        let config = t.config();
        let signers = Signers::of(&r.topic, config.clone(), principal)?;
        (
            t.partitions.len() as u32,
            signers.restricts()
                || config
                    .verify_signatures
                    .unwrap_or(broker.config().verify_signatures),
            signers,
        )
    };
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
    let (batch, ids) = tokio::task::spawn_blocking(move || {
        signers.check(&batch)?;
        check_batch(&batch, partition, count, verify).map(|ids| (batch, ids))
    })
    .await
    .map_err(BrokerError::Join)??;
    let (reply, rx) = oneshot::channel();
    p.produce(ProduceJob {
        batch,
        ids,
        causality: r.causality,
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

/// Checks every record's partition (D7), computes its content id and verifies the
/// signatures in one pass; the first bad record is named.
pub(crate) fn check_batch(
    batch: &RecordBatch,
    partition: u32,
    partitions: u32,
    verify: bool,
) -> Result<Vec<AssertionId>, ApiError> {
    for r in batch.records() {
        let subject = subject_of(r.assertion).map_err(|e| {
            ApiError::other(
                ErrorCode::InvalidAssertion,
                format!("record {}: {e}", r.index),
            )
        })?;
        let expected = partition_for(subject, partitions);
        if expected != partition {
            return Err(ApiError::WrongPartition {
                record: r.index,
                expected,
            });
        }
    }
    if !verify {
        return Ok(batch.records().map(|r| r.id()).collect());
    }
    let mut verifier = BatchVerifier::default();
    verifier
        .verify(batch.records().map(|r| (r.assertion, r.signature)))
        .map_err(|e| ApiError::InvalidSignature {
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
    Ok(verifier.ids().collect())
}
