//! A minimal HTTP/1.0 GET for the admin listener's endpoints (no client library needed for
//! three plain-text routes).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An answer: its status code and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
}

/// `GET path` from `addr`, within `timeout`.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<HttpAnswer> {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw).context("the answer is not UTF-8")?;
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("the answer has no header end")?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no status in {head:?}"))?;
        Ok(HttpAnswer {
            status,
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("GET {path} from {addr}: no answer within {timeout:?}"))?
}

/// The value of an unlabelled sample (`name value`) in Prometheus text, if present.
pub fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The sum of every sample of `name` whatever its labels (`name{…} value`, or unlabelled).
pub fn sum_of(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let n = series.split('{').next()?;
            (n == name).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}
