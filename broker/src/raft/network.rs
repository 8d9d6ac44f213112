//! Raft transport between brokers (D8).
//!
//! Each broker keeps one [`PeerLink`] — one TCP connection — to every other broker, and every
//! Raft group's traffic to that broker goes over it, each frame tagged with its group (the
//! protocol's `Raft` request). A pair of brokers therefore has one connection per direction;
//! each carries requests one way and their answers back, matched by correlation id.
//!
//! Two lanes share a connection: votes, heartbeats, leader transfers and forwarded metadata
//! commands go on the *control* lane, which the writer always drains first; appends that carry
//! entries and snapshots go on the *bulk* lane. Bulk frames are cut at [`CHUNK_BYTES`], so a
//! heartbeat waits for at most one chunk already on the wire, never for a queue of appends.
//!
//! Replication is pipelined: [`PeerClient::stream_append`] sends up to [`WINDOW`] appends of
//! a stream before the first answer comes back; the receiver feeds them to the group in
//! arrival order (see `inbound`) and answers in that order. A stream of one request (a
//! heartbeat) is an independent RPC and travels on the control lane.
//!
//! A link reconnects with backoff in the background. While it is down, calls fail at once as
//! unreachable (openraft then backs off), so a dead peer costs no more than its timeouts.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt, stream};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RaftNetworkV2};
use steme_protocol::frame::{FrameHeader, decode_frame};
use steme_protocol::messages::raft::RaftResponse;
use steme_protocol::messages::{ApiKey, decode_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::rpc::{Forwarded, RaftRpc};
use super::types::{Entry, LogId, NodeId, Snapshot, TypeConfig, Vote};

/// Appends of one stream in flight before the first is answered.
pub const WINDOW: usize = 16;
/// The largest append frame the leader builds; a bigger request is cut into several.
pub const CHUNK_BYTES: usize = 1 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long an append that carries entries may take to be answered (the follower fsyncs).
const BULK_TIMEOUT: Duration = Duration::from_secs(5);
/// The least time a heartbeat or vote is given: on a loaded machine a peer may take longer
/// than one heartbeat interval to answer, and that is not a failure yet.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);
const WRITE_BUFFER: usize = 64 * 1024;

/// Finds a broker's address (the `--peer` list, then the cluster metadata).
pub type Resolver = Arc<dyn Fn(NodeId) -> Option<String> + Send + Sync>;

/// Why an RPC to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("broker {0} is not connected")]
    NotConnected(NodeId),
    #[error("connection to broker {0} lost")]
    Closed(NodeId),
    #[error("broker {0} did not answer within {1:?}")]
    Timeout(NodeId, Duration),
    #[error("broker {0} refused: {1}")]
    Refused(NodeId, String),
    #[error("broker {0} answered with a malformed reply: {1}")]
    BadReply(NodeId, String),
}

/// The transport of one broker: a link per peer, shared by every group.
pub struct Transport {
    links: Mutex<HashMap<NodeId, Arc<PeerLink>>>,
    resolve: Resolver,
    max_frame: usize,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    pub fn new(resolve: Resolver, max_frame: usize) -> Arc<Transport> {
        Arc::new(Transport {
            links: Mutex::new(HashMap::new()),
            resolve,
            max_frame,
        })
    }

    /// The link to `target`, connecting in the background on first use.
    pub fn link(&self, target: NodeId, fallback_addr: &str) -> Arc<PeerLink> {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = links.get(&target) {
            return l.clone();
        }
        let link = Arc::new(PeerLink {
            target,
            fallback_addr: fallback_addr.to_owned(),
            resolve: self.resolve.clone(),
            max_frame: self.max_frame,
            state: Mutex::new(LinkState::default()),
            next_id: AtomicU32::new(1),
        });
        tokio::spawn(PeerLink::maintain(Arc::downgrade(&link)));
        links.insert(target, link.clone());
        link
    }

    /// The network factory of one Raft group.
    pub fn network(self: &Arc<Self>, group: u64) -> Network {
        Network {
            group,
            transport: self.clone(),
        }
    }

    /// Asks broker `target` (the metadata leader) to propose a metadata command.
    pub async fn forward(
        &self,
        target: NodeId,
        command: Bytes,
        timeout: Duration,
    ) -> Result<Forwarded, LinkError> {
        let addr = (self.resolve)(target).unwrap_or_default();
        let link = self.link(target, &addr);
        let rpc = RaftRpc::Forward(command);
        match link
            .call(Lane::Control, super::METADATA_GROUP, rpc, timeout)
            .await?
        {
            RaftRpc::Forwarded(f) => Ok(f),
            other => Err(unexpected(target, &other)),
        }
    }

    /// Closes every link (their tasks end; calls fail as not connected).
    pub fn shutdown(&self) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

fn unexpected(target: NodeId, rpc: &RaftRpc) -> LinkError {
    match rpc {
        RaftRpc::Refused(m) => LinkError::Refused(target, m.clone()),
        other => LinkError::BadReply(target, format!("unexpected {}", kind_name(other))),
    }
}

fn kind_name(rpc: &RaftRpc) -> &'static str {
    match rpc {
        RaftRpc::Append(_) => "append",
        RaftRpc::Appended(_) => "append result",
        RaftRpc::Vote(_) => "vote",
        RaftRpc::Voted(_) => "vote result",
        RaftRpc::Snapshot { .. } => "snapshot",
        RaftRpc::Installed(_) => "snapshot result",
        RaftRpc::PreVote(_) => "pre-vote",
        RaftRpc::StreamAppend(_) => "stream append",
        RaftRpc::StreamAppended(_) => "stream append result",
        RaftRpc::TransferLeader(_) => "transfer",
        RaftRpc::Transferred(_) => "transfer result",
        RaftRpc::Forward(_) => "forward",
        RaftRpc::Forwarded(_) => "forward result",
        RaftRpc::Refused(_) => "refusal",
    }
}

/// Which queue of the connection a frame waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Control,
    Bulk,
}

struct Outgoing {
    id: u32,
    group: u64,
    payload: Bytes,
}

type Waiter = oneshot::Sender<Result<Bytes, LinkError>>;

#[derive(Default)]
struct LinkState {
    conn: Option<Lanes>,
    /// Requests sent on the current connection and not yet answered.
    pending: HashMap<u32, Waiter>,
}

struct Lanes {
    control: mpsc::UnboundedSender<Outgoing>,
    bulk: mpsc::UnboundedSender<Outgoing>,
}

/// The connection from this broker to one peer.
pub struct PeerLink {
    target: NodeId,
    fallback_addr: String,
    resolve: Resolver,
    max_frame: usize,
    state: Mutex<LinkState>,
    next_id: AtomicU32,
}

impl PeerLink {
    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_connected(&self) -> bool {
        self.state().conn.is_some()
    }

    /// Queues one request now (so requests leave in the order they are sent) and returns
    /// its answer to await.
    pub fn send(self: &Arc<Self>, lane: Lane, group: u64, payload: Bytes) -> Answer {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut st = self.state();
        let sent = st.conn.as_ref().is_some_and(|c| {
            let q = match lane {
                Lane::Control => &c.control,
                Lane::Bulk => &c.bulk,
            };
            q.send(Outgoing { id, group, payload }).is_ok()
        });
        if sent {
            st.pending.insert(id, tx);
        } else {
            let _ = tx.send(Err(LinkError::NotConnected(self.target)));
        }
        Answer {
            rx,
            id,
            link: self.clone(),
        }
    }

    /// Sends one RPC and waits up to `timeout` for its answer.
    pub async fn call(
        self: &Arc<Self>,
        lane: Lane,
        group: u64,
        rpc: RaftRpc,
        timeout: Duration,
    ) -> Result<RaftRpc, LinkError> {
        let answer = self.send(lane, group, rpc.encode());
        self.decode(answer.within(timeout).await?)
    }

    fn decode(&self, payload: Bytes) -> Result<RaftRpc, LinkError> {
        RaftRpc::decode(payload).map_err(|e| LinkError::BadReply(self.target, e.to_string()))
    }

    /// Connects, serves the connection until it fails, reconnects with backoff; ends when
    /// the link is dropped.
    async fn maintain(weak: Weak<PeerLink>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let Some(link) = weak.upgrade() else { return };
            let addr = (link.resolve)(link.target).unwrap_or_else(|| link.fallback_addr.clone());
            let target = link.target;
            drop(link);
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await;
            match connected {
                Ok(Ok(sock)) => {
                    backoff = BACKOFF_MIN;
                    if let Err(e) = PeerLink::serve(&weak, sock).await {
                        tracing::info!(peer = target, %addr, error = %e, "raft connection lost");
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = target, %addr, error = %e, "cannot connect to peer")
                }
                Err(_) => tracing::debug!(peer = target, %addr, "connecting to peer timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn serve(weak: &Weak<PeerLink>, sock: TcpStream) -> io::Result<()> {
        sock.set_nodelay(true)?;
        let (rd, wr) = sock.into_split();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (bulk_tx, bulk_rx) = mpsc::unbounded_channel();
        let (max_frame, target) = {
            let Some(link) = weak.upgrade() else {
                return Ok(());
            };
            link.state().conn = Some(Lanes {
                control: control_tx,
                bulk: bulk_tx,
            });
            tracing::debug!(peer = link.target, "raft connection up");
            (link.max_frame, link.target)
        };
        let result = tokio::select! {
            r = write_lanes(wr, control_rx, bulk_rx) => r,
            r = read_answers(rd, weak.clone(), max_frame) => r,
        };
        if let Some(link) = weak.upgrade() {
            let pending = {
                let mut st = link.state();
                st.conn = None;
                std::mem::take(&mut st.pending)
            };
            for (_, w) in pending {
                let _ = w.send(Err(LinkError::Closed(target)));
            }
        }
        result
    }

    fn complete(&self, id: u32, answer: Result<Bytes, LinkError>) {
        if let Some(w) = self.state().pending.remove(&id) {
            let _ = w.send(answer);
        }
    }
}

/// The answer to one request; dropping it forgets the request.
pub struct Answer {
    rx: oneshot::Receiver<Result<Bytes, LinkError>>,
    id: u32,
    link: Arc<PeerLink>,
}

impl Answer {
    pub async fn within(self, timeout: Duration) -> Result<Bytes, LinkError> {
        let target = self.link.target;
        match tokio::time::timeout(timeout, self).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout(target, timeout)),
        }
    }
}

impl Future for Answer {
    type Output = Result<Bytes, LinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let target = self.link.target;
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(LinkError::Closed(target))))
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.link.state().pending.remove(&self.id);
    }
}

/// Writes frames, the control lane first; coalesces whatever is ready before flushing.
async fn write_lanes(
    wr: OwnedWriteHalf,
    mut control: mpsc::UnboundedReceiver<Outgoing>,
    mut bulk: mpsc::UnboundedReceiver<Outgoing>,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, wr);
    loop {
        let next = tokio::select! {
            biased;
            m = control.recv() => m,
            m = bulk.recv() => m,
        };
        let Some(mut out) = next else { return Ok(()) };
        loop {
            write_frame(&mut w, &out).await?;
            match control.try_recv().or_else(|_| bulk.try_recv()) {
                Ok(o) => out = o,
                Err(_) => break,
            }
        }
        w.flush().await?;
    }
}

/// A `Raft` request frame: the header, the group id, then the payload as it is.
async fn write_frame(w: &mut BufWriter<OwnedWriteHalf>, out: &Outgoing) -> io::Result<()> {
    let header = FrameHeader {
        api_key: ApiKey::Raft as u16,
        api_version: 0,
        correlation_id: out.id,
    };
    let body_len = 8 + 4 + out.payload.len();
    w.write_all(&header.encode_head(body_len)).await?;
    let mut lead = [0u8; 12];
    lead[..8].copy_from_slice(&out.group.to_le_bytes());
    lead[8..].copy_from_slice(&(out.payload.len() as u32).to_le_bytes());
    w.write_all(&lead).await?;
    if out.payload.len() >= WRITE_BUFFER - w.buffer().len() {
        w.flush().await?;
        w.get_mut().write_all(&out.payload).await
    } else {
        w.write_all(&out.payload).await
    }
}

/// Reads answers and hands each to the request waiting for it.
async fn read_answers(
    mut rd: OwnedReadHalf,
    weak: Weak<PeerLink>,
    max_frame: usize,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        while let Some(frame) = decode_frame(&mut buf, max_frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?
        {
            let Some(link) = weak.upgrade() else {
                return Ok(());
            };
            let answer = match decode_response::<RaftResponse>(frame.body) {
                Ok(Ok(r)) => Ok(r.payload),
                Ok(Err(api)) => Err(LinkError::Refused(link.target, api.to_string())),
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("malformed answer: {e}"),
                    ));
                }
            };
            if frame.header.correlation_id == 0 {
                // An error frame for the connection as a whole: it is being closed.
                return Err(io::Error::other(format!(
                    "peer closed the connection: {answer:?}"
                )));
            }
            link.complete(frame.header.correlation_id, answer);
        }
        if rd.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the connection",
            ));
        }
    }
}

/// The network factory of one Raft group: clients share the broker's links.
#[derive(Clone)]
pub struct Network {
    group: u64,
    transport: Arc<Transport>,
}

/// A group's client for one peer.
pub struct PeerClient {
    group: u64,
    link: Arc<PeerLink>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            group: self.group,
            link: self.transport.link(target, &node.addr),
        }
    }
}

/// How openraft should see a failed RPC: a peer we cannot reach (it backs off) or one that
/// answered badly.
fn rpc_error(e: LinkError) -> RPCError<TypeConfig> {
    match e {
        LinkError::NotConnected(_) | LinkError::Closed(_) | LinkError::Refused(..) => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        LinkError::Timeout(..) | LinkError::BadReply(..) => {
            RPCError::Network(NetworkError::new(&e))
        }
    }
}

fn last_log_id(req: &AppendEntriesRequest<TypeConfig>) -> Option<LogId> {
    req.entries.last().map(|e| e.log_id).or(req.prev_log_id)
}

fn entry_bytes(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(p) => p.0.len() + 32,
        _ => 256,
    }
}

/// Cuts an append into requests of at most [`CHUNK_BYTES`] (each at least one entry), each
/// continuing from the previous one's last entry.
fn chunk(req: AppendEntriesRequest<TypeConfig>) -> Vec<AppendEntriesRequest<TypeConfig>> {
    let total: usize = req.entries.iter().map(entry_bytes).sum();
    if total <= CHUNK_BYTES {
        return vec![req];
    }
    let AppendEntriesRequest {
        vote,
        mut prev_log_id,
        leader_commit,
        entries,
    } = req;
    let mut out = Vec::new();
    let mut cur: Vec<Entry> = Vec::new();
    let mut size = 0;
    for e in entries {
        let n = entry_bytes(&e);
        if !cur.is_empty() && size + n > CHUNK_BYTES {
            let last = cur.last().map(|e| e.log_id);
            out.push(AppendEntriesRequest {
                vote,
                prev_log_id,
                leader_commit,
                entries: std::mem::take(&mut cur),
            });
            prev_log_id = last;
            size = 0;
        }
        size += n;
        cur.push(e);
    }
    out.push(AppendEntriesRequest {
        vote,
        prev_log_id,
        leader_commit,
        entries: cur,
    });
    out
}

impl PeerClient {
    fn unexpected(&self, rpc: &RaftRpc) -> RPCError<TypeConfig> {
        rpc_error(unexpected(self.link.target, rpc))
    }

    /// A vote or pre-vote request, on the control lane.
    async fn ask_vote(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl().max(CONTROL_TIMEOUT);
        match self
            .link
            .call(Lane::Control, self.group, rpc, timeout)
            .await
            .map_err(rpc_error)?
        {
            RaftRpc::Voted(v) => Ok(v),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sends one append of a pipelined stream (cut into chunks) and returns its result: the
    /// last chunk's, or the first failure.
    fn send_streamed(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> impl Future<Output = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> + use<>
    {
        let answers: Vec<Answer> = chunk(req)
            .into_iter()
            .map(|c| {
                self.link
                    .send(Lane::Bulk, self.group, RaftRpc::StreamAppend(c).encode())
            })
            .collect();
        let link = self.link.clone();
        async move {
            let mut result = Ok(None);
            for a in answers {
                let payload = a.within(timeout).await.map_err(rpc_error)?;
                result = match link.decode(payload).map_err(rpc_error)? {
                    RaftRpc::StreamAppended(r) => r,
                    other => return Err(rpc_error(unexpected(link.target, &other))),
                };
                if result.is_err() {
                    break;
                }
            }
            Ok(result)
        }
    }

    async fn single_append(
        &self,
        req: AppendEntriesRequest<TypeConfig>,
        timeout: Duration,
    ) -> Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>> {
        let prev = req.prev_log_id;
        let last = last_log_id(&req);
        let lane = if req.entries.is_empty() {
            Lane::Control
        } else {
            Lane::Bulk
        };
        match self
            .link
            .call(lane, self.group, RaftRpc::Append(req), timeout)
            .await
            .map_err(rpc_error)?
        {
            RaftRpc::Appended(r) => Ok(r.into_stream_result(prev, last)),
            other => Err(self.unexpected(&other)),
        }
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Bytes;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let timeout = option.soft_ttl().max(BULK_TIMEOUT);
        self.single_append(rpc, timeout).await.map(Into::into)
    }

    fn stream_append<'s, S>(
        &'s mut self,
        mut input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: futures::Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 'static,
    {
        Box::pin(async move {
            let Some(first) = input.next().await else {
                return Ok(stream::empty().boxed());
            };
            // A stream of one (a heartbeat) is an independent RPC, on the control lane.
            let second = match input.next().now_or_never() {
                Some(None) => {
                    let timeout = if first.entries.is_empty() {
                        option.soft_ttl().max(CONTROL_TIMEOUT)
                    } else {
                        option.soft_ttl().max(BULK_TIMEOUT)
                    };
                    let r = self.single_append(first, timeout).await;
                    return Ok(stream::once(async move { r }).boxed());
                }
                Some(Some(second)) => Some(second),
                None => None,
            };
            let timeout = option.soft_ttl().max(BULK_TIMEOUT);
            let this: &PeerClient = self;
            let requests = stream::iter(std::iter::once(first).chain(second)).chain(input);
            // `map` runs as `buffered` pulls each request, in order: that is when it is sent.
            let answers = requests
                .map(move |req| this.send_streamed(req, timeout))
                .buffered(WINDOW)
                .scan(false, |stopped, r| {
                    if *stopped {
                        return futures::future::ready(None);
                    }
                    *stopped = !matches!(r, Ok(Ok(_)));
                    futures::future::ready(Some(r))
                });
            Ok(answers.boxed())
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask_vote(RaftRpc::Vote(rpc), &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.ask_vote(RaftRpc::PreVote(rpc), &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let rpc = RaftRpc::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let call = self.link.call(
            Lane::Bulk,
            self.group,
            rpc,
            option.hard_ttl().max(BULK_TIMEOUT),
        );
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            a = call => a,
        };
        match answer {
            Ok(RaftRpc::Installed(r)) => Ok(r),
            Ok(other) => Err(StreamingError::Unreachable(Unreachable::new(&unexpected(
                self.link.target,
                &other,
            )))),
            Err(e) => Err(match rpc_error(e) {
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                other => StreamingError::Network(NetworkError::new(&other)),
            }),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .link
            .call(
                Lane::Control,
                self.group,
                RaftRpc::TransferLeader(req),
                option.soft_ttl(),
            )
            .await
            .map_err(rpc_error)?
        {
            RaftRpc::Transferred(r) => Ok(r),
            other => Err(self.unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;

    use super::*;
    use crate::raft::types::{Proposal, log_id};

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: log_id(2, index),
            payload: EntryPayload::Normal(Proposal(Bytes::from(vec![7u8; bytes]))),
        }
    }

    #[test]
    fn big_appends_are_cut_into_chunks_that_continue_each_other() {
        let req = AppendEntriesRequest {
            vote: Vote::new(2, 1),
            prev_log_id: Some(log_id(1, 9)),
            leader_commit: Some(log_id(1, 9)),
            entries: (10..20).map(|i| entry(i, 300 << 10)).collect(),
        };
        let chunks = chunk(req);
        assert!(chunks.len() > 1);
        let mut prev = Some(log_id(1, 9));
        let mut next_index = 10;
        for c in &chunks {
            assert_eq!(c.prev_log_id, prev);
            assert!(!c.entries.is_empty());
            let size: usize = c.entries.iter().map(entry_bytes).sum();
            assert!(size <= CHUNK_BYTES || c.entries.len() == 1, "{size}");
            for e in &c.entries {
                assert_eq!(e.log_id.index, next_index);
                next_index += 1;
            }
            prev = c.entries.last().map(|e| e.log_id);
        }
        assert_eq!(next_index, 20);
        // A single entry larger than a chunk still goes, alone.
        let one = chunk(AppendEntriesRequest {
            vote: Vote::new(2, 1),
            prev_log_id: None,
            leader_commit: None,
            entries: vec![entry(0, 3 << 20)],
        });
        assert_eq!(one.len(), 1);
        // Small appends and heartbeats are left as they are.
        let hb = chunk(AppendEntriesRequest {
            vote: Vote::new(2, 1),
            prev_log_id: Some(log_id(1, 9)),
            leader_commit: None,
            entries: vec![],
        });
        assert_eq!(hb.len(), 1);
        assert_eq!(last_log_id(&hb[0]), Some(log_id(1, 9)));
    }
}
