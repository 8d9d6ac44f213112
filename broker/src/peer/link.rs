//! The links between brokers (D8): the sending side of the peer plane.
//!
//! Each broker keeps one [`PeerLink`] — one TCP connection — to every other broker, and every
//! Raft group's traffic to that broker goes over it, each frame tagged with its group (the
//! protocol's `Raft` request). A pair of brokers therefore has one connection per direction;
//! each carries requests one way and their answers back, matched by correlation id.
//!
//! Two lanes share a connection: votes, heartbeats, leader transfers and forwarded metadata
//! commands go on the *control* lane, which the writer always drains first; appends that carry
//! entries and snapshots go on the *bulk* lane. The Raft side (`crate::raft::network`) cuts
//! bulk frames into chunks, so a heartbeat waits for at most one chunk already on the wire,
//! never for a queue of appends.
//!
//! Every connection is authenticated before its first frame ([`super::auth`]): a link dials
//! the peer's `--peer-listen` address, proves the cluster secret, and seals every frame it
//! sends; it opens (checks) every answer.
//!
//! A link reconnects with backoff in the background. While it is down, calls fail at once as
//! unreachable (openraft then backs off), so a dead peer costs no more than its timeouts.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use steme_protocol::frame::FrameHeader;
use steme_protocol::messages::raft::{RaftRequest, RaftResponse};
use steme_protocol::messages::{ApiKey, decode_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::auth::{self, ClusterSecret, HandshakeError, Opener, Sealer, Session};
use crate::raft::METADATA_GROUP;
use crate::raft::rpc::{Forwarded, RaftRpc};
use crate::raft::types::NodeId;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Short, so that a restarted peer is heard again (and its quiet groups woken) well
/// within an election timeout; a dead peer costs four refused connects a second.
const BACKOFF_MAX: Duration = Duration::from_millis(250);
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

/// Who this broker is to its peers, and the secret it proves.
#[derive(Debug, Clone)]
pub struct PeerAuth {
    pub me: NodeId,
    /// `None` for a broker with no peer credentials: it dials no one (a single broker's
    /// groups have no one to call).
    pub secret: Option<ClusterSecret>,
}

impl PeerAuth {
    async fn dial(&self, sock: &mut TcpStream, target: NodeId) -> Result<Session, DialError> {
        let secret = self.secret.as_ref().ok_or(DialError::NoSecret)?;
        Ok(auth::dial(sock, secret, self.me, target).await?)
    }
}

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("this broker has no cluster secret (--cluster-secret-file) to authenticate with")]
    NoSecret,
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

/// The transport of one broker: a link per peer, shared by every group.
pub struct Transport {
    links: Mutex<HashMap<NodeId, Arc<PeerLink>>>,
    resolve: Resolver,
    max_frame: usize,
    auth: Arc<PeerAuth>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

impl Transport {
    pub fn new(resolve: Resolver, max_frame: usize, auth: PeerAuth) -> Arc<Transport> {
        Arc::new(Transport {
            links: Mutex::new(HashMap::new()),
            resolve,
            max_frame,
            auth: Arc::new(auth),
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
            auth: self.auth.clone(),
            state: Mutex::new(LinkState::default()),
            next_id: AtomicU32::new(1),
            heard_ms: AtomicU64::new(0),
        });
        tokio::spawn(PeerLink::maintain(Arc::downgrade(&link)));
        links.insert(target, link.clone());
        link
    }

    /// Whether this broker's detector positively hears broker `peer` ([`PeerLink::is_alive`]).
    pub fn peer_alive(&self, peer: NodeId) -> bool {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.get(&peer).is_some_and(|l| l.is_alive())
    }

    /// Whether this broker's detector holds broker `peer` dead ([`PeerLink::is_dead`]).
    pub fn peer_dead(&self, peer: NodeId) -> bool {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.get(&peer).is_some_and(|l| l.is_dead())
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
            .call(Lane::Control, METADATA_GROUP, rpc, timeout)
            .await?
        {
            RaftRpc::Forwarded(f) => Ok(f),
            other => Err(unexpected(target, &other)),
        }
    }

    /// Asks broker `target` for the stored frames of entries `range` of group `group` (at
    /// least one, then whole frames up to `max_bytes`): what a replica repairing a damaged
    /// range writes in its place.
    pub async fn read_frames(
        &self,
        target: NodeId,
        group: u64,
        range: std::ops::Range<u64>,
        max_bytes: u32,
        timeout: Duration,
    ) -> Result<Bytes, LinkError> {
        let addr = (self.resolve)(target).unwrap_or_default();
        let link = self.link(target, &addr);
        let rpc = RaftRpc::ReadFrames {
            from: range.start,
            to: range.end,
            max_bytes,
        };
        match link.call(Lane::Bulk, group, rpc, timeout).await? {
            RaftRpc::Frames(frames) => Ok(frames),
            other => Err(unexpected(target, &other)),
        }
    }

    /// Asks broker `target` which of `ids` its replica of group `group` holds below offset
    /// `below`: `(index in ids, offset, hlc)` of each found.
    pub async fn lookup_ids(
        &self,
        target: NodeId,
        group: u64,
        below: u64,
        ids: Vec<[u8; 32]>,
        timeout: Duration,
    ) -> Result<Vec<(u32, u64, u64)>, LinkError> {
        let addr = (self.resolve)(target).unwrap_or_default();
        let link = self.link(target, &addr);
        match link
            .call(
                Lane::Bulk,
                group,
                RaftRpc::LookupIds { below, ids },
                timeout,
            )
            .await?
        {
            RaftRpc::FoundIds(found) => Ok(found),
            other => Err(unexpected(target, &other)),
        }
    }

    /// Closes every link (their tasks end; calls fail as not connected).
    pub fn shutdown(&self) {
        self.links.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The error for an answer that is not the one expected (a refusal keeps its reason).
pub fn unexpected(target: NodeId, rpc: &RaftRpc) -> LinkError {
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
        RaftRpc::ReadFrames { .. } => "frame read",
        RaftRpc::Frames(_) => "frames",
        RaftRpc::Beat => "beat",
        RaftRpc::LookupIds { .. } => "id lookup",
        RaftRpc::FoundIds(_) => "ids found",
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
    auth: Arc<PeerAuth>,
    state: Mutex<LinkState>,
    next_id: AtomicU32,
    /// When the peer last answered anything on this link, in milliseconds since
    /// [`super::liveness::epoch`]; 0 if it never has.
    heard_ms: AtomicU64,
}

impl PeerLink {
    /// Whether this broker's detector holds the peer dead: it answered once, and since
    /// then its connection closed (and is not back) or it has been silent for
    /// [`super::liveness::DEAD_AFTER`]. A peer never heard from is not judged.
    pub fn is_dead(&self) -> bool {
        let heard = self.heard_ms.load(Ordering::Acquire);
        heard != 0
            && (!self.is_connected()
                || super::liveness::now_ms().saturating_sub(heard)
                    > super::liveness::DEAD_AFTER.as_millis() as u64)
    }

    /// Whether the detector positively hears the peer: connected, and answering.
    pub fn is_alive(&self) -> bool {
        let heard = self.heard_ms.load(Ordering::Acquire);
        heard != 0
            && self.is_connected()
            && super::liveness::now_ms().saturating_sub(heard)
                <= super::liveness::DEAD_AFTER.as_millis() as u64
    }

    fn heard(&self) {
        self.heard_ms
            .store(super::liveness::now_ms().max(1), Ordering::Release);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The broker this link reaches.
    pub fn target(&self) -> NodeId {
        self.target
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

    /// Decodes an answer's payload.
    pub fn decode(&self, payload: Bytes) -> Result<RaftRpc, LinkError> {
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
            let auth = link.auth.clone();
            drop(link);
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr)).await;
            match connected {
                Ok(Ok(mut sock)) => match auth.dial(&mut sock, target).await {
                    Ok(session) => {
                        backoff = BACKOFF_MIN;
                        if let Err(e) = PeerLink::serve(&weak, sock, session).await {
                            tracing::info!(peer = target, %addr, error = %e, "raft connection lost");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(peer = target, %addr, error = %e, "peer authentication failed")
                    }
                },
                Ok(Err(e)) => {
                    tracing::debug!(peer = target, %addr, error = %e, "cannot connect to peer")
                }
                Err(_) => tracing::debug!(peer = target, %addr, "connecting to peer timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn serve(weak: &Weak<PeerLink>, sock: TcpStream, session: Session) -> io::Result<()> {
        sock.set_nodelay(true)?;
        let Session { sealer, opener, .. } = session;
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
            r = write_lanes(wr, sealer, control_rx, bulk_rx) => r,
            r = read_answers(rd, opener, weak.clone(), max_frame) => r,
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
    mut sealer: Sealer,
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
            write_frame(&mut w, &mut sealer, &out).await?;
            match control.try_recv().or_else(|_| bulk.try_recv()) {
                Ok(o) => out = o,
                Err(_) => break,
            }
        }
        w.flush().await?;
    }
}

/// A `Raft` request frame, sealed: the head, the group id, the payload as it is, the tag.
async fn write_frame(
    w: &mut BufWriter<OwnedWriteHalf>,
    sealer: &mut Sealer,
    out: &Outgoing,
) -> io::Result<()> {
    let header = FrameHeader {
        api_key: ApiKey::Raft as u16,
        api_version: 0,
        correlation_id: out.id,
    };
    let lead = RaftRequest::encode_head(out.group, out.payload.len());
    let mut sealing = sealer.start(&header, lead.len() + out.payload.len());
    sealing.update(&lead);
    sealing.update(&out.payload);
    let (head, tag) = sealing.finish();
    w.write_all(&head).await?;
    w.write_all(&lead).await?;
    if out.payload.len() >= WRITE_BUFFER - w.buffer().len() {
        w.flush().await?;
        w.get_mut().write_all(&out.payload).await?;
    } else {
        w.write_all(&out.payload).await?;
    }
    w.write_all(&tag).await
}

/// Reads answers and hands each to the request waiting for it.
async fn read_answers(
    mut rd: OwnedReadHalf,
    mut opener: Opener,
    weak: Weak<PeerLink>,
    max_frame: usize,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        while let Some(frame) = opener.open(&mut buf, max_frame)? {
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
            link.heard();
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
