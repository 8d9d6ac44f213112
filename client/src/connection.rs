//! One TCP connection to one broker, with pipelined requests matched by correlation id.
//!
//! A connection runs two tasks: a writer that drains a channel of frames into the socket
//! (coalescing whatever is queued into one flush) and a reader that hands each response to
//! the request waiting for its correlation id. The number of requests in flight is bounded
//! by a semaphore. When the connection dies, every pending request fails at once with
//! [`ClientError::ConnectionLost`] naming the cause, and the connection reports
//! [`is_closed`](Connection::is_closed) so that a pool replaces it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), steme_client::ClientError> {
//! use std::time::Duration;
//! use steme_client::connection::{Connection, ConnectionConfig};
//! use steme_protocol::messages::metadata::MetadataRequest;
//!
//! let conn = Connection::connect("127.0.0.1:9092", &ConnectionConfig::default()).await?;
//! let meta = conn
//!     .call(&MetadataRequest { topics: None }, Duration::from_secs(5))
//!     .await?;
//! println!("{} brokers, {} topics", meta.brokers.len(), meta.topics.len());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use steme_protocol::frame::{DEFAULT_MAX_FRAME, Frame};
use steme_protocol::messages::api_versions::{ApiVersionsRequest, ApiVersionsResponse};
use steme_protocol::messages::{decode_response, request_frame};
use steme_protocol::{FrameCodec, RequestBody};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::error::{ClientError, Disconnect};
use crate::tls::ClientTls;
use steme_protocol::messages::authenticate::{AuthChallengeRequest, AuthenticateRequest};

/// The halves of a connection's stream, plaintext or TLS.
type BoxRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// How long opening the TCP connection and the version handshake may take.
    pub connect_timeout: Duration,
    /// Requests sent but not yet answered; further calls wait for a slot.
    pub max_in_flight: usize,
    /// The largest frame sent or accepted, length prefix included.
    pub max_frame: usize,
    /// Sent in the handshake, for the broker's logs.
    pub client_name: String,
    /// TLS to the broker (`None`: plaintext). See [`crate::tls`].
    pub tls: Option<ClientTls>,
    /// A key to authenticate with on connecting (principal `key:<hex>`); see
    /// `steme_protocol::messages::authenticate`.
    pub auth_key: Option<AuthKey>,
}

/// An Ed25519 key a client authenticates with; its `Debug` shows the public key only.
#[derive(Clone)]
pub struct AuthKey(pub steme_protocol::SigningKey);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let public = self.0.verifying_key().to_bytes();
        f.write_str(&steme_protocol::messages::authenticate::key_principal(
            &public,
        ))
    }
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 256,
            max_frame: DEFAULT_MAX_FRAME,
            client_name: "steme-client".into(),
            tls: None,
            auth_key: None,
        }
    }
}

type Reply = Result<Frame, Arc<Disconnect>>;

/// The longest a throttle hint pauses the writer.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// State shared by the connection handle and its reader and writer tasks.
struct Shared {
    /// Waiting requests by correlation id; `None` once the connection has died, so a
    /// request registered after that fails at once instead of waiting for its timeout.
    /// A std mutex: it is held for a map operation, never across an await.
    pending: Mutex<Option<HashMap<u32, oneshot::Sender<Reply>>>>,
    /// Why the connection died (set once).
    cause: OnceLock<Arc<Disconnect>>,
    /// The broker asked for no request before this (a quota's throttle hint); the writer
    /// holds frames back until then.
    paused_until: Mutex<Option<Instant>>,
}

impl Shared {
    fn complete(&self, frame: Frame) {
        let id = frame.header.correlation_id;
        let waiter = self
            .pending
            .lock()
            .expect("pending lock")
            .as_mut()
            .and_then(|p| p.remove(&id));
        match waiter {
            // The receiver may have given up (timeout); nothing to do then.
            Some(tx) => drop(tx.send(Ok(frame))),
            None => tracing::debug!(correlation_id = id, "response to no pending request"),
        }
    }

    /// Marks the connection dead and fails every pending request with `cause`.
    fn fail(&self, cause: Disconnect) {
        let cause = self.cause.get_or_init(|| Arc::new(cause)).clone();
        let drained = self.pending.lock().expect("pending lock").take();
        for (_, tx) in drained.into_iter().flatten() {
            let _ = tx.send(Err(cause.clone()));
        }
    }

    /// Honours a throttle hint: nothing more is written for `ms` milliseconds, at most
    /// [`MAX_PAUSE`] (a broker cannot park the connection for ever; one that wants longer
    /// holds the requests itself).
    fn throttle(&self, ms: u32) {
        let until = Instant::now() + Duration::from_millis(u64::from(ms)).min(MAX_PAUSE);
        let mut paused = self.paused_until.lock().expect("pause lock");
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }

    /// When the writer may write again, if it must wait.
    fn resume_at(&self) -> Option<Instant> {
        let mut paused = self.paused_until.lock().expect("pause lock");
        match *paused {
            Some(at) if at > Instant::now() => Some(at),
            _ => {
                *paused = None;
                None
            }
        }
    }

    fn forget(&self, id: u32) {
        if let Some(p) = self.pending.lock().expect("pending lock").as_mut() {
            p.remove(&id);
        }
    }
}

/// A live connection to one broker. Cheap to share behind an `Arc`; every method takes
/// `&self`, and any number of tasks may call concurrently.
pub struct Connection {
    addr: Arc<str>,
    shared: Arc<Shared>,
    frames: mpsc::Sender<Frame>,
    in_flight: Arc<Semaphore>,
    next_id: AtomicU32,
    max_frame: usize,
    broker: ApiVersionsResponse,
    /// Who the broker knows this connection as, once it has authenticated with a key.
    principal: Option<String>,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("broker_id", &self.broker.broker_id)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The writer ends by itself when `frames` is dropped (after flushing what is queued).
        self.reader.abort();
    }
}

impl Connection {
    /// How long the broker's last throttle hint (a quota) still holds this connection's
    /// requests back, if it does.
    pub fn throttled_for(&self) -> Option<Duration> {
        self.shared
            .resume_at()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Opens a connection to `addr` and performs the ApiVersions handshake.
    pub async fn connect(addr: &str, config: &ConnectionConfig) -> Result<Connection, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: addr.to_owned(),
            source,
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                connect_err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no connection within {:?}", config.connect_timeout),
                ))
            })?
            .map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let (read, write): (BoxRead, BoxWrite) = match &config.tls {
            None => {
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
            Some(tls) => {
                let tls = tokio::time::timeout(config.connect_timeout, tls.connect(addr, stream))
                    .await
                    .map_err(|_| {
                        connect_err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no TLS handshake within {:?}", config.connect_timeout),
                        ))
                    })?
                    .map_err(connect_err)?;
                let (r, w) = tokio::io::split(tls);
                (Box::new(r), Box::new(w))
            }
        };
        let mut conn = Self::start(addr, read, write, config);
        let hello = ApiVersionsRequest {
            client_name: config.client_name.clone(),
            client_version: env!("CARGO_PKG_VERSION").into(),
        };
        conn.broker = conn.call_unchecked(&hello, config.connect_timeout).await?;
        if let Some(AuthKey(key)) = &config.auth_key {
            let challenge = conn
                .call_unchecked(&AuthChallengeRequest {}, config.connect_timeout)
                .await?;
            let proof = AuthenticateRequest::sign(key, &challenge.nonce);
            let done = conn.call_unchecked(&proof, config.connect_timeout).await?;
            conn.principal = Some(done.principal);
        }
        Ok(conn)
    }

    fn start(addr: &str, read: BoxRead, write: BoxWrite, config: &ConnectionConfig) -> Connection {
        let codec = FrameCodec::new(config.max_frame);
        let shared = Arc::new(Shared {
            pending: Mutex::new(Some(HashMap::new())),
            cause: OnceLock::new(),
            paused_until: Mutex::new(None),
        });
        let max_in_flight = config.max_in_flight.max(1);
        let (frames, rx) = mpsc::channel(max_in_flight);
        tokio::spawn(write_loop(
            rx,
            FramedWrite::new(write, codec),
            shared.clone(),
        ));
        let reader = tokio::spawn(read_loop(FramedRead::new(read, codec), shared.clone()));
        Connection {
            addr: addr.into(),
            shared,
            frames,
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            next_id: AtomicU32::new(1),
            max_frame: config.max_frame,
            broker: ApiVersionsResponse {
                broker_id: 0,
                cluster_id: String::new(),
                apis: Vec::new(),
            },
            principal: None,
            reader,
        }
    }

    /// The address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The principal the broker confirmed for this connection's key
    /// ([`ConnectionConfig::auth_key`]), if it authenticated with one.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// The broker's answer to the version handshake (its id, cluster id and api versions).
    pub fn broker(&self) -> &ApiVersionsResponse {
        &self.broker
    }

    /// Whether the connection has died; a closed connection fails every call at once.
    pub fn is_closed(&self) -> bool {
        self.shared.cause.get().is_some()
    }

    /// Sends `req` and waits for its response, at most `timeout` in all (waiting for an
    /// in-flight slot included). A broker error becomes [`ClientError::Api`].
    pub async fn call<R: RequestBody>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        self.check_supported::<R>()?;
        self.call_unchecked(req, timeout).await
    }

    /// Sends `req` and returns a handle to wait for its response with. Requests sent one
    /// after another from one task are written to the socket in that order, which is what
    /// lets a producer pipeline batches of one partition without reordering them.
    ///
    /// Waits while [`ConnectionConfig::max_in_flight`] requests are unanswered.
    pub async fn send<R: RequestBody>(
        &self,
        req: &R,
    ) -> Result<PendingResponse<R::Response>, ClientError> {
        self.check_supported::<R>()?;
        self.send_unchecked(req).await
    }

    /// Whether the broker said in the handshake that it speaks this request's version.
    fn check_supported<R: RequestBody>(&self) -> Result<(), ClientError> {
        let version = R::API_KEY.versions().1;
        let supported = self
            .broker
            .range(R::API_KEY)
            .is_some_and(|r| (r.min..=r.max).contains(&version));
        if supported {
            Ok(())
        } else {
            Err(ClientError::UnsupportedApi {
                addr: self.addr.to_string(),
                api: R::API_KEY,
                version,
            })
        }
    }

    async fn call_unchecked<R: RequestBody>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response, ClientError> {
        let deadline = Instant::now() + timeout;
        let pending = tokio::time::timeout_at(deadline, self.send_unchecked(req))
            .await
            .map_err(|_| self.timeout_error(R::API_KEY, timeout))??;
        pending.wait_until(deadline, timeout).await
    }

    async fn send_unchecked<R: RequestBody>(
        &self,
        req: &R,
    ) -> Result<PendingResponse<R::Response>, ClientError> {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the in-flight semaphore is never closed");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = request_frame(id, req);
        if frame.encoded_len() > self.max_frame {
            return Err(ClientError::RequestTooLarge {
                api: R::API_KEY,
                size: frame.encoded_len(),
                max: self.max_frame,
            });
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.pending.lock().expect("pending lock");
            match pending.as_mut() {
                Some(p) => {
                    p.insert(id, tx);
                }
                None => return Err(self.lost_error()),
            }
        }
        if self.frames.send(frame).await.is_err() {
            // The writer has stopped: it has already failed the connection.
            self.shared.forget(id);
            return Err(self.lost_error());
        }
        Ok(PendingResponse {
            rx,
            id,
            shared: self.shared.clone(),
            addr: self.addr.clone(),
            api: R::API_KEY,
            _permit: permit,
            _response: PhantomData,
        })
    }

    fn lost_error(&self) -> ClientError {
        ClientError::ConnectionLost {
            addr: self.addr.to_string(),
            cause: self
                .shared
                .cause
                .get()
                .cloned()
                .unwrap_or_else(|| Arc::new(Disconnect::Closed)),
        }
    }

    fn timeout_error(&self, api: steme_protocol::ApiKey, after: Duration) -> ClientError {
        ClientError::Timeout {
            addr: self.addr.to_string(),
            api,
            after,
        }
    }
}

/// A request that has been sent; wait for its response with [`wait`](Self::wait). Holds
/// one of the connection's in-flight slots until it is answered or dropped.
#[must_use = "a response is only received by waiting for it"]
pub struct PendingResponse<T> {
    rx: oneshot::Receiver<Reply>,
    id: u32,
    shared: Arc<Shared>,
    addr: Arc<str>,
    api: steme_protocol::ApiKey,
    _permit: OwnedSemaphorePermit,
    _response: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for PendingResponse<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingResponse")
            .field("addr", &self.addr)
            .field("api", &self.api)
            .field("correlation_id", &self.id)
            .finish()
    }
}

impl<T> Drop for PendingResponse<T> {
    fn drop(&mut self) {
        // Answered requests are already gone from the map; this clears abandoned ones
        // (timed out, or the caller stopped waiting) so a late answer finds nobody.
        self.shared.forget(self.id);
    }
}

impl<T: steme_protocol::messages::Body> PendingResponse<T> {
    /// Waits at most `timeout` for the response and decodes it.
    pub async fn wait(self, timeout: Duration) -> Result<T, ClientError> {
        self.wait_until(Instant::now() + timeout, timeout).await
    }

    async fn wait_until(mut self, deadline: Instant, timeout: Duration) -> Result<T, ClientError> {
        let reply = match tokio::time::timeout_at(deadline, &mut self.rx).await {
            Ok(Ok(reply)) => reply,
            // The sender is dropped only when the connection dies (it fails first).
            Ok(Err(_)) => Err(Arc::new(Disconnect::Closed)),
            Err(_) => {
                return Err(ClientError::Timeout {
                    addr: self.addr.to_string(),
                    api: self.api,
                    after: timeout,
                });
            }
        };
        let frame = reply.map_err(|cause| ClientError::ConnectionLost {
            addr: self.addr.to_string(),
            cause,
        })?;
        let body = decode_response::<T>(frame.body)
            .map_err(|source| ClientError::Decode {
                addr: self.addr.to_string(),
                api: self.api,
                source,
            })?
            .map_err(ClientError::Api)?;
        let throttle = body.throttle_ms();
        if throttle > 0 {
            tracing::debug!(addr = %self.addr, throttle, "throttled by the broker's quota");
            self.shared.throttle(throttle);
        }
        Ok(body)
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<Frame>,
    mut sink: FramedWrite<BoxWrite, FrameCodec>,
    shared: Arc<Shared>,
) {
    while let Some(frame) = rx.recv().await {
        // A quota's throttle hint holds every further request back (Kafka's clients do
        // the same with throttle_time_ms).
        if let Some(at) = shared.resume_at() {
            tokio::time::sleep_until(at).await;
        }
        let mut result = sink.feed(frame).await;
        // Coalesce whatever else is already queued into the same flush.
        while result.is_ok() {
            match rx.try_recv() {
                Ok(frame) => result = sink.feed(frame).await,
                Err(_) => break,
            }
        }
        if let Err(e) = result.and(sink.flush().await) {
            shared.fail(Disconnect::Transport(e));
            return;
        }
    }
    // Every sender is gone: the connection was dropped by the client.
    shared.fail(Disconnect::Closed);
    let _ = sink.close().await;
}

async fn read_loop(mut stream: FramedRead<BoxRead, FrameCodec>, shared: Arc<Shared>) {
    let cause = loop {
        match stream.next().await {
            // Correlation id 0 is the broker's word on the connection as a whole, sent
            // just before it closes it: keep it as the cause.
            Some(Ok(frame)) if frame.header.correlation_id == 0 => {
                match decode_response::<ApiVersionsResponse>(frame.body) {
                    Ok(Err(e)) => break Disconnect::Refused(e),
                    _ => tracing::debug!("unreadable connection-level frame from the broker"),
                }
            }
            Some(Ok(frame)) => shared.complete(frame),
            Some(Err(e)) => break Disconnect::Transport(e),
            None => break Disconnect::Eof,
        }
    };
    shared.fail(cause);
}

#[cfg(test)]
mod tests {
    //! A fake broker on 127.0.0.1:0 for what a real broker cannot easily be made to do:
    //! answer out of order, or drop the connection with requests pending.

    use super::*;
    use steme_protocol::messages::fetch::{FetchRequest, FetchResponse};
    use steme_protocol::messages::response_frame;
    use steme_protocol::{ApiError, ErrorCode, Request};
    use tokio::net::TcpListener;
    use tokio_util::codec::Framed;

    type Server = Framed<TcpStream, FrameCodec>;

    /// Accepts one connection and answers its handshake.
    async fn fake_broker() -> (String, JoinHandle<Server>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(sock, FrameCodec::default());
            let hello = framed.next().await.unwrap().unwrap();
            let resp: Result<_, ApiError> = Ok(ApiVersionsResponse::new(7, "test-cluster"));
            framed
                .send(response_frame(&hello.header, &resp))
                .await
                .unwrap();
            framed
        });
        (addr, handle)
    }

    fn fetch(offset: u64) -> FetchRequest {
        FetchRequest {
            topic: "t".into(),
            partition: 0,
            offset,
            max_bytes: 1024,
            max_wait_ms: 0,
        }
    }

    #[tokio::test]
    async fn out_of_order_responses_match_by_correlation_id() -> Result<(), ClientError> {
        let (addr, server) = fake_broker().await;
        let conn = Arc::new(Connection::connect(&addr, &ConnectionConfig::default()).await?);
        assert_eq!(conn.broker().broker_id, 7);
        let mut server = server.await.unwrap();

        let calls: Vec<_> = (0..5u64)
            .map(|i| {
                let conn = conn.clone();
                tokio::spawn(async move { conn.call(&fetch(i), Duration::from_secs(5)).await })
            })
            .collect();
        let mut requests = Vec::new();
        for _ in 0..5 {
            requests.push(server.next().await.unwrap().unwrap());
        }
        // Answer in reverse, each with the high watermark set to the offset it asked for;
        // the third gets an error instead.
        for frame in requests.iter().rev() {
            let Request::Fetch(req) = Request::decode(&frame.header, frame.body.clone()).unwrap()
            else {
                panic!("expected a fetch");
            };
            let resp = if req.offset == 2 {
                Err(ApiError::other(ErrorCode::UnknownTopic, "no t"))
            } else {
                Ok(FetchResponse {
                    throttle_ms: 0,
                    high_watermark: req.offset,
                    log_start_offset: 0,
                    records: Default::default(),
                })
            };
            server
                .send(response_frame(&frame.header, &resp))
                .await
                .unwrap();
        }
        for (i, call) in calls.into_iter().enumerate() {
            match call.await.unwrap() {
                Ok(resp) => assert_eq!(resp.high_watermark, i as u64),
                Err(ClientError::Api(e)) => {
                    assert_eq!(i, 2);
                    assert_eq!(e.code(), ErrorCode::UnknownTopic);
                }
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(!conn.is_closed());
        Ok(())
    }

    #[tokio::test]
    async fn dropped_connection_fails_every_pending_request() -> Result<(), ClientError> {
        let (addr, server) = fake_broker().await;
        let conn = Arc::new(Connection::connect(&addr, &ConnectionConfig::default()).await?);
        let mut server = server.await.unwrap();
        let calls: Vec<_> = (0..3u64)
            .map(|i| {
                let conn = conn.clone();
                tokio::spawn(async move { conn.call(&fetch(i), Duration::from_secs(30)).await })
            })
            .collect();
        for _ in 0..3 {
            server.next().await.unwrap().unwrap();
        }
        drop(server);
        let started = std::time::Instant::now();
        for call in calls {
            let err = call.await.unwrap().unwrap_err();
            assert!(
                matches!(&err, ClientError::ConnectionLost { cause, .. } if matches!(**cause, Disconnect::Eof)),
                "{err:?}"
            );
            assert!(err.to_string().contains(&addr));
            assert!(err.is_retriable());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "failed promptly"
        );
        assert!(conn.is_closed());
        // A call after the death fails at once, too.
        let err = conn
            .call(&fetch(9), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::ConnectionLost { .. }), "{err:?}");
        Ok(())
    }

    #[tokio::test]
    async fn unanswered_request_times_out_and_frees_its_slot() -> Result<(), ClientError> {
        let (addr, server) = fake_broker().await;
        let config = ConnectionConfig {
            max_in_flight: 1,
            ..ConnectionConfig::default()
        };
        let conn = Connection::connect(&addr, &config).await?;
        let mut server = server.await.unwrap();
        let err = conn
            .call(&fetch(0), Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        // The slot is free again: the next request is sent and answered.
        let next = tokio::spawn(async move { conn.call(&fetch(1), Duration::from_secs(5)).await });
        server.next().await.unwrap().unwrap(); // the timed-out one
        let frame = server.next().await.unwrap().unwrap();
        let resp: Result<_, ApiError> = Ok(FetchResponse {
            throttle_ms: 0,
            high_watermark: 42,
            log_start_offset: 0,
            records: Default::default(),
        });
        server
            .send(response_frame(&frame.header, &resp))
            .await
            .unwrap();
        assert_eq!(next.await.unwrap()?.high_watermark, 42);
        Ok(())
    }
}
