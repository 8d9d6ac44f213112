//! The client plane (`--listen`, D8): accepting client connections and serving frames.
//!
//! [`run`] takes a bound listener (so tests use `127.0.0.1:0`) and a shutdown future. Each
//! connection has a reader loop and a writer task: requests are pipelined — each is handled
//! in its own task as soon as its frame has arrived, and answered by correlation id as it
//! completes — with at most `max_inflight_per_connection` requests and a byte budget in
//! flight per connection, so a client cannot make the broker buffer without bound.
//!
//! Limits (D11), each a setting, each answered with a clear error frame before closing:
//! - `max_connections` in all and `max_connections_per_ip` from one address: a connection
//!   over either is told so and closed at once (it never waits unanswered in the backlog);
//! - `frame_timeout_ms`: a frame must arrive whole within this long of its first byte (a
//!   client trickling a byte at a time is cut off, however often it sends);
//! - `idle_timeout_ms`: a connection with nothing in flight that sends nothing for this
//!   long is closed.
//!
//! A malformed frame body gets an error response on the same correlation id; a frame
//! that breaks framing (too large, length shorter than the header) gets an error frame
//! and the connection is closed, since the stream can no longer be trusted. Neither touches
//! stored data or any other connection. Peer APIs are not served here: brokers speak to each
//! other only on the peer plane ([`crate::peer`]), and [`crate::handlers`] refuses them.
//!
//! With `--tls-cert`/`--tls-key` the listener speaks TLS only (see [`crate::tls`]); the
//! handshake must complete within `frame_timeout_ms`. Each connection's authentication
//! ([`crate::auth`]) screens its requests in order before they are handled.
//!
//! On shutdown: stop accepting, stop reading new requests, let every in-flight request
//! finish and its response be written, then stop the broker (logs flushed).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use steme_protocol::frame::{FrameError, FrameHeader, decode_frame};
use steme_protocol::messages::Request;
use steme_protocol::{ApiError, ErrorCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Screened, Session};
use crate::handlers;
use crate::node::Broker;
use crate::quota::ConnectionSlot;
use crate::reply::{Outbound, Reply, answer};

const WRITE_BUFFER: usize = 64 * 1024;
/// Bytes of request frames a connection may have in flight.
const INFLIGHT_BYTES: usize = 64 << 20;
/// How long a refused connection's error frame may take to be written.
const REFUSAL_WRITE: Duration = Duration::from_secs(1);

/// The halves of a client connection's stream, plaintext or TLS.
type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Open connections per client address.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address; uncounted on drop.
struct IpSlot {
    ip: IpAddr,
    counts: Arc<PerIp>,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            counts: self.clone(),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// An error frame for the connection as a whole (correlation id 0).
fn connection_error(e: ApiError) -> Outbound {
    Outbound {
        header: FrameHeader {
            api_key: 0,
            api_version: 0,
            correlation_id: 0,
        },
        reply: Reply::error(e),
    }
}

/// Tells a connection over a limit why, then closes it.
async fn refuse(socket: TcpStream, e: ApiError) {
    let (_rd, wr) = socket.into_split();
    let (tx, rx) = mpsc::channel(1);
    let _ = tx.send(connection_error(e)).await;
    drop(tx);
    let _ = tokio::time::timeout(REFUSAL_WRITE, write_loop(Box::new(wr), rx)).await;
}

/// Serves `listener` until `shutdown` completes, then drains connections and stops the
/// broker.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let tls = crate::tls::acceptor(broker.config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("TLS: {e}")))?;
    let (stop_tx, _) = broadcast::channel::<()>(1);
    let cfg = broker.config();
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let max_per_ip = cfg.max_connections_per_ip;
    // Every connection holds a clone; when all are dropped, `done_rx` completes.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
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
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; refusing a connection");
            let max = limit_msg("max_connections", cfg.max_connections);
            tokio::spawn(refuse(socket, throttled(max)));
            continue;
        };
        let Some(slot) = per_ip.take(peer.ip(), max_per_ip) else {
            tracing::warn!(%peer, "per-address connection limit reached; refusing a connection");
            let max = limit_msg("max_connections_per_ip", max_per_ip);
            tokio::spawn(refuse(socket, throttled(max)));
            continue;
        };
        let broker = broker.clone();
        let stop = stop_tx.subscribe();
        let done = done_tx.clone();
        let tls = tls.clone();
        let open = broker.metrics().connections.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = serve(socket, tls, broker, stop).await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            open.dec();
            drop((permit, slot, done));
        });
    }
    tracing::info!("shutting down: draining connections");
    broker.begin_shutdown();
    drop(listener);
    let _ = stop_tx.send(());
    drop(done_tx);
    let _ = tokio::time::timeout(Duration::from_secs(30), done_rx.recv()).await;
    broker.shutdown().await;
    tracing::info!("shutdown complete");
    Ok(())
}

/// How long a client refused for a connection limit is told to wait before trying again.
const RETRY_AFTER_MS: u32 = 1_000;

fn throttled(message: String) -> ApiError {
    ApiError::Throttled {
        retry_after_ms: RETRY_AFTER_MS,
        message,
    }
}

fn limit_msg(setting: &str, max: usize) -> String {
    format!(
        "too many connections: the broker's {setting} is {max}; close idle connections or retry later"
    )
}

/// Why reading the next bytes stopped.
enum ReadEnd {
    Stop,
    Closed,
    Idle,
    FrameDeadline,
}

/// Opens the stream of an accepted connection: the socket itself, or TLS over it. A
/// plaintext client of a TLS listener is told so and closed (`None`), as is one that does
/// not complete its handshake within `handshake`.
async fn open(
    socket: TcpStream,
    tls: Option<&TlsAcceptor>,
    handshake: Duration,
) -> io::Result<Option<(BoxRead, BoxWrite, Option<String>)>> {
    socket.set_nodelay(true)?;
    let Some(acceptor) = tls else {
        let (rd, wr) = socket.into_split();
        return Ok(Some((Box::new(rd), Box::new(wr), None)));
    };
    let mut first = [0u8; 1];
    match tokio::time::timeout(handshake, socket.peek(&mut first)).await {
        Ok(Ok(1..)) if first[0] == crate::tls::HANDSHAKE_RECORD => {}
        Ok(Ok(1..)) => {
            tracing::debug!("a plaintext client on the TLS listener; refused");
            let e = ApiError::other(
                ErrorCode::InvalidRequest,
                "this broker's client listener speaks TLS only: connect with TLS \
                 (steme --tls-ca FILE, or ConnectionConfig::tls)",
            );
            refuse(socket, e).await;
            return Ok(None);
        }
        Ok(r) => return r.map(|_| None),
        Err(_) => return Ok(None),
    }
    match tokio::time::timeout(handshake, acceptor.accept(socket)).await {
        Ok(Ok(stream)) => {
            let principal = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|cert| crate::auth::cert_principal(cert));
            let (rd, wr) = tokio::io::split(stream);
            Ok(Some((Box::new(rd), Box::new(wr), principal)))
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            Ok(None)
        }
        Err(_) => {
            tracing::debug!(?handshake, "TLS handshake not completed in time");
            Ok(None)
        }
    }
}

async fn serve(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    broker: Arc<Broker>,
    mut stop: broadcast::Receiver<()>,
) -> io::Result<()> {
    let cfg = broker.config();
    let handshake = Duration::from_millis(cfg.frame_timeout_ms);
    let Some((mut rd, wr, cert_principal)) = open(socket, tls.as_ref(), handshake).await? else {
        return Ok(());
    };
    let mut session = Session::new(cfg.auth, cert_principal);
    let max_frame = cfg.max_frame_bytes;
    let max_inflight = cfg.max_inflight_per_connection.max(1);
    let idle = Duration::from_millis(cfg.idle_timeout_ms);
    let frame_timeout = Duration::from_millis(cfg.frame_timeout_ms);
    let (tx, rx) = mpsc::channel::<Outbound>(max_inflight);
    let writer = tokio::spawn(write_loop(wr, rx));
    let quotas = broker.quotas().clone();
    // Counted against its principal's connection quota from its first request past
    // authentication (a key proves itself after the accept).
    let mut slot: Option<ConnectionSlot> = None;
    let requests = Arc::new(Semaphore::new(max_inflight));
    let bytes = Arc::new(Semaphore::new(INFLIGHT_BYTES));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // When the frame that has begun to arrive must be complete.
    let mut frame_deadline: Option<Instant> = None;
    // Woken as each request completes, so the idle timer starts when the last one does.
    let completed = Arc::new(Notify::new());

    let result: io::Result<()> = async {
        loop {
            let frame = match decode_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    frame_deadline = None;
                    frame
                }
                Ok(None) => {
                    if !buf.is_empty() && frame_deadline.is_none() {
                        frame_deadline = Some(Instant::now() + frame_timeout);
                    }
                    let in_flight = requests.available_permits() < max_inflight;
                    // A partial frame runs against its deadline; an empty buffer against
                    // the idle timeout, unless requests (a long-poll, say) are in flight.
                    let read = async {
                        match (frame_deadline, in_flight) {
                            (Some(at), _) => match tokio::time::timeout_at(at, rd.read_buf(&mut buf)).await {
                                Ok(n) => n.map(|n| if n == 0 { Err(ReadEnd::Closed) } else { Ok(()) }),
                                Err(_) => Ok(Err(ReadEnd::FrameDeadline)),
                            },
                            (None, false) => match tokio::time::timeout(idle, rd.read_buf(&mut buf)).await {
                                Ok(n) => n.map(|n| if n == 0 { Err(ReadEnd::Closed) } else { Ok(()) }),
                                Err(_) => Ok(Err(ReadEnd::Idle)),
                            },
                            (None, true) => tokio::select! {
                                n = rd.read_buf(&mut buf) => n.map(|n| if n == 0 { Err(ReadEnd::Closed) } else { Ok(()) }),
                                // A request finished: look again at what is in flight.
                                _ = completed.notified() => Ok(Ok(())),
                            },
                        }
                    };
                    let end = tokio::select! {
                        _ = stop.recv() => Err(ReadEnd::Stop),
                        r = read => r?,
                    };
                    match end {
                        Ok(()) => continue,
                        Err(ReadEnd::Stop) => return Ok(()),
                        Err(ReadEnd::Closed) => {
                            if !buf.is_empty() {
                                tracing::debug!(pending = buf.len(), "client closed mid-frame");
                            }
                            return Ok(());
                        }
                        Err(ReadEnd::Idle) => {
                            tracing::debug!(?idle, "closing an idle connection");
                            let e = ApiError::other(
                                ErrorCode::Timeout,
                                format!("connection idle for {idle:?} (idle_timeout_ms); closed"),
                            );
                            let _ = tx.send(connection_error(e)).await;
                            return Ok(());
                        }
                        Err(ReadEnd::FrameDeadline) => {
                            tracing::debug!(pending = buf.len(), "frame not completed in time");
                            let e = ApiError::other(
                                ErrorCode::Timeout,
                                format!(
                                    "frame not completed within {frame_timeout:?} of its first byte \
                                     (frame_timeout_ms); closed"
                                ),
                            );
                            let _ = tx.send(connection_error(e)).await;
                            return Ok(());
                        }
                    }
                }
                Err(e) => {
                    let err = match e {
                        FrameError::TooLarge { size, max } => ApiError::FrameTooLarge { size, max },
                        other => ApiError::other(ErrorCode::CorruptFrame, other.to_string()),
                    };
                    tracing::debug!(error = %err, "bad frame; closing the connection");
                    let _ = tx.send(connection_error(err)).await;
                    return Ok(());
                }
            };
            let cost = frame.body.len().clamp(1, INFLIGHT_BYTES) as u32;
            let decoded = Request::decode(&frame.header, frame.body);
            // Authentication is decided here, in order, before anything is handled.
            if let Ok(req) = &decoded {
                match session.screen(req) {
                    Screened::Pass => {}
                    Screened::Answer(reply) => {
                        let _ = tx.send(Outbound { header: frame.header, reply }).await;
                        continue;
                    }
                    Screened::Refuse(e) => {
                        tracing::debug!(error = %e, "request refused; closing the connection");
                        let reply = Reply::error(e);
                        let _ = tx.send(Outbound { header: frame.header, reply }).await;
                        return Ok(());
                    }
                }
            }
            let principal = session.principal();
            let handshake = matches!(decoded, Ok(Request::ApiVersions(_)));
            if !handshake && !slot.as_ref().is_some_and(|s| s.is_for(principal.as_ref())) {
                match quotas.connect(principal.as_ref()) {
                    Ok(counted) => slot = Some(counted),
                    Err(e) => {
                        tracing::debug!(error = %e, "connection refused");
                        let reply = Reply::error(e);
                        let _ = tx.send(Outbound { header: frame.header, reply }).await;
                        return Ok(());
                    }
                }
            }
            // A principal over its byte quota: its next Produce or Fetch waits until the
            // debt is paid (the response that ran it up said how long, see crate::quota).
            let moves_bytes = matches!(decoded, Ok(Request::Produce(_) | Request::Fetch(_)));
            let debt = if moves_bytes {
                quotas.debt(principal.as_ref())
            } else {
                Duration::ZERO
            };
            if !debt.is_zero() {
                tokio::select! {
                    _ = stop.recv() => return Ok(()),
                    _ = tokio::time::sleep(debt) => {}
                }
            }
            let req_permit = requests.clone().acquire_owned().await.expect("open");
            let byte_permit = bytes.clone().acquire_many_owned(cost).await.expect("open");
            let broker = broker.clone();
            let tx = tx.clone();
            let completed = completed.clone();
            tokio::spawn(async move {
                let reply = match decoded {
                    Ok(req) => handlers::handle(&broker, principal.as_ref(), req).await,
                    Err(e) => Reply::error(e.to_api_error()),
                };
                answer(&tx, frame.header, reply, (req_permit, byte_permit)).await;
                completed.notify_one();
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

async fn write_loop(wr: BoxWrite, mut rx: mpsc::Receiver<Outbound>) -> io::Result<()> {
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

async fn write_one(w: &mut BufWriter<BoxWrite>, out: Outbound) -> io::Result<()> {
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
async fn write_chunk(w: &mut BufWriter<BoxWrite>, chunk: &Bytes) -> io::Result<()> {
    if chunk.len() >= WRITE_BUFFER - w.buffer().len() {
        w.flush().await?;
        w.get_mut().write_all(chunk).await
    } else {
        w.write_all(chunk).await
    }
}
