//! Acknowledgements: one per record ([`PendingAck`], from [`super::Producer::enqueue`]) or
//! one per group of records ([`PendingAcks`], from [`super::Producer::enqueue_many`], which
//! costs one channel for the whole group instead of one per record).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use steme_protocol::AssertionId;
use tokio::sync::oneshot;

use crate::error::ClientError;

/// Where an assertion landed.
///
/// With the `serde` feature it is `Serialize` and `Deserialize`, as
/// `{"id":"<hex>","partition":…,"offset":…,"hlc":…,"duplicate":…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Ack {
    /// The content id of the assertion.
    pub id: AssertionId,
    /// The partition it went to.
    pub partition: u32,
    /// Its offset there.
    pub offset: u64,
    /// The HLC the leader stamped (or had stamped, for a duplicate).
    pub hlc: u64,
    /// The assertion was already in the log: nothing was appended, and `offset`/`hlc` are
    /// where it already is.
    pub duplicate: bool,
}

/// The acknowledgement of one enqueued assertion; resolves when its batch is answered.
#[must_use = "the ack says whether the assertion was stored"]
#[derive(Debug)]
pub struct PendingAck {
    pub(super) rx: oneshot::Receiver<Result<Ack, ClientError>>,
}

impl Future for PendingAck {
    type Output = Result<Ack, ClientError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::ProducerClosed)))
    }
}

/// The acknowledgements of a group of enqueued assertions, in the order they were given;
/// resolves when every one of them is answered (they may span partitions and batches).
#[must_use = "the acks say whether the assertions were stored"]
#[derive(Debug)]
pub struct PendingAcks {
    pub(super) rx: oneshot::Receiver<Acks>,
    pub(super) len: usize,
}

impl Future for PendingAcks {
    type Output = Vec<Result<Ack, ClientError>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let len = self.len;
        Pin::new(&mut self.rx).poll(cx).map(|r| {
            r.unwrap_or_else(|_| (0..len).map(|_| Err(ClientError::ProducerClosed)).collect())
        })
    }
}

/// Where a record's answer goes.
pub(super) enum Reply {
    One(oneshot::Sender<Result<Ack, ClientError>>),
    /// Slot `index` of a group.
    Many(Arc<Gather>, u32),
}

impl Reply {
    pub(super) fn send(self, result: Result<Ack, ClientError>) {
        match self {
            Reply::One(tx) => {
                let _ = tx.send(result);
            }
            Reply::Many(gather, index) => gather.put(index as usize, result),
        }
    }
}

/// A group's answers as they arrive. If a record is dropped unanswered (the producer is
/// gone), the group's receiver sees its sender dropped and every answer is
/// [`ClientError::ProducerClosed`].
pub(super) struct Gather {
    acks: Mutex<Vec<Option<Result<Ack, ClientError>>>>,
    remaining: AtomicUsize,
    tx: Mutex<Option<oneshot::Sender<Acks>>>,
}

type Acks = Vec<Result<Ack, ClientError>>;

impl Gather {
    pub(super) fn new(len: usize) -> (Arc<Gather>, PendingAcks) {
        let (tx, rx) = oneshot::channel();
        let gather = Arc::new(Gather {
            acks: Mutex::new((0..len).map(|_| None).collect()),
            remaining: AtomicUsize::new(len),
            tx: Mutex::new(Some(tx)),
        });
        (gather, PendingAcks { rx, len })
    }

    fn put(&self, index: usize, result: Result<Ack, ClientError>) {
        let mut acks = self.acks.lock().unwrap_or_else(|p| p.into_inner());
        acks[index] = Some(result);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let all = std::mem::take(&mut *acks)
                .into_iter()
                .map(|a| a.unwrap_or(Err(ClientError::ProducerClosed)))
                .collect();
            drop(acks);
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(tx) = tx {
                let _ = tx.send(all);
            }
        }
    }
}
