//! An HTTP/1.1 client for tests, on hyper's client connection (no pool): one exchange per
//! fresh connection with the whole body collected ([`request`], [`post`], [`get`]), a
//! `text/event-stream` answer read event by event ([`EventStream`]), and the `curl`
//! executable ([`curl`]) for what a person following the README would type.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// How long one exchange may take in [`post`] and [`get`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP answer, its body whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header's value as a number.
    pub fn header_u64(&self, name: &str) -> anyhow::Result<u64> {
        let v = self
            .header(name)
            .with_context(|| format!("no {name} header in {self}"))?;
        v.parse()
            .with_context(|| format!("{name}: {v:?} is not a number"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as one JSON value.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("the body is not JSON: {self}"))
    }

    /// The body as JSON lines (blank lines skipped).
    pub fn json_lines(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        self.text()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("not a JSON line: {l:?}")))
            .collect()
    }

    /// Fails unless the status is `want`, quoting the answer.
    pub fn expect(self, want: StatusCode) -> anyhow::Result<Reply> {
        ensure!(self.status == want, "expected {want}, got {self}");
        Ok(self)
    }

    /// Checks that the status is `want` and the body the gateway's JSON error; returns it.
    pub fn expect_error(&self, want: StatusCode) -> anyhow::Result<serde_json::Value> {
        ensure!(self.status == want, "expected {want}, got {self}");
        self.error()
    }

    /// Checks that the body is the gateway's JSON error (`{"error":{"code","message"}}`);
    /// returns it.
    pub fn error(&self) -> anyhow::Result<serde_json::Value> {
        let v = self.json()?;
        let e = &v["error"];
        ensure!(
            e["code"].is_string() && e["message"].is_string(),
            "not a JSON error (error.code, error.message): {self}"
        );
        Ok(v)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let cut = text.char_indices().nth(600).map_or(text.len(), |(i, _)| i);
        write!(f, "{} {:?}", self.status, &text[..cut])
    }
}

/// One exchange on a fresh connection: `method path` with `headers` and `body`, the answer
/// read whole, all within `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let exchange = async {
        let (parts, body) = send(addr, method.clone(), path, headers, body).await?;
        let body = body
            .collect()
            .await
            .context("cannot read the body")?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{method} {path} on {addr}: no answer within {timeout:?}"))?
}

/// Sends one request on a new connection; returns the answer's head and its body unread.
/// The connection is driven by a task that ends with it.
async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> anyhow::Result<(hyper::http::response::Parts, Incoming)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let (mut sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body)))?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("{method} {path} on {addr}"))?;
    Ok(resp.into_parts())
}

/// `POST path` with a body of `content_type`, within [`REQUEST_TIMEOUT`].
pub async fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let mut all = vec![("content-type", content_type)];
    all.extend_from_slice(headers);
    request(addr, Method::POST, path, &all, body, REQUEST_TIMEOUT).await
}

/// `GET path`, within [`REQUEST_TIMEOUT`].
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<Reply> {
    request(
        addr,
        Method::GET,
        path,
        headers,
        Vec::new(),
        REQUEST_TIMEOUT,
    )
    .await
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// A `text/event-stream` answer, read as its events arrive. Dropping it closes the
/// connection.
#[derive(Debug)]
pub struct EventStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    /// Bytes after the last complete line.
    partial: Vec<u8>,
    /// The event being assembled from its lines.
    current: SseEvent,
    ready: VecDeque<SseEvent>,
}

impl EventStream {
    /// `GET path` with `Accept: text/event-stream` (and `Last-Event-ID`, if given); fails
    /// unless the answer is 200 with that content type, quoting the answer.
    pub async fn connect(
        addr: SocketAddr,
        path: &str,
        last_event_id: Option<u64>,
        timeout: Duration,
    ) -> anyhow::Result<EventStream> {
        let last = last_event_id.map(|id| id.to_string());
        let mut headers = vec![("accept", "text/event-stream")];
        headers.extend(last.as_deref().map(|id| ("last-event-id", id)));
        let (parts, body) =
            tokio::time::timeout(timeout, send(addr, Method::GET, path, &headers, Vec::new()))
                .await
                .with_context(|| format!("GET {path}: no answer head within {timeout:?}"))??;
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if parts.status != StatusCode::OK || !content_type.starts_with("text/event-stream") {
            let body = tokio::time::timeout(timeout, body.collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned());
            bail!(
                "GET {path}: expected a 200 event stream, got {} ({content_type:?}) {body:?}",
                parts.status
            );
        }
        Ok(EventStream {
            status: parts.status,
            headers: parts.headers,
            body,
            partial: Vec::new(),
            current: SseEvent::default(),
            ready: VecDeque::new(),
        })
    }

    /// The next event; an error if none arrives within `timeout` or the stream ends.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<SseEvent> {
        self.next_within(timeout)
            .await?
            .with_context(|| format!("no event within {timeout:?}"))
    }

    /// The next event, or `None` if none arrives within `timeout`; an error if the stream
    /// ends or breaks.
    pub async fn next_within(&mut self, timeout: Duration) -> anyhow::Result<Option<SseEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(Some(e));
            }
            let frame = match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Ok(None),
                Ok(None) => bail!("the event stream ended"),
                Ok(Some(frame)) => frame.context("the event stream broke")?,
            };
            if let Ok(data) = frame.into_data() {
                self.feed(&data);
            }
        }
    }

    /// Splits received bytes into lines and lines into events (the SSE format: `field:
    /// value` lines, one optional space after the colon, `:` comments, a blank line ends an
    /// event; an event without data is not dispatched).
    fn feed(&mut self, bytes: &[u8]) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.partial.drain(..=end).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                let event = std::mem::take(&mut self.current);
                if !event.data.is_empty() {
                    self.ready.push_back(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => self.current.id = Some(value),
                "event" => self.current.event = Some(value),
                "data" => {
                    if !self.current.data.is_empty() {
                        self.current.data.push('\n');
                    }
                    self.current.data.push_str(&value);
                }
                _ => {}
            }
        }
    }
}

/// What a finished `curl` left behind.
#[derive(Debug)]
pub struct CurlOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `curl <args>`; it must finish within `timeout` (it is killed otherwise) and exit 0.
pub async fn curl(args: &[&str], timeout: Duration) -> anyhow::Result<CurlOutput> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().context("cannot start curl")?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("curl {args:?} did not finish within {timeout:?}"))?
        .context("cannot wait for curl")?;
    let out = CurlOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    ensure!(out.status.success(), "curl {args:?} failed: {out:?}");
    Ok(out)
}
