//! Sending sealed batches: one worker per partition writes them to the leader in order,
//! retries what failed, re-routes a batch refused because its topic grew, and answers every
//! record.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use steme_protocol::messages::produce::{ProduceRequest, ProduceResponse};
use steme_protocol::{ApiError, ErrorCode};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::accumulator::{Sealed, Waiter};
use super::reroute::{Piece, split_by_partition};
use super::{Ack, Shared};
use crate::error::ClientError;

/// The longest wait before retrying a request that failed because its partition's leader
/// changed or could not be reached: failover takes a few hundred milliseconds.
pub const LEADER_RETRY_MAX: Duration = Duration::from_millis(50);

/// The longest wait before retrying a batch a new partition refused with `SplitPending`:
/// the old partitions record their split points within a fraction of a second.
pub const SPLIT_PENDING_RETRY_MAX: Duration = Duration::from_millis(50);

/// Sends one partition's batches in order, keeping up to `max_in_flight_per_partition`
/// requests pipelined on the leader's connection.
pub(super) async fn partition_worker(
    shared: Arc<Shared>,
    partition: u32,
    mut rx: mpsc::UnboundedReceiver<Sealed>,
) {
    let in_flight = Arc::new(Semaphore::new(shared.config.max_in_flight_per_partition));
    while let Some(sealed) = rx.recv().await {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        // The first attempt is written from here, so batches leave in order; the wait for
        // the answer (and any retry) runs on its own task.
        let first = shared.start(partition, &sealed.batch).await;
        let shared = shared.clone();
        tokio::spawn(async move {
            match shared.finish(partition, &sealed.batch, first).await {
                Err((err, _)) if is_code(&err, ErrorCode::StaleMap) => {
                    shared.reroute(partition, sealed, err).await;
                }
                result => shared.deliver(partition, sealed, result),
            }
            // Held through a re-route too: with one request in flight per partition, the
            // partition's next batch waits until the moved records are stored.
            drop(permit);
        });
    }
}

fn is_code(err: &ClientError, code: ErrorCode) -> bool {
    err.api_error().map(ApiError::code) == Some(code)
}

type Started = Result<crate::connection::PendingResponse<ProduceResponse>, ClientError>;

impl Shared {
    fn request(&self, partition: u32, batch: &Bytes) -> ProduceRequest {
        ProduceRequest {
            topic: self.topic.to_string(),
            partition,
            acks: self.config.acks,
            timeout_ms: u32::try_from(self.config.request_timeout.as_millis()).unwrap_or(u32::MAX),
            causality: Some(self.max_hlc.load(Ordering::Relaxed)).filter(|&h| h != 0),
            batch: batch.clone(),
        }
    }

    /// How long the client waits for an answer: a little longer than the broker's timeout.
    fn wait_timeout(&self) -> Duration {
        self.config.request_timeout + Duration::from_secs(1)
    }

    async fn start(&self, partition: u32, batch: &Bytes) -> Started {
        let conn = self.cluster.leader(&self.topic, partition).await?;
        conn.send(&self.request(partition, batch)).await
    }

    /// Waits for the first attempt, retrying retriable failures with backoff. On failure
    /// returns the last error and the number of attempts made. `StaleMap` is returned at
    /// once: the batch must go elsewhere, not to this partition again.
    async fn finish(
        &self,
        partition: u32,
        batch: &Bytes,
        first: Started,
    ) -> Result<ProduceResponse, (ClientError, u32)> {
        let mut result = match first {
            Ok(pending) => pending.wait(self.wait_timeout()).await,
            Err(e) => Err(e),
        };
        let mut attempt = 0u32;
        let mut failing_since = None;
        loop {
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            self.cluster.note_error(&self.topic, partition, &err);
            if is_code(&err, ErrorCode::StaleMap) {
                return Err((err, attempt + 1));
            }
            let since = *failing_since.get_or_insert_with(Instant::now);
            let leader_change = err.invalidates_metadata();
            // A new partition waiting for its split points, like a leader change, is over
            // in well under a second: retried often, for up to the request timeout.
            let split_pending = is_code(&err, ErrorCode::SplitPending);
            let give_up = if leader_change || split_pending {
                self.config.retries == 0 || since.elapsed() >= self.config.request_timeout
            } else {
                attempt >= self.config.retries
            };
            if !err.is_retriable() || give_up {
                return Err((err, attempt + 1));
            }
            let mut delay = self.config.retry_backoff.delay(attempt);
            if leader_change {
                delay = delay.min(LEADER_RETRY_MAX);
            }
            if split_pending {
                delay = delay.min(SPLIT_PENDING_RETRY_MAX);
            }
            if let ClientError::Api(ApiError::Throttled { retry_after_ms, .. }) = &err {
                delay = delay.max(Duration::from_millis(u64::from(*retry_after_ms)));
            }
            tracing::debug!(topic = %self.topic, partition, attempt, error = %err, ?delay, "retrying produce");
            tokio::time::sleep(delay).await;
            attempt += 1;
            result = async {
                let conn = self.cluster.leader(&self.topic, partition).await?;
                conn.call(&self.request(partition, batch), self.wait_timeout())
                    .await
            }
            .await;
        }
    }

    /// Sends again a batch `partition` refused with `StaleMap` (`cause`): the topic grew
    /// and some of its subjects moved. Refreshes the topic's metadata, splits the batch by
    /// the new partition count (each subject's records stay together and in order) and
    /// sends each piece to its partition, answering every record from where it landed. A
    /// piece refused with `StaleMap` again (the metadata read was not yet the new map, or
    /// the topic grew again) is split and sent again after a short backoff, for up to the
    /// request timeout. The batch's buffer room and in-flight slot are given back at the
    /// end, so that the accumulator sends nothing routed by the new count before the
    /// records of the old one are stored.
    async fn reroute(&self, partition: u32, sealed: Sealed, mut cause: ClientError) {
        let Sealed {
            batch,
            waiters,
            reserved,
            in_flight,
            // Held until every piece is answered: `flush` and the accumulator's wait for
            // the old map's batches count this batch until then.
            _flush_group,
            _map_group,
        } = sealed;
        let since = Instant::now();
        let mut stale = vec![Piece {
            partition,
            batch,
            waiters,
        }];
        let mut attempt = 0u32;
        while !stale.is_empty() {
            let partitions = match self.refresh_partition_count().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(topic = %self.topic, error = %e, "cannot refresh the topic's map");
                    cause = e;
                    0
                }
            };
            if partitions > 0 {
                let pieces: Vec<Piece> = stale
                    .drain(..)
                    .flat_map(|p| split_by_partition(&p.batch, p.waiters, partitions))
                    .collect();
                tracing::debug!(topic = %self.topic, partition, partitions, pieces = pieces.len(), "re-routing a batch after the topic grew");
                // Written in order, then awaited together: the pieces go to different
                // partitions, and each subject's records are all in one piece.
                let mut started = Vec::with_capacity(pieces.len());
                for p in &pieces {
                    started.push(self.start(p.partition, &p.batch).await);
                }
                let results = futures::future::join_all(
                    pieces
                        .iter()
                        .zip(started)
                        .map(|(p, first)| self.finish(p.partition, &p.batch, first)),
                )
                .await;
                for (piece, result) in pieces.into_iter().zip(results) {
                    match result {
                        Err((err, _)) if is_code(&err, ErrorCode::StaleMap) => {
                            cause = err;
                            stale.push(piece);
                        }
                        result => self.answer(piece.partition, piece.waiters, result),
                    }
                }
            }
            if stale.is_empty() {
                break;
            }
            if self.config.retries == 0 || since.elapsed() >= self.config.request_timeout {
                let cause = Arc::new(cause);
                for piece in stale {
                    self.fail(piece.partition, piece.waiters, attempt + 2, &cause);
                }
                break;
            }
            let delay = self
                .config
                .retry_backoff
                .delay(attempt)
                .min(LEADER_RETRY_MAX);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
        self.release(reserved, &in_flight);
    }

    /// Reads the topic's metadata afresh; its partition count then.
    async fn refresh_partition_count(&self) -> Result<u32, ClientError> {
        let topics = [self.topic.to_string()];
        let meta = self.cluster.refresh(Some(&topics)).await?;
        meta.topics
            .iter()
            .find(|t| *t.name == *self.topic)
            .map(|t| t.partitions.len() as u32)
            .filter(|&n| n > 0)
            .ok_or_else(|| ClientError::UnknownTopic {
                topic: self.topic.to_string(),
            })
    }

    /// Answers every record of a batch and returns its buffer space.
    pub(super) fn deliver(
        &self,
        partition: u32,
        sealed: Sealed,
        result: Result<ProduceResponse, (ClientError, u32)>,
    ) {
        self.release(sealed.reserved, &sealed.in_flight);
        self.answer(partition, sealed.waiters, result);
    }

    /// Gives back a batch's buffer room and its partition's in-flight slot.
    fn release(&self, reserved: usize, in_flight: &AtomicUsize) {
        self.buffer.add_permits(reserved);
        if in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
    }

    /// Answers the records of a batch sent to `partition`, in order.
    fn answer(
        &self,
        partition: u32,
        waiters: Vec<Waiter>,
        result: Result<ProduceResponse, (ClientError, u32)>,
    ) {
        let result = result.and_then(|resp| {
            if resp.duplicates.len() == waiters.len() {
                Ok(resp)
            } else {
                let err = ClientError::Protocol {
                    addr: "partition leader".into(),
                    detail: format!(
                        "produce response for {}/{partition} has {} entries for {} records",
                        self.topic,
                        resp.duplicates.len(),
                        waiters.len()
                    ),
                };
                Err((err, 1))
            }
        });
        match result {
            Ok(resp) => {
                // The token moves before any ack is delivered: whoever holds an ack finds a
                // token at least as late as it.
                let max_hlc = resp.record_acks().map(|a| a.hlc).max().unwrap_or(0);
                self.max_hlc.fetch_max(max_hlc, Ordering::Relaxed);
                for (w, ack) in waiters.into_iter().zip(resp.record_acks()) {
                    w.reply.send(Ok(Ack {
                        id: w.id,
                        // A duplicate stored before the topic grew is in its old partition.
                        partition: ack.partition.unwrap_or(partition),
                        offset: ack.offset,
                        hlc: ack.hlc,
                        duplicate: ack.duplicate,
                    }));
                }
            }
            Err((cause, attempts)) => self.fail(partition, waiters, attempts, &Arc::new(cause)),
        }
    }

    fn fail(&self, partition: u32, waiters: Vec<Waiter>, attempts: u32, cause: &Arc<ClientError>) {
        tracing::warn!(topic = %self.topic, partition, attempts, error = %cause, "produce failed");
        for w in waiters {
            w.reply.send(Err(ClientError::ProduceFailed {
                topic: self.topic.to_string(),
                partition,
                attempts,
                cause: cause.clone(),
            }));
        }
    }
}
