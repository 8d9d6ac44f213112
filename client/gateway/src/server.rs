//! The accept loop: a bounded number of connections, each served by hyper (HTTP/1.1), over
//! TLS when configured, with a deadline on the TLS handshake and on reading each request's
//! headers. A connection's TLS client certificate CN travels with each of its requests
//! ([`ConnInfo`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long a TLS handshake, or a request's headers, may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connections may take to finish once the gateway stops.
const DRAIN: Duration = Duration::from_secs(10);

/// What a request knows of its connection.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The CN of the verified client certificate, if one was presented.
    pub cert_cn: Option<String>,
}

/// Serves `app` on `listener` until `stop` resolves, then lets open connections finish
/// (at most [`DRAIN`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) {
    let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(max_connections));
    let (stopping, stopped) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let tls = tls.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(tcp, app, tls, stopped).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    stopping.send_replace(true);
    // Every connection holds a permit until it ends.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(DRAIN, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; stopping anyway");
    }
}

async fn connection(
    tcp: TcpStream,
    app: Router,
    tls: Option<TlsAcceptor>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let _ = tcp.set_nodelay(true);
    match tls {
        None => serve_http(TokioIo::new(tcp), app, ConnInfo::default(), stopped).await,
        Some(acceptor) => {
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await??;
            let cert_cn = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| crate::tls::common_name(der));
            serve_http(TokioIo::new(stream), app, ConnInfo { cert_cn }, stopped).await
        }
    }
}

/// Serves one connection's requests; once the gateway stops, it finishes the request under
/// way and closes.
async fn serve_http<I>(
    io: TokioIo<I>,
    app: Router,
    info: ConnInfo,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(info.clone());
        req
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => return Ok(done?),
        _ = stopped.wait_for(|s| *s) => conn.as_mut().graceful_shutdown(),
    }
    Ok(conn.await?)
}
