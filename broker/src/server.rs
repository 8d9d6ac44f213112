//! Accepting connections and serving frames.
//!
//! [`run`] takes a bound listener (so tests use `127.0.0.1:0`) and a shutdown future. A
//! semaphore bounds connections. Each connection has a reader loop and a writer task:
//! requests are pipelined — each is handled in its own task as soon as its frame has
//! arrived, and answered by correlation id as it completes — with at most
//! `max_inflight_per_connection` requests and a byte budget in flight per connection, so a
//! client cannot make the broker buffer without bound. A frame that has started arriving
//! must finish within [`FRAME_TIMEOUT`] (a slowloris client is disconnected).
//!
//! A malformed frame body gets an error response on the same correlation id; a frame
//! that breaks framing (too large, length shorter than the header) gets an error frame
//! and the connection is closed, since the stream can no longer be trusted. Neither touches
//! stored data or any other connection.
//!
//! Frames of api key `Raft` come from peers and are served by the peer plane
//! ([`crate::peer::serve`]), with budgets of their own; every other frame is a client
//! request, answered by [`crate::handlers`].
//!
//! On shutdown: stop accepting, stop reading new requests, let every in-flight request
//! finish and its response be written, then stop the broker (logs flushed).

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use steme_protocol::frame::{FrameError, FrameHeader, decode_frame};
use steme_protocol::messages::{ApiKey, Request};
use steme_protocol::{ApiError, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::handlers;
use crate::node::Broker;
use crate::peer::serve::PeerFrames;
use crate::reply::{Outbound, Reply};

/// A frame that has begun to arrive must be complete within this long.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_BUFFER: usize = 64 * 1024;
/// Bytes of request frames a connection may have in flight.
const INFLIGHT_BYTES: usize = 64 << 20;

/// Serves `listener` until `shutdown` completes, then drains connections and stops the
/// broker.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop_tx, _) = broadcast::channel::<()>(1);
    let limit = Arc::new(Semaphore::new(broker.config().max_connections));
    // Every connection holds a clone; when all are dropped, `done_rx` completes.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = limit.clone().acquire_owned() => permit.expect("never closed"),
        };
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let broker = broker.clone();
        let stop = stop_tx.subscribe();
        let done = done_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = serve(socket, broker, stop).await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(permit);
            drop(done);
        });
    }
    tracing::info!("shutting down: draining connections");
    drop(listener);
    let _ = stop_tx.send(());
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await;
    broker.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

async fn serve(
    socket: TcpStream,
    broker: Arc<Broker>,
    mut stop: broadcast::Receiver<()>,
) -> io::Result<()> {
    socket.set_nodelay(true)?;
    let (mut rd, wr) = socket.into_split();
    let max_frame = broker.config().max_frame_bytes;
    let max_inflight = broker.config().max_inflight_per_connection.max(1);
    let (tx, rx) = mpsc::channel::<Outbound>(max_inflight);
    let writer = tokio::spawn(write_loop(wr, rx));
    let requests = Arc::new(Semaphore::new(max_inflight));
    let bytes = Arc::new(Semaphore::new(INFLIGHT_BYTES));
    let mut peer = PeerFrames::default();
    let mut buf = BytesMut::with_capacity(64 * 1024);

    let result: io::Result<()> = async {
        loop {
            let frame = match decode_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    // Need more bytes. A partial frame must complete within FRAME_TIMEOUT.
                    let read = async {
                        if buf.is_empty() {
                            rd.read_buf(&mut buf).await
                        } else {
                            tokio::time::timeout(FRAME_TIMEOUT, rd.read_buf(&mut buf))
                                .await
                                .unwrap_or_else(|_| {
                                    Err(io::Error::new(
                                        io::ErrorKind::TimedOut,
                                        "frame not completed in time",
                                    ))
                                })
                        }
                    };
                    let n = tokio::select! {
                        _ = stop.recv() => return Ok(()),
                        n = read => n?,
                    };
                    if n == 0 {
                        if !buf.is_empty() {
                            tracing::debug!(pending = buf.len(), "client closed mid-frame");
                        }
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => {
                    let err = match e {
                        FrameError::TooLarge { size, max } => ApiError::FrameTooLarge { size, max },
                        other => ApiError::other(ErrorCode::CorruptFrame, other.to_string()),
                    };
                    tracing::debug!(error = %err, "bad frame; closing the connection");
                    let header = FrameHeader {
                        api_key: 0,
                        api_version: 0,
                        correlation_id: 0,
                    };
                    let _ = tx
                        .send(Outbound {
                            header,
                            reply: Reply::error(err),
                        })
                        .await;
                    return Ok(());
                }
            };
            if frame.header.api_key == ApiKey::Raft as u16 {
                peer.serve(&broker, frame, &tx).await;
                continue;
            }
            let cost = frame.body.len().clamp(1, INFLIGHT_BYTES) as u32;
            let req_permit = requests.clone().acquire_owned().await.expect("open");
            let byte_permit = bytes.clone().acquire_many_owned(cost).await.expect("open");
            let decoded = Request::decode(&frame.header, frame.body);
            let broker = broker.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let reply = match decoded {
                    Ok(req) => handlers::handle(&broker, req).await,
                    Err(e) => Reply::error(e.to_api_error()),
                };
                let _ = tx
                    .send(Outbound {
                        header: frame.header,
                        reply,
                    })
                    .await;
                drop(req_permit);
                drop(byte_permit);
            });
        }
    }
    .await;
    // Let in-flight requests finish and be written.
    let _ = requests.acquire_many(max_inflight as u32).await;
    drop(tx);
    let _ = writer.await;
    result
}

async fn write_loop(wr: OwnedWriteHalf, mut rx: mpsc::Receiver<Outbound>) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, wr);
    while let Some(out) = rx.recv().await {
        write_one(&mut w, out).await?;
        // Coalesce: write whatever else is ready before flushing.
        while let Ok(out) = rx.try_recv() {
            write_one(&mut w, out).await?;
        }
        w.flush().await?;
    }
    w.shutdown().await
}

async fn write_one(w: &mut BufWriter<OwnedWriteHalf>, out: Outbound) -> io::Result<()> {
    let head = out.header.encode_head(out.reply.len());
    w.write_all(&head).await?;
    w.write_all(&out.reply.head).await?;
    for chunk in &out.reply.tail {
        write_chunk(w, chunk).await?;
    }
    Ok(())
}

/// Large chunks (fetched batches) bypass the buffer: flush what is buffered, then write the
/// segment bytes straight from the mapping.
async fn write_chunk(w: &mut BufWriter<OwnedWriteHalf>, chunk: &Bytes) -> io::Result<()> {
    if chunk.len() >= WRITE_BUFFER - w.buffer().len() {
        w.flush().await?;
        w.get_mut().write_all(chunk).await
    } else {
        w.write_all(chunk).await
    }
}
