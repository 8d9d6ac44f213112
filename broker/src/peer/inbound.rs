//! The receiving side of the Raft transport: `Raft` frames from peers, handed to the group
//! they name.
//!
//! Appends of a pipelined stream must reach their group in the order they arrived, and be
//! answered in that order; everything else (votes, heartbeats, snapshots, transfers) is an
//! independent RPC and is served concurrently. So each connection keeps, per group, a *pipe*:
//! its requests go to openraft's `Raft::stream_append` in arrival order, and a task writes the
//! answers back as they complete. When a stream ends on an error (a conflict, a higher vote),
//! the requests queued behind the error are answered with a refusal, and the next append
//! opens a new pipe — the leader restarts its stream from what the follower answered.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use openraft::raft::AppendEntriesRequest;
use steme_protocol::frame::FrameHeader;
use steme_protocol::messages::raft::RaftResponse;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::raft::group::{AppendStream, GroupRaft};
use crate::raft::rpc::RaftRpc;
use crate::raft::types::TypeConfig;
use crate::reply::{Outbound, Reply, answer};

/// What a request holds while in flight (the connection's budgets).
pub type Held = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// Requests of one pipe waiting for their answers, in order.
struct Queue {
    waiting: VecDeque<(FrameHeader, Held)>,
    /// The stream ended; new appends need a new pipe.
    ended: bool,
}

struct Pipe {
    queue: Arc<Mutex<Queue>>,
    tx: mpsc::UnboundedSender<AppendEntriesRequest<TypeConfig>>,
}

/// The pipes of one connection, by group.
#[derive(Default)]
pub struct Pipes {
    by_group: HashMap<u64, Pipe>,
}

fn reply(rpc: &RaftRpc) -> Reply {
    Reply::ok(RaftResponse {
        payload: rpc.encode(),
    })
}

fn lock(q: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipes {
    /// Hands a stream append to its group's pipe, in arrival order.
    pub fn push(
        &mut self,
        raft: Option<GroupRaft>,
        group: u64,
        header: FrameHeader,
        req: AppendEntriesRequest<TypeConfig>,
        held: Held,
        out: &mpsc::Sender<Outbound>,
    ) {
        let mut entry = Some((header, held, req));
        if let Some(pipe) = self.by_group.get(&group) {
            let mut q = lock(&pipe.queue);
            if !q.ended {
                let (header, held, req) = entry.take().expect("not yet pushed");
                q.waiting.push_back((header, held));
                if let Err(mpsc::error::SendError(req)) = pipe.tx.send(req) {
                    let (header, held) = q.waiting.pop_back().expect("just pushed");
                    entry = Some((header, held, req));
                }
            }
        }
        let Some((header, held, req)) = entry else {
            return;
        };
        let Some(raft) = raft else {
            self.by_group.remove(&group);
            let out = out.clone();
            tokio::spawn(async move {
                let rpc = RaftRpc::Refused(format!("group {group} is not open on this broker"));
                answer(&out, header, reply(&rpc), held).await;
            });
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Mutex::new(Queue {
            waiting: VecDeque::from([(header, held)]),
            ended: false,
        }));
        let _ = tx.send(req);
        tokio::spawn(answer_in_order(
            raft.stream_append(rx),
            queue.clone(),
            out.clone(),
        ));
        self.by_group.insert(group, Pipe { queue, tx });
    }
}

/// Writes a pipe's answers in order; when its stream ends, refuses what is still queued.
async fn answer_in_order(
    mut answers: AppendStream,
    queue: Arc<Mutex<Queue>>,
    out: mpsc::Sender<Outbound>,
) {
    while let Some(item) = answers.next().await {
        let (rpc, end) = match item {
            Ok(r) => {
                let end = r.is_err();
                (RaftRpc::StreamAppended(r), end)
            }
            Err(fatal) => (RaftRpc::Refused(fatal.to_string()), true),
        };
        let Some((header, held)) = lock(&queue).waiting.pop_front() else {
            break;
        };
        let sent = answer(&out, header, reply(&rpc), held).await;
        if end || !sent {
            break;
        }
    }
    let rest = {
        let mut q = lock(&queue);
        q.ended = true;
        std::mem::take(&mut q.waiting)
    };
    let refused = RaftRpc::Refused("append stream reset; resend from the last answer".into());
    for (header, held) in rest {
        answer(&out, header, reply(&refused), held).await;
    }
}
