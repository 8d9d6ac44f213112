//! The admin listener under hostile clients: connections that open and say nothing are
//! closed after the idle timeout, and while they fill every slot a probe waits for one to
//! free instead of being refused or served by an unbounded number of sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use steme_broker::admin::{AdminLimits, run_with};
use steme_broker::config::Config;
use steme_broker::node::{Advertised, Broker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_admin_connections_are_closed_and_cannot_crowd_out_probes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let client = TcpListener::bind("127.0.0.1:0").await?;
    let cfg = Config {
        listen: client.local_addr()?,
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let broker: Arc<Broker> =
        Broker::start(cfg, Advertised::client(client.local_addr()?.to_string())).await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let addr = admin.local_addr()?;
    let limits = AdminLimits {
        max_connections: 4,
        idle_timeout: Duration::from_millis(500),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(run_with(admin, broker.clone(), limits, async {
        let _ = stopped.await;
    }));

    let answer = get(addr, "/healthz").await?;
    assert!(
        answer.starts_with("HTTP/1.0 200") && answer.ends_with("ok\n"),
        "{answer}"
    );

    // Every slot taken by a connection that sends nothing.
    let mut idle = Vec::new();
    for _ in 0..limits.max_connections {
        idle.push(TcpStream::connect(addr).await?);
    }
    let asked = Instant::now();
    let probe = tokio::time::timeout(Duration::from_secs(10), get(addr, "/readyz")).await??;
    let waited = asked.elapsed();
    assert!(probe.starts_with("HTTP/1.0 200"), "{probe}");
    assert!(
        waited >= Duration::from_millis(300),
        "the probe was served beside {} idle connections after {waited:?}: no limit",
        limits.max_connections
    );
    // The idle ones were closed by the server.
    for mut s in idle {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await?
            .unwrap_or(0);
        assert_eq!(n, 0, "an idle admin connection was left open");
    }
    let _ = stop.send(());
    server.await??;
    broker.shutdown().await;
    Ok(())
}
