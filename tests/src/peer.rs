//! Speaking Raft to a broker the way another broker would — or an attacker: on its peer
//! plane with an authenticated session (any claimed id, any secret), or on its client port
//! with no session at all. The adversarial tests use it to send forged and impossible
//! Raft RPCs to real broker processes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use steme_broker::peer::auth::{self, ClusterSecret, HandshakeError, Session};
use steme_broker::raft::rpc::RaftRpc;
use steme_protocol::ApiError;
use steme_protocol::frame::{FrameHeader, decode_frame};
use steme_protocol::messages::raft::{RaftRequest, RaftResponse};
use steme_protocol::messages::{ApiKey, Body, decode_response, request_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one RPC may take to be answered.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_FRAME: usize = 16 << 20;

/// An authenticated peer-plane connection.
pub struct PeerSession {
    stream: TcpStream,
    session: Session,
    buf: BytesMut,
    next_id: u32,
}

impl PeerSession {
    /// Connects to a peer plane and authenticates as broker `claim`, expecting `target`.
    pub async fn connect(
        addr: SocketAddr,
        secret: &ClusterSecret,
        claim: u64,
        target: u64,
    ) -> anyhow::Result<Result<PeerSession, HandshakeError>> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        Ok(auth::dial(&mut stream, secret, claim, target)
            .await
            .map(|session| PeerSession {
                stream,
                session,
                buf: BytesMut::new(),
                next_id: 1,
            }))
    }

    /// Sends one Raft RPC for `group` and returns the answer.
    pub async fn call(&mut self, group: u64, rpc: &RaftRpc) -> anyhow::Result<RaftRpc> {
        let id = self.next_id;
        self.next_id += 1;
        let header = FrameHeader {
            api_key: ApiKey::Raft as u16,
            api_version: 0,
            correlation_id: id,
        };
        let mut body = BytesMut::new();
        RaftRequest {
            group_id: group,
            payload: rpc.encode(),
        }
        .encode(&mut body);
        let sealed = self.session.sealer.seal(&header, &[&body]);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&sealed.head);
        wire.extend_from_slice(&body);
        wire.extend_from_slice(&sealed.tag);
        self.stream.write_all(&wire).await?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, async {
            loop {
                if let Some(frame) = self.session.opener.open(&mut self.buf, MAX_FRAME)? {
                    return anyhow::Ok(frame);
                }
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("the broker closed the peer connection");
                }
            }
        })
        .await
        .context("no answer in time")??;
        if answer.header.correlation_id != id {
            bail!(
                "answer to {} while waiting for {id}",
                answer.header.correlation_id
            );
        }
        match decode_response::<RaftResponse>(answer.body)? {
            Ok(r) => Ok(RaftRpc::decode(r.payload)?),
            Err(e) => bail!("error answer: {e}"),
        }
    }
}

/// Sends a Raft RPC frame to a broker's *client* port, as any TCP client could; returns
/// the broker's answer (an error, if the client plane refuses peer APIs).
pub async fn raft_on_client_port(
    addr: &str,
    group: u64,
    rpc: &RaftRpc,
) -> anyhow::Result<Result<RaftResponse, ApiError>> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let req = RaftRequest {
        group_id: group,
        payload: rpc.encode(),
    };
    let mut wire = BytesMut::new();
    request_frame(7, &req).encode(&mut wire);
    stream.write_all(&wire).await?;
    let mut buf = BytesMut::new();
    let frame = tokio::time::timeout(CALL_TIMEOUT, async {
        loop {
            if let Some(f) = decode_frame(&mut buf, MAX_FRAME)? {
                return anyhow::Ok(f);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("the broker closed the connection without an answer");
            }
        }
    })
    .await
    .context("no answer in time")??;
    Ok(decode_response::<RaftResponse>(frame.body)?)
}

/// Writes `bytes` to `addr` and reads until the broker closes the connection (or
/// `timeout`); returns what came back.
pub async fn raw_exchange(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(bytes).await?;
    let mut back = Vec::new();
    let read = tokio::time::timeout(timeout, stream.read_to_end(&mut back)).await;
    match read {
        Ok(Ok(_)) => Ok(back),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(back),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("{addr} kept the connection open for {timeout:?}"),
    }
}
