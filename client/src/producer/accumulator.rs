//! The accumulator: one task that routes records to partitions, owns every partition's
//! open batch, seals batches by size and linger (or at once when their partition has
//! nothing in flight), and hands them to the partition workers.
//!
//! It also follows the topic's growth. When the cluster's metadata shows more partitions
//! than it routes by, it seals every open batch (routed by the old count), starts routing
//! by the new count, and holds the batches of the new partitions until every batch routed
//! by the old count is answered (re-routed ones included, see `send`): a subject that
//! moved then has its old records stored before its new ones are sent.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use steme_protocol::batch::HEADER_LEN;
use steme_protocol::{AssertionId, BatchBuilder, partition_for};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ack::Reply;
use super::send::partition_worker;
use super::{Command, Enqueued, Shared, record_size};
use crate::error::ClientError;

/// A waiting record of an open batch: its id (for the ack) and where to send the ack.
pub(super) struct Waiter {
    pub(super) id: AssertionId,
    pub(super) reply: Reply,
}

/// A batch ready to send.
pub(super) struct Sealed {
    pub(super) batch: Bytes,
    pub(super) waiters: Vec<Waiter>,
    pub(super) reserved: usize,
    /// Its partition's count of batches sealed and not yet answered.
    pub(super) in_flight: Arc<AtomicUsize>,
    /// Held until the batch is answered; [`Producer::flush`] waits for every clone to drop.
    pub(super) _flush_group: mpsc::Sender<()>,
    /// Held from when the batch is handed to its worker until it is answered: the
    /// accumulator waits for every clone of a map's group to drop before it sends the
    /// batches of partitions a newer map added.
    pub(super) _map_group: Option<mpsc::Sender<()>>,
}

/// The open batch of one partition.
pub(super) struct OpenBatch {
    pub(super) builder: Option<BatchBuilder>,
    pub(super) waiters: Vec<Waiter>,
    pub(super) reserved: usize,
    pub(super) opened_at: Instant,
    /// Size of the previous batch, to size the next builder's buffer.
    pub(super) last_size: usize,
    /// Batches of this partition sealed and not yet answered.
    pub(super) in_flight: Arc<AtomicUsize>,
}

impl OpenBatch {
    pub(super) fn new() -> Self {
        OpenBatch {
            builder: None,
            waiters: Vec::new(),
            reserved: 0,
            opened_at: Instant::now(),
            last_size: 16 * 1024,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(super) fn size(&self) -> usize {
        self.builder.as_ref().map_or(0, BatchBuilder::size_bytes)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    /// Adds a record. Returns the batch that had to be sealed first to make room, if any.
    pub(super) fn push(
        &mut self,
        rec: Enqueued,
        max_batch_bytes: usize,
        group: &mpsc::Sender<()>,
    ) -> Option<Sealed> {
        let size = record_size(&rec.assertion);
        let sealed = if !self.is_empty() && self.size() + size > max_batch_bytes {
            self.seal(group)
        } else {
            None
        };
        if self.builder.is_none() {
            let cap = (self.last_size + self.last_size / 4)
                .clamp(HEADER_LEN + size, max_batch_bytes.max(HEADER_LEN + size));
            self.builder = Some(BatchBuilder::with_capacity(cap));
            self.opened_at = Instant::now();
        }
        self.builder
            .as_mut()
            .expect("just set")
            .push(&rec.assertion);
        self.waiters.push(Waiter {
            id: rec.assertion.id(),
            reply: rec.reply,
        });
        self.reserved += rec.reserved;
        sealed
    }

    pub(super) fn is_full(&self, max_batch_bytes: usize) -> bool {
        self.size() >= max_batch_bytes
    }

    pub(super) fn seal(&mut self, group: &mpsc::Sender<()>) -> Option<Sealed> {
        let builder = self.builder.take()?;
        self.last_size = builder.size_bytes();
        let capacity = self.waiters.len();
        Some(Sealed {
            batch: builder.finish(),
            waiters: std::mem::replace(&mut self.waiters, Vec::with_capacity(capacity)),
            reserved: std::mem::take(&mut self.reserved),
            in_flight: self.in_flight.clone(),
            _flush_group: group.clone(),
            _map_group: None,
        })
    }
}

/// Owns the open batches; seals them by size and linger and hands them to the partition
/// workers. A single task, so batches need no locks.
pub(super) struct Accumulator {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: mpsc::Receiver<Command>,
    /// One per partition records are routed to (the partition count it routes by).
    pub(super) open: Vec<OpenBatch>,
    pub(super) workers: Vec<Option<mpsc::UnboundedSender<Sealed>>>,
    pub(super) flush_group: (mpsc::Sender<()>, mpsc::Receiver<()>),
    /// Every batch handed to a worker under the current map holds a clone of the sender;
    /// the receiver tells when they are all answered.
    pub(super) map_group: (mpsc::Sender<()>, mpsc::Receiver<()>),
    /// After the topic grew: the batches held back, and the old map's group to wait for.
    pub(super) gate: Option<Gate>,
}

/// The batches of partitions added by a growth, held until every batch sent under the old
/// map is answered.
pub(super) struct Gate {
    /// The first partition held (the old count).
    pub(super) from: usize,
    /// Closed (`recv` gives `None`) once every batch sent under the old map is answered.
    pub(super) old_map: mpsc::Receiver<()>,
    /// Sealed batches of held partitions, in the order they were sealed.
    pub(super) held: Vec<(usize, Sealed)>,
}

/// How many queued commands the accumulator takes per wake-up before checking timers.
pub(super) const DRAIN_BURST: usize = 4096;

impl Accumulator {
    pub(super) fn new(shared: Arc<Shared>, rx: mpsc::Receiver<Command>) -> Self {
        let n = shared.partitions.load(Ordering::Relaxed) as usize;
        Accumulator {
            shared,
            rx,
            open: (0..n).map(|_| OpenBatch::new()).collect(),
            workers: (0..n).map(|_| None).collect(),
            flush_group: mpsc::channel(1),
            map_group: mpsc::channel(1),
            gate: None,
        }
    }

    pub(super) async fn run(mut self) {
        let shared = self.shared.clone();
        loop {
            let deadline = self.next_deadline();
            let gated = self.gate.is_some();
            let cmd = tokio::select! {
                cmd = self.rx.recv() => cmd,
                _ = old_map_answered(&mut self.gate), if gated => {
                    self.open_gate();
                    self.follow_growth();
                    self.seal_ready();
                    continue;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.seal_ready();
                    continue;
                }
                _ = shared.idle.notified() => {
                    self.seal_ready();
                    continue;
                }
            };
            if self.burst(cmd).is_break() {
                // What is held must still be sent (its records' senders wait for acks).
                if self.gate.is_some() {
                    old_map_answered(&mut self.gate).await;
                    self.open_gate();
                }
                return;
            }
            self.seal_ready();
        }
    }

    /// Routes by a larger partition count if the cluster's metadata shows one and no
    /// earlier growth is still held back: seals every open batch (routed by the old count)
    /// and sends it, starts a new map group, and holds the new partitions' batches until
    /// the old group is answered. A growth seen while one is held back waits for it.
    pub(super) fn follow_growth(&mut self) {
        if self.gate.is_some() {
            return;
        }
        let Some(count) = self
            .shared
            .cluster
            .known_partition_count(&self.shared.topic)
        else {
            return;
        };
        let old = self.open.len();
        if count as usize <= old {
            return;
        }
        self.seal_all();
        // The old sender is dropped here: only the batches sent under the old map hold it.
        let (_, old_map) = std::mem::replace(&mut self.map_group, mpsc::channel(1));
        self.open
            .extend((old..count as usize).map(|_| OpenBatch::new()));
        self.workers.extend((old..count as usize).map(|_| None));
        self.shared.partitions.store(count, Ordering::Relaxed);
        tracing::debug!(topic = %self.shared.topic, from = old, to = count, "the topic grew; routing by the new partition count");
        self.gate = Some(Gate {
            from: old,
            old_map,
            held: Vec::new(),
        });
    }

    /// Sends the batches held back by a growth, in the order they were sealed.
    pub(super) fn open_gate(&mut self) {
        if let Some(gate) = self.gate.take() {
            for (p, sealed) in gate.held {
                self.send(p, sealed);
            }
        }
    }

    /// Handles `first` and then whatever else is queued, up to [`DRAIN_BURST`] records.
    /// Breaks when the producer is closed or dropped.
    pub(super) fn burst(&mut self, first: Option<Command>) -> ControlFlow<()> {
        self.follow_growth();
        let mut cmd = first;
        let mut handled = 0;
        loop {
            match cmd {
                Some(Command::Record(rec)) => self.add(rec),
                Some(Command::Records(recs)) => {
                    // Counted as records, so a burst stays as long as before.
                    handled += recs.len().saturating_sub(1);
                    recs.into_iter().for_each(|rec| self.add(rec));
                }
                Some(Command::Flush(reply)) => self.flush(reply),
                Some(Command::Close(reply)) => {
                    self.flush(reply);
                    return ControlFlow::Break(());
                }
                None => {
                    self.seal_all();
                    return ControlFlow::Break(());
                }
            }
            handled += 1;
            if handled >= DRAIN_BURST {
                break;
            }
            // Taken only when it will be handled in this burst (a command taken and then
            // dropped would leave its sender waiting for an ack that never comes).
            cmd = match self.rx.try_recv() {
                Ok(next) => Some(next),
                Err(_) => break,
            };
        }
        ControlFlow::Continue(())
    }

    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.open
            .iter()
            .filter(|b| !b.is_empty())
            .map(|b| b.opened_at + self.shared.config.linger)
            .min()
    }

    pub(super) fn add(&mut self, rec: Enqueued) {
        let count = self.open.len() as u32;
        let p = partition_for(&rec.assertion.assertion().subject, count) as usize;
        let max = self.shared.config.max_batch_bytes;
        if let Some(sealed) = self.open[p].push(rec, max, &self.flush_group.0) {
            self.dispatch(p, sealed);
        }
        if self.open[p].is_full(max) {
            self.seal(p);
        }
    }

    pub(super) fn seal(&mut self, p: usize) {
        if let Some(sealed) = self.open[p].seal(&self.flush_group.0) {
            self.dispatch(p, sealed);
        }
    }

    /// Seals every open batch whose partition has nothing in flight, or whose linger is
    /// over. Called after each burst of commands, so a burst's records of one idle
    /// partition leave together.
    pub(super) fn seal_ready(&mut self) {
        let now = Instant::now();
        let linger = self.shared.config.linger;
        for p in 0..self.open.len() {
            let open = &self.open[p];
            if !open.is_empty()
                && (open.in_flight.load(Ordering::Acquire) == 0 || open.opened_at + linger <= now)
            {
                self.seal(p);
            }
        }
    }

    pub(super) fn seal_all(&mut self) {
        for p in 0..self.open.len() {
            self.seal(p);
        }
    }

    /// Seals everything and answers `reply` once every batch sealed so far is answered.
    pub(super) fn flush(&mut self, reply: oneshot::Sender<()>) {
        self.seal_all();
        let (tx, mut rx) = std::mem::replace(&mut self.flush_group, mpsc::channel(1));
        drop(tx);
        tokio::spawn(async move {
            // `None` once every sealed batch holding a clone of the old sender is done.
            let _ = rx.recv().await;
            let _ = reply.send(());
        });
    }

    /// Counts a sealed batch in flight and sends it, or holds it while its partition waits
    /// for the old map's batches.
    pub(super) fn dispatch(&mut self, p: usize, sealed: Sealed) {
        sealed.in_flight.fetch_add(1, Ordering::AcqRel);
        match &mut self.gate {
            Some(gate) if p >= gate.from => gate.held.push((p, sealed)),
            _ => self.send(p, sealed),
        }
    }

    fn send(&mut self, p: usize, mut sealed: Sealed) {
        sealed._map_group = Some(self.map_group.0.clone());
        let worker = self.workers[p].get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(partition_worker(self.shared.clone(), p as u32, rx));
            tx
        });
        if let Err(mpsc::error::SendError(sealed)) = worker.send(sealed) {
            // The worker is gone only if the runtime is shutting down.
            self.shared
                .deliver(p as u32, sealed, Err((ClientError::ProducerClosed, 0)));
        }
    }
}

/// Completes once every batch sent under the map the gate waits for is answered (never
/// without a gate).
pub(super) async fn old_map_answered(gate: &mut Option<Gate>) {
    match gate {
        Some(g) => while g.old_map.recv().await.is_some() {},
        None => std::future::pending().await,
    }
}
