//! The admin listener (`--admin-listen`, D13): plain HTTP for operators and orchestrators.
//!
//! - `GET /metrics`: the broker's metrics in Prometheus text format ([`crate::metrics`]);
//! - `GET /healthz`: 200 while the process serves at all (a liveness probe);
//! - `GET /readyz`: 200 when the broker is ready ([`Broker::readiness`]: the metadata
//!   quorum reached, this broker registered, every partition placed here open), else 503;
//!   the body is JSON either way, naming each problem.
//!
//! It is not authenticated and carries no data but figures: bind it to an address only
//! operators reach. Still, what reaches it is held to [`AdminLimits`]: a bounded number of
//! connections, each closed once silent (no byte either way) for the idle timeout, so that
//! idle or slow clients cannot hold file descriptors or the scrape path.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::node::Broker;

/// What the admin listener lets clients hold.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 64,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    run_with(listener, broker, AdminLimits::default(), shutdown).await
}

/// [`run`] with the limits given.
pub async fn run_with(
    listener: TcpListener,
    broker: Arc<Broker>,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(broker);
    let guarded = Guarded {
        listener,
        permits: Arc::new(Semaphore::new(limits.max_connections.max(1))),
        idle: limits.idle_timeout,
    };
    axum::serve(guarded, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// The admin listener with its limits: a connection is accepted only with a permit, and
/// carries it (and an idle deadline) until it closes.
struct Guarded {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl axum::serve::Listener for Guarded {
    type Io = GuardedConn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (GuardedConn, std::net::SocketAddr) {
        loop {
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                // The semaphore is never closed; were it, stop accepting rather than spin.
                return std::future::pending().await;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let conn = GuardedConn {
                        stream,
                        _permit: permit,
                        idle: self.idle,
                        deadline: Box::pin(tokio::time::sleep(self.idle)),
                    };
                    return (conn, addr);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// An admin connection: its permit, and a deadline pushed back by every byte moved.
struct GuardedConn {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl GuardedConn {
    /// Progress: the connection may stay another idle period.
    fn moved(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// An error once the connection has been silent too long.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "admin connection idle; closed",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for GuardedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.check_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, data) {
            Poll::Ready(r) => {
                if r.as_ref().is_ok_and(|n| *n > 0) {
                    this.moved();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                this.check_idle(cx)?;
                Poll::Pending
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

async fn metrics(State(broker): State<Arc<Broker>>) -> Response {
    let text = broker.render_metrics().await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(broker): State<Arc<Broker>>) -> Response {
    let r = broker.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r)).into_response()
}
