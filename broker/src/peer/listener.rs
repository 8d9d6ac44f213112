//! The peer plane's listener (`--peer-listen`, D8): other brokers' connections, each
//! authenticated ([`super::auth`]) before any frame is read, then its Raft frames served
//! ([`super::serve`]) with every answer sealed.
//!
//! Strangers on the port cannot crowd brokers out: at most [`MAX_HANDSHAKES`] connections
//! may be authenticating at once, each within [`auth::HANDSHAKE_TIMEOUT`], and at most
//! [`MAX_PEER_CONNECTIONS`] may be open; a connection over either limit is closed at once.
//! A frame that fails its MAC, breaks framing or is not a Raft frame closes the connection:
//! after it, the stream cannot be trusted.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use steme_protocol::messages::ApiKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};

use super::auth::{self, ClusterSecret, HandshakeError, OpenError, Sealer, Session};
use super::serve::{PeerFrames, RaftHost};
use crate::reply::Outbound;

/// Connections that may be authenticating at once.
pub const MAX_HANDSHAKES: usize = 64;
/// Authenticated peer connections that may be open at once (a broker keeps one to each
/// other broker, plus a replacement while one reconnects).
pub const MAX_PEER_CONNECTIONS: usize = 256;
/// Answers queued for one connection's writer.
const OUTBOUND_QUEUE: usize = 4096;
const WRITE_BUFFER: usize = 64 * 1024;

/// Why a peer connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("api {0} is not served on the peer plane")]
    NotRaft(u16),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Serves `listener` until `shutdown` completes.
pub async fn run<H: RaftHost>(
    listener: TcpListener,
    host: Arc<H>,
    secret: ClusterSecret,
    max_frame: usize,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let connections = Arc::new(Semaphore::new(MAX_PEER_CONNECTIONS));
    let (stop_tx, _) = broadcast::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (socket, from) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "peer accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (Ok(connection), Ok(handshake)) = (
            connections.clone().try_acquire_owned(),
            handshakes.clone().try_acquire_owned(),
        ) else {
            tracing::warn!(%from, "peer plane full: connection closed");
            continue;
        };
        let host = host.clone();
        let secret = secret.clone();
        let stop = stop_tx.subscribe();
        tokio::spawn(async move {
            match serve(socket, &host, &secret, max_frame, handshake, stop).await {
                Err(ConnError::Handshake(e)) => {
                    tracing::warn!(%from, error = %e, "peer connection refused")
                }
                Err(e) => tracing::info!(%from, error = %e, "peer connection closed"),
                Ok(()) => tracing::debug!(%from, "peer connection ended"),
            }
            drop(connection);
        });
    }
    let _ = stop_tx.send(());
    Ok(())
}

async fn serve<H: RaftHost>(
    mut socket: TcpStream,
    host: &Arc<H>,
    secret: &ClusterSecret,
    max_frame: usize,
    handshake: tokio::sync::OwnedSemaphorePermit,
    mut stop: broadcast::Receiver<()>,
) -> Result<(), ConnError> {
    socket.set_nodelay(true)?;
    let Session {
        peer,
        sealer,
        mut opener,
    } = auth::accept(&mut socket, secret, host.node_id()).await?;
    drop(handshake);
    tracing::debug!(peer, "peer authenticated");
    let from: Option<SocketAddr> = socket.peer_addr().ok();
    let (mut rd, wr) = socket.into_split();
    let (tx, rx) = mpsc::channel::<Outbound>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(write_sealed(wr, sealer, rx));
    let mut frames = PeerFrames::new(peer);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let result = async {
        loop {
            while let Some(frame) = opener.open(&mut buf, max_frame)? {
                if frame.header.api_key != ApiKey::Raft as u16 {
                    return Err(ConnError::NotRaft(frame.header.api_key));
                }
                frames.serve(host, frame, &tx).await;
            }
            let n = tokio::select! {
                _ = stop.recv() => return Ok(()),
                n = rd.read_buf(&mut buf) => n?,
            };
            if n == 0 {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = &result {
        tracing::warn!(peer, ?from, error = %e, "closing a peer connection");
    }
    drop(tx);
    let _ = writer.await;
    result
}

/// Writes answers, each sealed; coalesces whatever is ready before flushing.
async fn write_sealed(
    wr: OwnedWriteHalf,
    mut sealer: Sealer,
    mut rx: mpsc::Receiver<Outbound>,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, wr);
    while let Some(out) = rx.recv().await {
        write_one(&mut w, &mut sealer, &out).await?;
        while let Ok(out) = rx.try_recv() {
            write_one(&mut w, &mut sealer, &out).await?;
        }
        w.flush().await?;
    }
    w.shutdown().await
}

async fn write_one(
    w: &mut BufWriter<OwnedWriteHalf>,
    sealer: &mut Sealer,
    out: &Outbound,
) -> io::Result<()> {
    let mut sealing = sealer.start(&out.header, out.reply.len());
    sealing.update(&out.reply.head);
    for chunk in &out.reply.tail {
        sealing.update(chunk);
    }
    let (head, tag) = sealing.finish();
    w.write_all(&head).await?;
    w.write_all(&out.reply.head).await?;
    for chunk in &out.reply.tail {
        w.write_all(chunk).await?;
    }
    w.write_all(&tag).await
}
